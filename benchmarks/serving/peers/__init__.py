"""Peer servers for the server benchmark, run from their own venv (build/venv-peers).

kserve_server.py: KServe's ModelServer with a small onnxruntime model. mlserver_runtime.py:
a Seldon MLServer custom runtime with its adaptive batching. Both serve the same ONNX file
as `cifar-serve` with the same thread count; neither is imported by the runtime or tests.
"""
