"""Server benchmarks: cifar-serve beside a minimal handler, a naive server, KServe and MLServer
(REST), and KServe's gRPC; the load generator they share."""
