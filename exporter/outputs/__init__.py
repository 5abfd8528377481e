"""What an export writes: the metadata (its one writer), the files beside OUTPUT, the engine x
precision table, the model card and the Triton model repository.

May import: the runtime, `cifar10_exporter.wrapper`, `.config`, `.errors`. Never `checks`,
`int8` or `from_keras`: they hand their results over as plain values.
"""
