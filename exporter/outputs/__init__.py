"""What an export writes: the metadata (its one writer), the files beside OUTPUT, the model
card and the Triton model repository.

May import: the runtime, `cifar10_exporter.checks`, `.config`, `.errors`.
"""
