"""The onnxruntime SessionOptions recipe: its one home (runtime, exporter and benchmarks).

Every session this toolkit opens is made the same way, so a figure measured by the exporter
or the benchmarks is a figure of what the runtime serves. (The benchmarks' peer servers,
benchmarks/serving, stand for what other tools or a user would write, and keep
onnxruntime's defaults on purpose.)
"""

from __future__ import annotations

import os

import onnxruntime as ort


def session_options(threads: int | None = None, *, spinning: bool = True) -> ort.SessionOptions:
    """`threads` intra-op threads (None: onnxruntime's default, one per core), one inter-op
    thread (the graph is a chain), quiet logging.

    spinning=False: the workers still spin between the operators of one run, but stop the
    moment the run returns, so the cores are free for whatever comes next (the server's event
    loop, another engine's threads). Parking them outright instead (`allow_spinning=0`) wakes
    them from sleep for every operator, which measured slower (benchmarks results)."""
    options = ort.SessionOptions()
    # onnxruntime's own warnings (unused initializers, fallbacks) are not actionable for a
    # user; real problems still raise. Fallbacks are reported through .providers instead.
    options.log_severity_level = 3
    if threads is not None:
        options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    if not spinning:
        options.add_session_config_entry("session.force_spinning_stop", "1")
    return options


def cpu_session(
    model: str | os.PathLike[str] | bytes, threads: int | None = None, *, spinning: bool = True
) -> ort.InferenceSession:
    """A plain CPU-EP InferenceSession of `model` (a path or ONNX bytes) with the recipe."""
    options = session_options(threads, spinning=spinning)
    payload = bytes(model) if isinstance(model, bytes | bytearray | memoryview) else str(model)
    return ort.InferenceSession(payload, sess_options=options, providers=["CPUExecutionProvider"])
