"""The steps `export` (pipeline.py) and `verify` (verify.py) share, in the order they run.

preflight (cheap path checks, before any heavy import) -> prepare (Keras model, its wrapper,
the check images, preprocessing decided by evidence, the Keras reference) -> parity (the ONNX
bytes through the runtime against the reference) -> int8 (the twin: searched or checked) ->
card (OUTPUT.md). Neither entry point imports the other: both import this module, and
cli.py chooses between them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from cifar10_exporter.checks.assess import ExportResult, Log, check_model
from cifar10_exporter.checks.parity import Report, check_parity
from cifar10_exporter.checks.samples import Samples, load_samples
from cifar10_exporter.checks.thresholds import accuracy_floor
from cifar10_exporter.config import ExportConfig
from cifar10_exporter.from_keras.float32_graph import as_float32
from cifar10_exporter.from_keras.inspection import inspect_model
from cifar10_exporter.from_keras.model import check_model_path, keras_reference, load_keras_model
from cifar10_exporter.from_keras.preprocessing import candidates_table, decide
from cifar10_exporter.outputs import card
from cifar10_exporter.outputs.files import ArtifactPaths, ensure_writable_dir
from cifar10_exporter.outputs.metadata import producer_versions, read_json, set_metadata
from cifar10_exporter.wrapper import WrapperSpec
from cifar10_runtime.errors import CifarError, ModelError, first_line
from cifar10_runtime.files import write_bytes, write_json
from cifar10_trainer.errors import DataError
from cifar10_trainer.run import Run


def preflight(config: ExportConfig) -> ArtifactPaths:
    """The cheap checks (paths), run once, before any heavy import so a typo fails at once:
    an export needs a writable OUTPUT, --verify-only an existing one (and its int8 twin)."""
    paths = ArtifactPaths.for_output(config.output)
    check_model_path(config.model)
    if config.data_dir is not None and not Path(config.data_dir).exists():
        raise DataError(
            f"--data-dir {config.data_dir} does not exist; pass the folder holding "
            f"cifar-10-batches-py/ (or the .tar.gz), or use --dataset synthetic. "
            f"Received: --data-dir={config.data_dir}"
        )
    if not config.verify_only:
        ensure_writable_dir(paths.onnx)
        paths.remove_stale()  # temporaries a killed earlier export left behind
        return paths
    if not paths.onnx.is_file():
        raise ModelError(
            f"no ONNX model at {paths.onnx} to verify: export it first with "
            f"`cifar-export {paths.onnx}`. Received: OUTPUT={paths.onnx} --verify-only"
        )
    if config.quantize == "int8" and not paths.int8.is_file():
        raise ModelError(
            f"no int8 model at {paths.int8} to verify: export with --quantize int8 first, "
            f"or use --quantize auto (checks a twin when there is one) or none. "
            f"Received: --quantize={config.quantize} --verify-only"
        )
    return paths


def checks_twin(config: ExportConfig, paths: ArtifactPaths) -> bool:
    """Does --verify-only check the int8 twin: always with --quantize int8 (preflight made
    sure it is there), with auto when there is one (a twin beside OUTPUT may answer)."""
    return config.quantize == "int8" or (config.quantize == "auto" and paths.int8.is_file())


def prepare(config: ExportConfig, run: Run | None, log: Log, recorded: WrapperSpec | None = None):
    """Keras model, its wrapping spec, the check images, the preprocessing decision record
    and the Keras reference outputs. `recorded`: the wrapper the graph under test was built
    with (--verify-only), instead of inspecting the model afresh."""
    model, trained_in = as_float32(load_keras_model(config.model), str(config.model))
    if trained_in:  # no bfloat16/float16 cast may reach the ONNX graph (float32_graph)
        log(f"model trained under {trained_in}: rebuilt to compute in float32 for export")
    samples, choice = load_samples(config, run)
    log(f"check images: {samples.source} ({choice.why})")
    decision: dict[str, Any] = {}
    if recorded is not None:  # --verify-only: wrap Keras as the graph under test says
        spec = recorded
    else:
        spec = inspect_model(
            model,
            input_scale=config.input_scale,
            output_kind=config.output_kind,
            source=str(config.model),
            channel_order=config.channel_order,
            mean=config.input_mean,
            std=config.input_std,
        )
    if spec.scaling_open:
        images, labels = samples.labelled_set()
        chosen = decide(
            model,
            spec,
            images,
            labels,
            input_scale=config.input_scale,
            channel_order=config.channel_order,
            mean=config.input_mean,
            std=config.input_std,
            min_accuracy=accuracy_floor(config.min_accuracy),
        )
        spec, decision = chosen.spec, chosen.record
        log("preprocessing candidates (Keras top-1 on the labelled check images):")
        if decision["candidates"]:
            log(candidates_table(decision))
        log(f"  {decision['why']}")
    if recorded is None:  # --verify-only keeps the averaging the graph was built with
        spec = spec.replace(tta=config.tta)
    log(f"model {config.model}: {spec.describe()}")
    return model, spec, samples, decision, keras_reference(model, spec, samples.images)


def run_parity(config, onnx_bytes: bytes, reference, samples: Samples, paths) -> Report:
    """The parity check of `onnx_bytes` against the Keras reference, naming both files."""
    report = check_parity(
        onnx_bytes,
        reference,
        samples.images,
        atol=config.atol,
        batch_sizes=config.batch_sizes,
        source=samples.source,
        threads=config.threads,
    )
    report.files = {"keras": str(config.model), "onnx": str(paths.onnx)}
    return report


def int8_step(
    config: ExportConfig,
    paths: ArtifactPaths,
    fp32: bytes,
    samples: Samples,
    fp32_probs: np.ndarray | None,
    result: ExportResult,
    log: Log,
    int8: bytes | None = None,
) -> dict[str, Any]:
    """The one call into quantize.py: search the INT8 recipes (unless `int8` bytes are given,
    --verify-only, which checks that twin) against the fp32 ONNX probabilities on the check
    images (`fp32_probs`, from parity). Returns the summary stored under "int8" in
    .parity.json, the `metrics` metadata and the card; sets result.int8 (its Report) and
    result.int8_proto (the twin to write, when it passed or with --force)."""
    import onnx

    from cifar10_exporter.int8.check import check_twin
    from cifar10_exporter.int8.quantize import quantize_int8

    if int8 is None:
        run = Run.of_model(config.model)
        int8, report = quantize_int8(fp32, samples, config, log, fp32_probs=fp32_probs, run=run)
    else:
        report = check_twin(fp32, int8, samples, config, fp32_probs)
    report.files = {"fp32": str(paths.onnx), "int8": str(paths.int8)}
    if config.quantize == "auto" and not config.verify_only and not report.passed:
        return _no_twin(report, config, log)
    log(report.table())
    result.int8 = report
    written = not config.verify_only and (report.passed or config.force)
    # A refused twin beside a kept one reports to STEM.int8.rejected.parity.json instead.
    where = paths.int8_parity if written or config.verify_only else paths.report(paths.int8)
    result.reports["int8"] = where
    write_json(where, report.to_dict())
    if written:  # written with the fp32 model, once both carry the final `metrics`
        proto = onnx.load_model_from_string(int8)
        set_metadata(proto, {"parity": report.summary()})
        check_model(proto, "the int8 model")
        result.int8_proto = proto
    # The recipe search's figures (table, choice, speed-up, CPU) travel with the summary, so
    # the card and the metrics metadata state them as measured here.
    keys = ("recipe", "recipes", "speed", "cpu", "verdict", "int8_recommended", "calibration")
    found = {k: report.stats[k] for k in keys if k in report.stats}
    return {"file": str(paths.int8), "written": written, **report.summary(), **found}


def _no_twin(report: Report, config: ExportConfig, log: Log) -> dict[str, Any]:
    """`--quantize auto` when no recipe passes: one line, no twin, no report file, no error
    (result.int8 stays unset); the search's table stays in .parity.json and the card."""
    from cifar10_exporter.int8.quantize import no_pass_line

    line = no_pass_line(report.stats.get("recipes", []), config)
    log(line)
    found = {k: report.stats[k] for k in ("recipes", "cpu", "calibration") if k in report.stats}
    return {"written": False, "passed": False, "note": line, **found}


