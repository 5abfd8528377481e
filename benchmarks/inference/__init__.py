"""Inference benchmarks: latency and throughput per engine and precision, profiles, FLOP
counts, and cold start."""
