"""Everything of the exporter that touches TensorFlow or Keras: the TensorFlow boundary.

Load a Keras model and run it (`model`), check it fits the contract (`inspection`), rebuild a
mixed-precision model in float32 (`float32_graph`), choose its preprocessing by evidence
(`preprocessing`) and convert it with tf2onnx (`convert`). TensorFlow, Keras and tf2onnx are
imported inside the functions that need them, never at module import.

May import: `cifar10_exporter.wrapper`, `.config`, `.errors`, `.checks`, the runtime's base.
"""
