"""The export pipeline (`export`) and the check of an existing export (`verify`).

export: preflight (once) -> load and inspect the Keras model -> labelled check images ->
preprocessing decided by evidence when the model does not show it -> convert (wrapper in the
graph) -> onnx.checker (full, once) -> parity from the in-memory bytes -> accuracy of Keras and
ONNX and the accuracy gate -> optional int8 (one call site) -> metadata -> atomic write of
OUTPUT only if parity and the gate passed (or --force) -> the model card.
Every run writes OUTPUT's parity JSON (`model.parity.json`); exports also save their resolved
config (`model.export.json`); the card (`model.md`) is written beside every OUTPUT written or
verified. `verify` (verify.py) checks an existing export with the same pieces.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from cifar10_runtime.errors import CifarError, ModelError
from cifar10_runtime.files import sha256_hex as sha256_file
from cifar10_runtime.files import write_bytes, write_json
from cifar10_trainer.errors import DataError
from cifar10_trainer.run import Run

from . import card
from .assess import ExportResult, Log, check_model, raise_failures, score
from .config import ExportConfig
from .files import ArtifactPaths, ensure_writable_dir
from .float32_graph import as_float32
from .keras_model import (
    ModelSpec,
    check_model_path,
    inspect_model,
    keras_reference,
    load_keras_model,
)
from .metadata import (
    build_metadata,
    default_model_version,
    export_metrics,
    get_metadata,
    producer_versions,
    set_metadata,
)
from .parity import Report, check_parity
from .samples import Samples, load_samples

__all__ = ["ExportResult", "export", "preflight"]


def preflight(config: ExportConfig) -> ArtifactPaths:
    """The cheap checks (paths), run once, before any heavy import so a typo fails at once."""
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
    if config.quantize and not paths.int8.is_file():
        raise ModelError(
            f"no int8 model at {paths.int8} to verify: export with --quantize int8 first, "
            f"or drop --quantize. Received: --quantize={config.quantize} --verify-only"
        )
    return paths


def prepare(config: ExportConfig, run: Run | None, log: Log, recorded: ModelSpec | None = None):
    """Keras model, its wrapping spec, the check images and the Keras reference outputs."""
    from .preprocessing import candidates_table, decide

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
            min_accuracy=0.2 if config.min_accuracy is None else config.min_accuracy,
        )
        spec, decision = chosen.spec, chosen.record
        log("preprocessing candidates (Keras top-1 on the labelled check images):")
        if decision["candidates"]:
            log(candidates_table(decision))
        log(f"  {decision['why']}")
    log(f"model {config.model}: {spec.describe()}")
    return model, spec, samples, decision, keras_reference(model, spec, samples.images)


def run_parity(config, onnx_bytes: bytes, reference, samples: Samples, paths) -> Report:
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


def export(config: ExportConfig, log: Log = print, paths: ArtifactPaths | None = None):
    """Convert config.model to ONNX at config.output, check parity and accuracy, optionally
    quantize. Raises ParityError (exit code 1) after writing the reports when a check fails;
    OUTPUT is written only when parity and the accuracy gate pass, or with force=True (and the
    error is still raised). `paths`: preflight's result when the caller already ran it."""
    if config.verify_only:
        from .verify import verify

        return verify(config, log, paths)
    from .convert import convert_to_onnx

    paths = paths or preflight(config)
    run = Run.of_model(config.model)
    model, spec, samples, decision, reference = prepare(config, run, log)
    log(f"converting with tf2onnx (opset {config.opset})")
    proto = convert_to_onnx(model, spec, config.opset, str(config.model))
    sha = sha256_file(config.model)
    version = config.model_version or default_model_version(config.model, sha, run)
    meta = build_metadata(
        class_names=config.class_names,
        source_sha256=sha,
        model_version=version,
        opset=config.opset,
        wrapper=spec.to_dict(),
    )
    set_metadata(proto, meta)
    check_model(proto, "the converted model")
    report = run_parity(config, proto.SerializeToString(), reference, samples, paths)
    report.stats["preprocessing"] = decision
    log(report.table())
    verdict = score(config, samples, reference, report, run, log)
    ok = report.passed and verdict.passed
    result = ExportResult(paths, spec, report, written=ok or config.force, gate=verdict)
    int8_error: CifarError | None = None
    if result.written:
        # Side files describe the model beside them: the old ones go before the new model
        # comes, so a kill at any point never leaves a report of another model behind.
        for side in paths.describing_onnx:
            side.unlink(missing_ok=True)
    # A refused export beside a kept model reports to STEM.rejected.parity.json instead.
    result.reports["parity"] = paths.parity if result.written else paths.report(paths.onnx)
    try:
        # --force (as before the gate existed) still makes the twin of a model that only
        # failed the accuracy gate; a parity failure means the fp32 graph itself is wrong.
        if config.quantize == "int8" and report.passed and (verdict.passed or config.force):
            fp32 = proto.SerializeToString()
            try:
                report.stats["int8"] = int8_step(
                    config, paths, fp32, samples, report.outputs, result, log
                )
            except CifarError as exc:  # the fp32 model is still good: write it, then fail
                int8_error = exc
                report.stats["int8"] = {"error": str(exc)}
        elif config.quantize == "int8":
            log("int8: skipped, the fp32 model failed its checks")
        metrics = json.dumps(
            export_metrics(report.stats["accuracy"], run, report.stats.get("int8"))
        )
        shared = {"metrics": metrics, "preprocessing": json.dumps(decision, separators=(",", ":"))}
        set_metadata(
            proto, {"parity": json.dumps(report.summary(), separators=(",", ":")), **shared}
        )
        if result.written:
            data = proto.SerializeToString()
            write_bytes(paths.onnx, data)
            log(f"wrote {paths.onnx} ({len(data) / 1e6:.2f} MB, version {version})")
        write_json(result.reports["parity"], report.to_dict())
        if result.int8_proto is not None:
            set_metadata(result.int8_proto, shared)
            data = result.int8_proto.SerializeToString()
            write_bytes(paths.int8, data)
            result.int8_written = True
            log(f"wrote {paths.int8} ({len(data) / 1e6:.2f} MB)")
        if result.written:
            write_card(paths, config, spec, run, report, get_metadata(proto), log)
    finally:
        _write_settings(
            result,
            {
                "config": config.to_dict(),
                "model_spec": spec.to_dict(),
                "data": samples.source,
                "outputs": {
                    "onnx": str(paths.onnx) if result.written else None,
                    "int8": str(paths.int8) if result.int8_written else None,
                    "parity": str(result.reports["parity"]),
                    "card": str(paths.card) if result.written else None,
                },
                "passed": result.passed,
            },
        )
    if int8_error is not None:
        raise int8_error
    raise_failures(result, config)
    return result


