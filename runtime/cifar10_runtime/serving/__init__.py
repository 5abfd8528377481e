"""Serving: `cifar-serve`'s app, its configuration and its protocols.

Owns the Starlette app and its lifespan (`app`), `ServeConfig` (`config`), metrics, the
OpenAPI document, the try-it page, the friendly `/v1` API, and three subpackages:
`http` (connection guards and bounded bodies), `v2` (the Open Inference Protocol's
transport-neutral dataplane with its REST codec) and `grpc` (the same dataplane over gRPC).

May import: the runtime's base modules, `predictor`, `batcher`, `engines`. Never `cli`.
Starlette, uvicorn and grpc are imported here and nowhere else in the runtime.
"""
