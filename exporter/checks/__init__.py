"""The checks that prove an ONNX file right: labelled images, parity, accuracy and its gate,
the agreement metric, every engine x precision's evidence, the one-line verdict, and each
check's threshold.

May import: the runtime, `cifar10_exporter.wrapper`, `.config`, `.errors`, `.from_keras` (the
parity reference), `.outputs` (to record what they found: metadata, side files). Never `int8`,
`pipeline`, `verify` or `cli`.
"""