def _write_settings(result: ExportResult, settings: dict[str, Any]) -> None:
    """OUTPUT's .export.json, never beside a model this run did not make (a refused export)."""
    if result.written or not result.paths.onnx.exists():
        write_json(result.paths.config, settings)


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

    from .quantize import check_int8, quantize_int8

    if int8 is None:
        run = Run.of_model(config.model)
        int8, report = quantize_int8(fp32, samples, config, log, fp32_probs=fp32_probs, run=run)
    else:
        report = check_int8(
            fp32,
            int8,
            samples,
            min_agreement=config.int8_min_agreement,
            max_accuracy_drop=config.int8_max_accuracy_drop,
            threads=config.threads,
            fp32_probs=fp32_probs,
        )
    report.files = {"fp32": str(paths.onnx), "int8": str(paths.int8)}
    log(report.table())
    result.int8 = report
    written = not config.verify_only and (report.passed or config.force)
    # A refused twin beside a kept one reports to STEM.int8.rejected.parity.json instead.
    where = paths.int8_parity if written or config.verify_only else paths.report(paths.int8)
    result.reports["int8"] = where
    write_json(where, report.to_dict())
    if written:  # written with the fp32 model, once both carry the final `metrics`
        proto = onnx.load_model_from_string(int8)
        set_metadata(proto, {"parity": json.dumps(report.summary(), separators=(",", ":"))})
        check_model(proto, "the int8 model")
        result.int8_proto = proto
    # The recipe search's figures (table, choice, speed-up, CPU) travel with the summary, so
    # the card and the metrics metadata state them as measured here.
    keys = ("recipe", "recipes", "speed", "cpu", "verdict", "int8_recommended", "calibration")
    found = {k: report.stats[k] for k in keys if k in report.stats}
    return {"file": str(paths.int8), "written": written, **report.summary(), **found}


def write_card(paths, config, spec, run, report: Report, props: dict[str, str], log: Log):
    text = card.render(
        onnx_name=paths.onnx.name,
        model_version=props.get("model_version", "?"),
        source=str(config.model),
        source_sha256=props.get("source_sha256", ""),
        spec=spec,
        class_names=config.class_names,
        run=run,
        report=report.to_dict(),
        versions=json.loads(props.get("producer_versions") or "{}") or producer_versions(0),
    )
    try:
        write_bytes(paths.card, text.encode())
    except OSError as exc:  # a read-only checkout must not hide the verdict
        log(f"note: could not write {paths.card} ({exc.strerror or exc})")
        return
    log(f"wrote {paths.card} (model card)")
