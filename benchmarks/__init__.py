"""cifar10-onnx benchmarks: `python -m benchmarks [--quick]` (also `make bench`).

Inference latency and throughput of bare onnxruntime, the runtime's Predictor, Keras and the
INT8 model side by side, against the machine's measured float32 peak; cold start, footprint,
the HTTP server, and training throughput. Results go to benchmarks/results/<name>.json|.md|.png.

Nothing here imports numpy at package import: __main__ must set the BLAS thread count first.
"""

__version__ = "0.1.0"
