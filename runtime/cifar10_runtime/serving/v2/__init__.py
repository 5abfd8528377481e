"""The Open Inference Protocol (KServe v2): a transport-neutral dataplane and its REST codec.

`dataplane` (with `tensors` and `errors`) checks tensors, builds metadata and runs inference
through the batcher, raising its own protocol-neutral `DataplaneError` with a kind; it
imports neither Starlette nor grpc. `rest` (the routes) and `rest_codec` (the wire format,
with `big_json` for big bodies) turn HTTP requests into dataplane calls and answers back,
the error kinds into HTTP statuses.

May import: the runtime's base modules, `predictor`, `batcher`, `serving.http`,
`serving.metrics`. Never `serving.grpc`.
"""
