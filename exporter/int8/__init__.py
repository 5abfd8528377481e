"""The INT8 twin: the recipes, the graph rewrites they need, the search with its gate, and the
CPU's int8 features and timing.

May import: the runtime, `cifar10_exporter.checks`, `.outputs` (the twin's metadata), `.config`,
`.errors`. Never TensorFlow, never `pipeline`.
"""
