"""The export pipeline: `export` turns a Keras model into OUTPUT.onnx and its side files.

preflight (once) -> load and inspect the Keras model -> labelled check images ->
preprocessing decided by evidence when the model does not show it -> convert (wrapper in the
graph) -> onnx.checker (full, once) -> parity from the in-memory bytes -> accuracy of Keras and
ONNX and the accuracy gate -> optional int8 (one call site) -> metadata -> atomic write of
OUTPUT only if parity and the gate passed (or --force) -> the model card.
Every run writes OUTPUT's parity JSON (`model.parity.json`); exports also save their resolved
config (`model.export.json`); the card (`model.md`) is written beside every OUTPUT written.
The steps live in steps.py, shared with `verify` (verify.py); cli.py chooses between them.
"""

from __future__ import annotations

from typing import Any

from cifar10_exporter.checks.assess import ExportResult, Log, check_model, raise_failures, score
from cifar10_exporter.checks.engine_evidence import engines_step
from cifar10_exporter.config import ExportConfig
from cifar10_exporter.outputs.files import ArtifactPaths
from cifar10_exporter.outputs.metadata import (
    build_metadata,
    default_model_version,
    export_metrics,
    get_metadata,
    set_metadata,
)
from cifar10_exporter.steps import int8_step, preflight, prepare, run_parity, write_card
from cifar10_exporter.wrapper import WrapperSpec
from cifar10_runtime.errors import CifarError, ConfigError, first_line
from cifar10_runtime.files import sha256_hex as sha256_file
from cifar10_runtime.files import write_bytes, write_json
from cifar10_trainer.run import Run

__all__ = ["ExportResult", "export", "preflight"]


def export(config: ExportConfig, log: Log = print, paths: ArtifactPaths | None = None):
    """Convert config.model to ONNX at config.output, check parity and accuracy, optionally
    quantize. Raises ParityError (exit code 1) after writing the reports when a check fails;
    OUTPUT is written only when parity and the accuracy gate pass, or with force=True (and the
    error is still raised). `paths`: preflight's result when the caller already ran it.
    To check an existing OUTPUT, call `verify` (cifar-export --verify-only)."""
    if config.verify_only:
        raise ConfigError(
            "export() converts a model and never checks an existing OUTPUT; call "
            "cifar10_exporter.verify() for that (cifar-export --verify-only), or drop "
            "verify_only. Received: verify_only=True"
        )
    from cifar10_exporter.from_keras.convert import convert_to_onnx

    paths = paths or preflight(config)
    run = Run.of_model(config.model)
    model, spec, samples, decision, reference = prepare(config, run, log)
    log(f"converting with tf2onnx (opset {config.opset})")
    proto = convert_to_onnx(model, spec, config.opset, str(config.model))
    version = _stamp(config, proto, spec, run)
    check_model(proto, "the converted model")
    report = run_parity(config, proto.SerializeToString(), reference, samples, paths)
    report.stats["preprocessing"] = decision
    log(report.table())
    verdict = score(config, samples, reference, report, run, log)
    if spec.tta != "none" and report.passed:  # what the averaging buys and costs, for the card
        from cifar10_exporter.tta import tta_step

        averaged = proto.SerializeToString()
        report.stats["tta"] = tta_step(config, model, spec, samples, reference, averaged, log)
    ok = report.passed and verdict.passed
    result = ExportResult(paths, spec, report, written=ok or config.force, gate=verdict)
    if result.written:
        # Side files describe the model beside them: the old ones go before the new model
        # comes, so a kill at any point never leaves a report of another model behind.
        for side in paths.describing_onnx:
            side.unlink(missing_ok=True)
    # A refused export beside a kept model reports to STEM.rejected.parity.json instead.
    result.reports["parity"] = paths.parity if result.written else paths.report(paths.onnx)
    int8_error: CifarError | None = None
    try:
        int8_error = _int8(config, proto, samples, result, log)
        if report.passed:  # engines x precisions and the golden set (engine_evidence.py)
            engines_step(config, proto, result, samples, report, log)
        _write_models(config, proto, result, run, decision, version, log)
    finally:
        _write_settings(result, _settings(config, samples, result))
    if int8_error is not None:
        raise int8_error
    raise_failures(result, config)
    return result


def _stamp(config: ExportConfig, proto: Any, spec: WrapperSpec, run: Run | None) -> str:
    """Set the converted model's first metadata; its model version."""
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
    return version


def _int8(
    config: ExportConfig, proto: Any, samples: Any, result: ExportResult, log: Log
) -> CifarError | None:
    """The INT8 twin unless --quantize none, when the fp32 model allows it. With int8 its
    error, if any, is returned so the fp32 model is still written before the export fails;
    with auto a twin that cannot be made is one line, and the export goes on without it."""
    report, verdict = result.parity, result.gate
    if config.quantize == "none":
        return None
    # --force (as before the gate existed) still makes the int8 twin of a model that only
    # failed the accuracy gate; a parity failure means the fp32 graph itself is wrong. auto
    # makes a twin only of a model that passed its own checks.
    forced = config.force and config.quantize == "int8"
    if not (report.passed and (verdict.passed or forced)):
        log("int8: skipped, the fp32 model failed its checks")
        return None
    if samples.n_dataset < 1:  # auto only: config refuses int8 with --samples 0
        log("int8: no twin (no check images to judge one by: --samples 0); fp32 answers")
        return None
    fp32 = proto.SerializeToString()
    try:
        report.stats["int8"] = int8_step(
            config, result.paths, fp32, samples, report.outputs, result, log
        )
    except CifarError as exc:  # the fp32 model is still good: write it, then fail
        if config.quantize == "auto":
            line = f"int8: no twin written ({first_line(exc)}); the fp32 model answers"
            log(line)
            report.stats["int8"] = {"written": False, "note": line}
            return None
        report.stats["int8"] = {"error": str(exc)}
        return exc
    return None


def _write_models(  # noqa: PLR0913
    config: ExportConfig,
    proto: Any,
    result: ExportResult,
    run: Run | None,
    decision: Any,
    version: str,
    log: Log,
) -> None:
    """The final metadata, then OUTPUT (when written), its parity JSON, the twin, the card."""
    paths, report = result.paths, result.parity
    metrics = export_metrics(report.stats["accuracy"], run, report.stats.get("int8"))
    shared = {"metrics": metrics, "preprocessing": decision}
    set_metadata(proto, {"parity": report.summary(), **shared})
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
        write_card(paths, config, result.spec, run, report, get_metadata(proto), log)


def _settings(config: ExportConfig, samples: Any, result: ExportResult) -> dict[str, Any]:
    """What .export.json records: the resolved config and what this run wrote."""
    paths = result.paths
    return {
        "config": config.to_dict(),
        "model_spec": result.spec.to_dict(),
        "data": samples.source,
        "outputs": {
            "onnx": str(paths.onnx) if result.written else None,
            "int8": str(paths.int8) if result.int8_written else None,
            "parity": str(result.reports["parity"]),
            "card": str(paths.card) if result.written else None,
        },
        "passed": result.passed,
    }


def _write_settings(result: ExportResult, settings: dict[str, Any]) -> None:
    """OUTPUT's .export.json, never beside a model this run did not make (a refused export)."""
    if result.written or not result.paths.onnx.exists():
        write_json(result.paths.config, settings)
