"""Training benchmarks: cifar-train's throughput per precision against plain Keras `fit`."""
