"""Engine x precision rows for the latency section, beside bare onnxruntime.

Every engine the runtime can choose, bare (one `Runner.run` per call, as
cifar10_runtime.engines.runners builds it: OpenVINO through the plugin EP or its own API, with an
explicit precision hint and the same thread count), plus the default `Predictor` (engine and
precision "auto": what a user gets). Rows whose engine is absent here are left out, with a
note saying why; the CPU's int8/bf16 features are in the machine record
(cifar10_runtime.engines.cpu).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmarks.inference.latency import Engine
from benchmarks.inputs import Images


def _rows_of(runner, images: Images) -> Callable[[int], Callable[[], object]]:
    def make(batch: int) -> Callable[[], object]:
        x = np.ascontiguousarray(images.arrays[:batch])
        return lambda: runner.run(x)

    return make


def engine_rows(
    model: Path, int8: Path | None, threads: int, images: Images, notes: list[str]
) -> list[Engine]:
    """OpenVINO f32/bf16/int8 bare, and the default Predictor with its choice named."""
    from cifar10_runtime import Predictor
    from cifar10_runtime.contract import CANDIDATES
    from cifar10_runtime.engines.runners import bf16_missing, openvino_backend, openvino_runner

    rows: list[Engine] = []
    backend, missing = openvino_backend()
    if backend is None:
        notes.append(f"no OpenVINO rows: {missing}")
    else:
        for engine, precision in CANDIDATES:
            if engine != "openvino":
                continue  # bare onnxruntime has rows of its own (latency.py)
            path = int8 if precision == "int8" else model
            if path is None:
                notes.append(f"no openvino/{precision} row: no int8 twin")
                continue
            if precision == "bf16" and bf16_missing():
                notes.append(f"no openvino/bf16 row: {bf16_missing()}")
                continue
            runner = openvino_runner(str(path), precision, threads)
            rows.append(
                Engine(
                    f"openvino_{precision}",
                    f"{runner.name} bare ({runner.backend}), uint8 array",
                    _rows_of(runner, images),
                    model="int8" if precision == "int8" else precision,
                )
            )
    auto = Predictor(str(model), threads=threads)  # what `Predictor(path)` gives a user
    notes.append(f"predictor_auto chose: {auto.engine} ({auto.engine_choice['why']})")

    def auto_call(batch: int) -> Callable[[], object]:
        x = np.ascontiguousarray(images.arrays[:batch])
        return lambda: auto.predict_array(x)

    rows.append(
        Engine(
            "predictor_auto",
            f"Predictor(engine='auto', precision='auto'): {auto.engine}",
            auto_call,
            model=auto.precision,
        )
    )
    return rows
