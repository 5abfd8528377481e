"""Engines: which engine and precision answers a batch, chosen by measurement at load time.

Owns the runners (onnxruntime, OpenVINO), the golden-set self-check, the candidates a request
may try, the choice among them, the per-batch plan (`plan.BatchPlan`), the one best-of-N
timing loop and the timings kept per machine, the CPU's facts (flags, usable cores) and the
one onnxruntime `SessionOptions` recipe.

May import: the runtime's base modules (`contract`, `errors`, `files`, `versions`,
`untrusted`, `limits`). Never `serving`, `cli`, `predictor` or `batcher`, and never Starlette.
"""
