"""`Predictor`: a validated model on the engine chosen for it, plus the pre- and post-processing.

The model is opened in onnxruntime float32 and checked against the contract (model.py); then
`selection.choose` proves it against its golden set and picks the engine(s) to run it by
measurement (engine="auto", precision="auto"), per batch-size range. The hot paths
(`predict_array`, `predict` on a 32x32x3 uint8 array) do no decoding and no per-call session
work: the runner per range is fixed at load time, so the cost over a bare engine call is a
dtype/shape check, a range lookup and an argmax. On a plan with an engine that compiles per
input shape (OpenVINO), batches over engines.warmup.RUN_CAP run in chunks of at most that
size, and `warm_up(max_batch_size)` runs every size a caller can then form once, so no later
call compiles (cifar-serve calls it before it reports ready).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal

import numpy as np
import onnxruntime as ort

from cifar10_runtime.contract import IMAGE_SHAPE, NUM_CLASSES
from cifar10_runtime.engines.batch_sizes import BatchTuning, tune
from cifar10_runtime.engines.plan import BatchPlan
from cifar10_runtime.engines.runners import ort_runner
from cifar10_runtime.engines.selection import choose
from cifar10_runtime.engines.warmup import WarmUp, run_cap, sizes_to_warm, warm_up
from cifar10_runtime.errors import ConfigError, ImageError
from cifar10_runtime.images import ImageSource, load_image
from cifar10_runtime.model import inspect_session, open_session, probe
from cifar10_runtime.prediction import ClassScore, Prediction, check_top_k, make_prediction

# Prediction, ClassScore, make_prediction and check_top_k live in cifar10_runtime.prediction;
# they are named here too for the callers that import them with the Predictor.
__all__ = ["ClassScore", "Prediction", "Predictor", "check_top_k", "make_prediction"]

_SINGLE_SHAPE = IMAGE_SHAPE
_INV255 = np.float32(1 / 255)


class Predictor:
    """Classify images with a CIFAR-10 ONNX model.

    `model` is a path or the ONNX bytes. `providers` is "auto" (CUDA when onnxruntime-gpu
    can use a GPU, else CPU), "cpu", "cuda", or a list of provider names; `.providers` says
    what is really active. `threads` sets the intra-op threads of every engine (None: one
    per core). `engine` ("auto", "onnxruntime", "openvino") and `precision` ("auto", "fp32",
    "bf16", "int8") choose what runs the model; `.engine` says what does (e.g.
    "openvino/bf16", or one engine per batch range), `.engine_choice` why. A model with a
    golden set (cifar-export) must reproduce it or is refused (ModelError);
    self_check=False skips that replay, for a caller that checks the file itself (the
    exporter's parity check against Keras), and runs onnxruntime float32.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | bytes,
        providers: str | Sequence[str] = "auto",
        threads: int | None = None,
        engine: str = "auto",
        precision: str = "auto",
        spinning: bool = True,
        *,
        self_check: bool = True,
    ) -> None:
        from cifar10_runtime.engines.selection import check_request

        check_request(engine, precision)  # a typo fails before any work
        session, source = open_session(model, providers, threads, spinning)
        spec = inspect_session(session, source, model)
        probe(session, spec)
        anchor = ort_runner(session, "fp32", spec.input_name, spec.output_name, model)
        plan = choose(anchor, model, spec.metadata, source, engine, precision, threads, self_check)
        self.session: ort.InferenceSession = session
        self.source = source
        self.providers: list[str] = session.get_providers()
        self.threads = threads
        self.input_name = spec.input_name
        self.output_name = spec.output_name
        self.input_dtype: np.dtype = spec.input_dtype
        self.class_names: tuple[str, ...] = spec.class_names
        self.model_version = spec.model_version
        self.metadata: dict[str, Any] = spec.metadata
        self.fixed_batch = spec.fixed_batch
        self._needs_scaling = spec.input_dtype == np.float32
        self._outputs = [spec.output_name]
        self._plan: BatchPlan = plan
        self.engine: str = plan.name
        self.engine_choice: dict[str, Any] = plan.describe()
        self.engine_report: str = plan.text  # the table logged at load, for the CLIs
        runners = [r for _, r in plan.steps]
        self.precision: str = "+".join(dict.fromkeys(r.precision for r in runners))
        # One engine for every batch size (the common case): no range lookup per call.
        self._call = runners[0].run if len(runners) == 1 else None
        self._one = plan.runner_for(1).run
        self._cap = run_cap(plan)  # None: batches run whole (no engine compiles per shape)
        self.warmed: WarmUp | None = None  # the last warm_up's record

    def __repr__(self) -> str:
        return (
            f"Predictor({self.source!r}, version={self.model_version!r}, "
            f"input={self.input_dtype}, engine={self.engine!r}, providers={self.providers})"
        )

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def predict_array(self, x: np.ndarray) -> np.ndarray:
        """uint8 [N,32,32,3] -> float32 [N,10] probabilities, straight from the session."""
        if (
            not isinstance(x, np.ndarray)
            or x.dtype != np.uint8
            or x.ndim != 4
            or x.shape[1:] != IMAGE_SHAPE
        ):
            found = f"{x.dtype} {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__
            raise ImageError(
                f"predict_array needs a uint8 array [N,32,32,3]. Received: {found}. "
                "For one image use predict(image) or x[None]; decode files with load_image()."
            )
        if len(x) == 0:
            return np.empty((0, NUM_CLASSES), dtype=np.float32)
        feed = self._prepare(x)
        if self.fixed_batch is not None:
            return self._run_fixed(feed)
        if self._cap is not None and len(feed) > self._cap:
            return self._run_capped(feed, self._cap)
        call = self._call or self._plan.runner_for(len(feed)).run
        return call(feed)

    def _run_capped(self, feed: np.ndarray, cap: int) -> np.ndarray:
        # Every chunk goes to the plan's runner for its own size, so a remainder small enough
        # for onnxruntime runs there, and a per-shape engine only meets sizes warm_up ran.
        parts = [
            self._plan.runner_for(len(part)).run(part)
            for part in (feed[start : start + cap] for start in range(0, len(feed), cap))
        ]
        return np.concatenate(parts)

    def tune_batch_size(self, ceiling: int) -> BatchTuning:
        """The largest batch (at most `ceiling`) worth forming on this machine: the largest
        size whose images/s through predict_array is within engines.batch_sizes.KNEE of the
        best, timed once per machine and plan (then cached with the engine timings)."""
        return tune(self.predict_array, self._plan, ceiling, self.threads)

    def sizes_to_warm(self, max_batch_size: int) -> dict[str, list[int]]:
        """{engine: batch sizes} `warm_up(max_batch_size)` would run; empty when no engine of
        the plan compiles per input shape (nothing to warm)."""
        return sizes_to_warm(self._plan, max_batch_size, self.fixed_batch)

    def warm_up(self, max_batch_size: int, stopping: Callable[[], bool] | None = None) -> WarmUp:
        """Run once every batch size that calls of 1..max_batch_size images make an engine
        that compiles per input shape see, so none of them compiles later. `stopping()`,
        checked between sizes, cuts it short. Returns (and keeps as `.warmed`) the record."""
        zeros = np.zeros((1, *IMAGE_SHAPE), dtype=np.uint8)

        def feed(n: int) -> np.ndarray:
            return self._prepare(np.broadcast_to(zeros, (n, *IMAGE_SHAPE)))

        record = warm_up(self._plan, max_batch_size, feed, self.fixed_batch, stopping or _never)
        self.warmed = record
        return record

    def _prepare(self, x: np.ndarray) -> np.ndarray:
        if self._needs_scaling:
            # Same arithmetic as the contract's Cast + Mul(1/255), so a float model fed
            # this way matches a uint8 model with the same weights bit for bit.
            scaled = x.astype(np.float32)
            scaled *= _INV255
            return scaled
        return np.ascontiguousarray(x)

    def _run_fixed(self, feed: np.ndarray) -> np.ndarray:
        # Models exported with a fixed batch size (common outside Keras) run in padded chunks.
        size = self.fixed_batch or 1
        run = self._plan.runner_for(size).run
        out = np.empty((len(feed), NUM_CLASSES), dtype=np.float32)
        chunk = np.zeros((size, *IMAGE_SHAPE), dtype=feed.dtype)
        for start in range(0, len(feed), size):
            part = feed[start : start + size]
            chunk[: len(part)] = part
            chunk[len(part) :] = 0
            result = run(chunk)
            out[start : start + len(part)] = result[: len(part)]
        return out

    def predict(self, image: ImageSource, top_k: int = 1) -> Prediction:
        """Classify one image: a path, bytes, file object, PIL.Image or uint8 HWC array."""
        if type(top_k) is not int or top_k != 1:
            top_k = check_top_k(top_k, self.num_classes)
        if (
            type(image) is np.ndarray
            and image.shape == _SINGLE_SHAPE
            and image.dtype == np.uint8
            and not self._needs_scaling
            and self.fixed_batch is None
        ):
            # The measured hot path: a view, one run, one argmax.
            probs = self._one(image[None])
        else:
            probs = self.predict_array(load_image(image)[None])
        return make_prediction(probs[0], self.class_names, top_k)

    def predict_batch(
        self,
        images: Iterable[ImageSource] | np.ndarray,
        batch_size: int = 64,
        top_k: int = 1,
        on_error: Literal["raise", "return"] = "raise",
    ) -> list[Prediction] | list[Prediction | ImageError]:
        """Classify many images, `batch_size` per session run, results in input order.

        An array is a batch [N,H,W,C]; one image [H,W,C] (C in 1, 3, 4) is a batch of one.

        on_error="raise" stops at the first image that cannot be decoded (ImageError names
        it); on_error="return" puts that ImageError in the image's slot and goes on.
        """
        top_k = check_top_k(top_k, self.num_classes)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer. Received: {batch_size!r}.")
        if on_error not in ("raise", "return"):
            raise ConfigError(f"on_error must be 'raise' or 'return'. Received: {on_error!r}.")
        if isinstance(images, np.ndarray):
            images = _as_image_batch(images)
        if isinstance(images, np.ndarray) and images.shape[1:] == IMAGE_SHAPE:
            rows = [
                self.predict_array(images[start : start + batch_size])
                for start in range(0, len(images), batch_size)
            ]
            return [make_prediction(r, self.class_names, top_k) for chunk in rows for r in chunk]
        items = list(images)
        results: list[Any] = [None] * len(items)
        # One buffer per call, reused across chunks (per call so threads never share it).
        buffer = np.empty((min(batch_size, max(len(items), 1)), *IMAGE_SHAPE), dtype=np.uint8)
        for start in range(0, len(items), batch_size):
            slots = []
            for offset, source in enumerate(items[start : start + batch_size]):
                try:
                    buffer[len(slots)] = load_image(source)
                except ImageError as exc:
                    if on_error == "raise":
                        raise
                    results[start + offset] = exc
                    continue
                slots.append(start + offset)
            if slots:
                probs = self.predict_array(buffer[: len(slots)])
                for slot, row in zip(slots, probs, strict=True):
                    results[slot] = make_prediction(row, self.class_names, top_k)
        return results

    def describe(self) -> dict[str, Any]:
        """Everything a client may want to know about the loaded model (GET /v1/metadata)."""
        return {
            "model_version": self.model_version,
            "class_names": list(self.class_names),
            "class_names_source": self.metadata.get("class_names_source"),
            "input": {
                "name": self.input_name,
                "dtype": str(self.input_dtype),
                "shape": [self.fixed_batch, *IMAGE_SHAPE],
                "layout": "NHWC RGB",
                "scaling": "by this runtime (x/255)" if self._needs_scaling else "in the graph",
            },
            "output": {"name": self.output_name, "dtype": "float32", "shape": [None, 10]},
            "input_spec": self.metadata.get("input_spec"),
            "producer_versions": self.metadata.get("producer_versions"),
            "metrics": self.metadata.get("metrics"),
            "parity": self.metadata.get("parity"),
            "source_sha256": self.metadata.get("source_sha256"),
            "providers": list(self.providers),
            "engine": self.engine,
            "precision": self.precision,
            "engine_choice": self.engine_choice,
            "warm_up": self.warmed.as_dict() if self.warmed is not None else None,
            "runtime_versions": {"onnxruntime": ort.__version__, "numpy": np.__version__},
        }


def _never() -> bool:
    return False


def _as_image_batch(images: np.ndarray) -> np.ndarray:
    """[N,H,W,C] as is, one [H,W,C] image as a batch of one; any other shape is an error.

    Iterating a 3-D array would take each row of one image for a grey image of its own.
    """
    if images.ndim == 4:
        return images
    if images.ndim == 3 and images.shape[2] in (1, 3, 4):
        return images[None]
    raise ImageError(
        f"predict_batch takes an array of images [N,H,W,C] or one image [H,W,C] with C in "
        f"1, 3, 4. Received: {images.dtype} {images.shape}. For grey images [N,H,W] add a "
        "channel axis (x[..., None])."
    )
