"""The Open Inference Protocol (KServe v2): a transport-neutral dataplane and its REST codec.

`dataplane` (and the modules it uses) checks tensors, builds metadata and runs inference
through the batcher, raising its own protocol-neutral errors; it imports neither Starlette nor
grpc. `rest` and `rest_codec` turn HTTP requests into dataplane calls and answers back.

May import: the runtime's base modules, `predictor`, `batcher`, `serving.http`,
`serving.metrics`. Never `serving.grpc`.
"""
