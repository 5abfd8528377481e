"""The checks that prove an ONNX file right: labelled images, parity, accuracy and its gate,
every engine x precision's evidence, the one-line verdict, and each check's threshold.

May import: the runtime, `cifar10_exporter.wrapper`, `.config`, `.errors`,
`.from_keras.model` (the parity reference). Never `pipeline`, `verify` or `cli`.
"""
