"""HTTP plumbing under any uvicorn parser: connection guards, body deadlines, bounded bodies.

May import: the runtime's base modules, Starlette, uvicorn. Never `serving.v2`,
`serving.grpc` or the app: the app wires these guards in, they know nothing of the routes.
"""