def answering(onnx: Path, threads: int | None, log: Log) -> dict[str, Any]:
    """Which engine and precision the runtime's default Predictor chooses for `onnx` (and its
    twin) on this machine, in the runtime's own words (`Predictor.engine`), for the card."""
    from cifar10_runtime.predictor import Predictor

    try:
        predictor = Predictor(onnx, threads=threads)
    except CifarError as exc:
        log(f"note: the runtime would not load {onnx.name}: {first_line(exc)}")
        return {"error": first_line(exc)}
    choice = predictor.engine_choice
    log(f"answers here: {predictor.engine} (the default Predictor's choice, {choice['why']})")
    return {
        "engine": predictor.engine,
        "precision": predictor.precision,
        # The card lasts: where this machine's timings came from (a cache, when) is left out.
        "why": choice["basis"],
        "cpu": f"{choice['cpu']} ({choice['cpu_features']})",
    }


def write_card(paths, config, spec, run, report: Report, props: dict[str, str], log: Log):
    """OUTPUT.md from the same records as .parity.json; a read-only folder only logs a note."""
    text = card.render(
        onnx_name=paths.onnx.name,
        model_version=props.get("model_version", "?"),
        source=str(config.model),
        source_sha256=props.get("source_sha256", ""),
        spec=spec,
        class_names=config.class_names,
        run=run,
        report=report.to_dict(),
        versions=read_json(props, "producer_versions", {}) or producer_versions(0),
        answers=answering(paths.onnx, config.threads, log),
    )
    try:
        write_bytes(paths.card, text.encode())
    except OSError as exc:  # a read-only checkout must not hide the verdict
        log(f"note: could not write {paths.card} ({exc.strerror or exc})")
        return
    log(f"wrote {paths.card} (model card)")
