"""Inference latency per engine and batch size: bare onnxruntime, the Predictor, Keras, INT8.

Every engine runs in this process, with the same intra-op thread count, on the same images,
one after the other (never concurrently), and bare onnxruntime is the baseline the others are
divided by. onnxruntime engines run before TensorFlow is imported so its idle thread pools
cannot be blamed for their numbers.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.inputs import Images, encode_jpeg, encode_png
from benchmarks.timing import Budget, split, summarize, time_calls

BATCH_SIZES = (1, 8, 32, 256)
CELL_PAUSE_S = 0.05


@dataclass
class Engine:
    name: str  # short key used in JSON and the plot legend
    description: str
    # batch size -> a zero-argument callable doing one whole call at that batch size
    make_call: Callable[[int], Callable[[], object]]
    family: str = "onnxruntime"  # or "keras"
    model: str = "fp32"


def ort_session(path: Path, threads: int):
    """A plain InferenceSession: default graph optimisations, `threads` intra-op threads
    (the runtime's recipe, cifar10_runtime.engines.sessions)."""
    from cifar10_runtime.engines.sessions import cpu_session

    return cpu_session(path, threads)


def _bare_ort(path: Path, threads: int, images: Images):
    sess = ort_session(path, threads)
    in_name, out_name = sess.get_inputs()[0].name, sess.get_outputs()[0].name

    def make(batch: int) -> Callable[[], object]:
        feed = {in_name: images.arrays[:batch]}
        return lambda: sess.run([out_name], feed)

    return make, sess


def _predictor(path: Path, threads: int):
    from cifar10_runtime import Predictor

    return Predictor(str(path), threads=threads)


def onnx_engines(model: Path, int8: Path | None, threads: int, images: Images) -> list[Engine]:
    """Engines 1-3 and 5 of the issue: bare ORT, Predictor on arrays / PNG / JPEG, INT8."""
    bare, _ = _bare_ort(model, threads, images)
    pred = _predictor(model, threads)
    png = encode_png(images.arrays)
    # 640x480 JPEGs are big; 32 distinct ones cycled through the batch are plenty.
    jpeg = encode_jpeg(images.arrays[:32])

    def pred_array(batch: int) -> Callable[[], object]:
        x = images.arrays[:batch]
        return lambda: pred.predict_array(x)

    def pred_encoded(blobs: list[bytes]) -> Callable[[int], Callable[[], object]]:
        def make(batch: int) -> Callable[[], object]:
            items = [blobs[i % len(blobs)] for i in range(batch)]
            if batch == 1:
                # One image: what a caller with one upload does.
                return lambda: pred.predict(items[0])
            return lambda: pred.predict_batch(items, batch_size=batch)

        return make

    # The default Predictor runs what its load-time choice picked (e.g. the int8 twin): its
    # rows carry that precision, so sanity.py does not read them as float32 ones.
    runs = pred.precision
    engines = [
        Engine("ort", "onnxruntime InferenceSession.run, uint8 array (baseline)", bare),
        Engine(
            "predictor",
            f"Predictor.predict_array, uint8 array (runs {pred.engine})",
            pred_array,
            model=runs,
        ),
        Engine(
            "predictor_png32",
            "Predictor on 32x32 PNG bytes (decode included)",
            pred_encoded(png),
            model=runs,
        ),
        Engine(
            "predictor_jpeg640",
            "Predictor on 640x480 JPEG bytes (decode + resize included)",
            pred_encoded(jpeg),
            model=runs,
        ),
    ]
    if int8 is not None:
        bare8, _ = _bare_ort(int8, threads, images)
        pred8 = _predictor(int8, threads)
        engines += [
            Engine("ort_int8", "onnxruntime InferenceSession.run, INT8 model", bare8, model="int8"),
            Engine(
                "predictor_int8",
                "Predictor.predict_array, INT8 model",
                lambda b: (lambda x: lambda: pred8.predict_array(x))(images.arrays[:b]),
                model="int8",
            ),
        ]
    return engines


def keras_engines(keras_path: Path, images: Images) -> list[Engine]:
    """Engine 4: what a user would pick instead, `model.predict` and a direct call."""
    import keras

    model = keras.saving.load_model(str(keras_path), compile=False)

    def predict(batch: int) -> Callable[[], object]:
        x = images.arrays[:batch]
        return lambda: model.predict(x, batch_size=batch, verbose=0)

    def direct(batch: int) -> Callable[[], object]:
        x = images.arrays[:batch]
        # .numpy(): a caller wants the probabilities on the host, like every other row.
        return lambda: np.asarray(model(x, training=False))

    return [
        Engine("keras_predict", "Keras model.predict(x, batch_size=N)", predict, family="keras"),
        Engine("keras_call", "Keras model(x, training=False), eager", direct, family="keras"),
    ]


def run_engines(
    engines: list[Engine],
    budget: Budget,
    batch_sizes: tuple[int, ...] = BATCH_SIZES,
    log: Callable[[str], None] = print,
) -> list[dict]:
    """Time every engine at every batch size; returns one row per (engine, batch).

    The cells are interleaved over `budget.rounds` rounds (engine A, B, C, ... then again),
    each round taking its share of the cell's budget, and a cell's samples are pooled. On a
    shared VM the speed of the machine drifts (this one shows batch-1 onnxruntime latency
    jumping between about 0.29 and 0.42 ms for seconds at a time); interleaving spreads those
    states over every engine instead of letting one engine catch a slow spell. Each row keeps
    its per-round p50s, so the spread is visible in the report.
    """
    cells = [(e, b) for e in engines for b in batch_sizes]
    calls = {(e.name, b): e.make_call(b) for e, b in cells}
    samples: dict[tuple[str, int], list[float]] = {(e.name, b): [] for e, b in cells}
    round_p50: dict[tuple[str, int], list[float]] = {(e.name, b): [] for e, b in cells}
    for r in range(budget.rounds):
        if budget.rounds > 1 and r % 10 == 0:
            log(f"  round {r + 1}/{budget.rounds}")
        part = split(budget, budget.rounds, first=r == 0)
        for engine, batch in cells:
            # onnxruntime workers keep spinning for a while after their session's run; another
            # session started right away shares the 2 cores with them (measured: ~3% of its
            # batch-1 calls stall 4.5 ms). One deployed session never sees that, so let them
            # park first (50 ms removed every stall).
            time.sleep(CELL_PAUSE_S)
            got = time_calls(calls[engine.name, batch], part)
            samples[engine.name, batch] += got
            round_p50[engine.name, batch].append(summarize(got)["p50_ms"])
    rows = []
    for engine, batch in cells:
        row = {
            "engine": engine.name,
            "description": engine.description,
            "family": engine.family,
            "model": engine.model,
            "batch": batch,
            **summarize(samples[engine.name, batch], items_per_call=batch),
            "round_p50_ms": round_p50[engine.name, batch],
        }
        row["images_per_s"] = row.pop("items_per_s")
        rows.append(row)
        spread = (
            f", round p50s {min(row['round_p50_ms']):.3f}-{max(row['round_p50_ms']):.3f}"
            if budget.rounds > 1
            else ""
        )
        log(
            f"  {engine.name:<18} batch {batch:>3}: p50 {row['p50_ms']:8.3f} ms, "
            f"p99 {row['p99_ms']:8.3f} ms, {row['images_per_s']:9.1f} images/s "
            f"({row['runs']} runs{spread})"
        )
        sys.stdout.flush()
    return rows


def add_ratios(rows: list[dict], flops_per_image: float, peak_gflops: float) -> None:
    """Each row's time against bare ORT at the same batch, and its share of the float32 peak."""
    base = {r["batch"]: r for r in rows if r["engine"] == "ort"}
    for r in rows:
        b = base.get(r["batch"])
        if b:
            r["p50_vs_ort"] = r["p50_ms"] / b["p50_ms"]
            r["throughput_vs_ort"] = r["images_per_s"] / b["images_per_s"]
        r["gflops"] = r["images_per_s"] * flops_per_image / 1e9
        r["share_of_peak"] = r["gflops"] / peak_gflops if peak_gflops else None
