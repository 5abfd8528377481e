"""The export pipeline (`export`) and the check of an existing export (`verify`).

export: load and inspect the Keras model -> convert (wrapper in the graph) -> metadata ->
onnx.checker (full) -> parity from the in-memory bytes -> parity summary into the metadata ->
atomic write of OUTPUT only if parity passed (or --force) -> optional int8 + its check.
Every run writes OUTPUT's parity JSON (`model.parity.json`); exports also save their
resolved config (`model.export.json`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cifar10_runtime.errors import CifarError, ModelError
from cifar10_trainer.errors import DataError
from cifar10_trainer.outputs import sha256_file, write_bytes, write_json

from .config import ExportConfig
from .files import ArtifactPaths, ensure_writable_dir
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
    get_metadata,
    read_run_metrics,
    set_metadata,
)
from .parity import Report, check_parity
from .samples import Samples, load_samples

Log = Callable[[str], None]


@dataclass
class ExportResult:
    paths: ArtifactPaths
    spec: ModelSpec
    parity: Report
    written: bool  # OUTPUT was (re)written by this run
    int8: Report | None = None
    int8_written: bool = False

    @property
    def passed(self) -> bool:
        return self.parity.passed and (self.int8 is None or self.int8.passed)


def preflight(config: ExportConfig) -> ArtifactPaths:
    """The cheap checks (paths), run before any heavy import so a typo fails at once."""
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


def _check_model(proto_or_bytes, what: str) -> None:
    import onnx

    proto = proto_or_bytes
    if isinstance(proto_or_bytes, bytes):
        proto = onnx.load_model_from_string(proto_or_bytes)
    try:
        onnx.checker.check_model(proto, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        first = (str(exc).strip().splitlines() or ["invalid model"])[0][:300]
        raise ModelError(f"{what} fails onnx.checker (full check): {first}") from exc


def _prepare(config: ExportConfig, log: Log):
    model = load_keras_model(config.model)
    spec = inspect_model(
        model,
        input_scale=config.input_scale,
        output_kind=config.output_kind,
        source=str(config.model),
    )
    log(f"model {config.model}: {spec.describe()}")
    samples, choice = load_samples(config)
    log(f"parity images: {samples.source} ({choice.why})")
    reference = keras_reference(model, spec, samples.images)
    return model, spec, samples, choice, reference


def _raise_failures(result: ExportResult, config: ExportConfig) -> None:
    failed = [r for r in (result.parity, result.int8) if r is not None and not r.passed]
    if not failed:
        return
    report = failed[0]
    if report.kind == "int8":
        subject, written = result.paths.int8, result.int8_written
        details = result.paths.int8_parity
    else:
        subject, written = result.paths.onnx, result.written
        details = result.paths.parity
    if config.verify_only:
        fix = "Re-export it with cifar-export (without --verify-only)."
        if result.parity.stats.get("source_sha256_matches") is False:
            fix = (
                f"Note: its source_sha256 is not the SHA-256 of {config.model}: it was "
                f"exported from another Keras file. {fix}"
            )
    else:
        state = "written anyway (--force)" if written else "not written"
        fix = f"{subject} was {state}; details in {details}."
    fix += f" Received: --atol={config.atol:g}" if report.kind == "parity" else ""
    err = report.error(f"{subject} against {config.model}", fix)
    if len(failed) > 1:
        err.args = (f"{err.args[0]} The int8 check failed too: see {result.paths.int8_parity}.",)
    raise err


def export(config: ExportConfig, log: Log = print) -> ExportResult:
    """Convert config.model to ONNX at config.output, check parity, optionally quantize.

    Raises ParityError (exit code 1) after writing the reports when a check fails; OUTPUT is
    written only when parity passes, or with force=True (and the error is still raised).
    """
    if config.verify_only:
        return verify(config, log)
    from .convert import convert_to_onnx

    paths = preflight(config)
    model, spec, samples, choice, reference = _prepare(config, log)
    log(f"converting with tf2onnx (opset {config.opset})")
    proto = convert_to_onnx(model, spec, config.opset, str(config.model))
    sha = sha256_file(config.model)
    version = config.model_version or default_model_version(config.model, sha)
    set_metadata(
        proto,
        build_metadata(
            class_names=config.class_names,
            source_sha256=sha,
            model_version=version,
            opset=config.opset,
            metrics=read_run_metrics(config.model),
            wrapper=spec.to_dict(),
        ),
    )
    _check_model(proto, "the converted model")
    report = check_parity(
        proto.SerializeToString(),
        reference,
        samples.images,
        atol=config.atol,
        batch_sizes=config.batch_sizes,
        source=samples.source,
        threads=config.threads,
    )
    report.files = {"keras": str(config.model), "onnx": str(paths.onnx)}
    set_metadata(proto, {"parity": json.dumps(report.summary(), separators=(",", ":"))})
    _check_model(proto, "the converted model")
    log(report.table())
    fp32 = proto.SerializeToString()
    result = ExportResult(paths, spec, report, written=report.passed or config.force)
    write_json(paths.parity, report.to_dict())
    if result.written:
        write_bytes(paths.onnx, fp32)
        log(f"wrote {paths.onnx} ({len(fp32) / 1e6:.2f} MB, version {version})")
    try:
        if config.quantize == "int8" and report.passed:
            _quantize(config, paths, fp32, samples, result, log)
        elif config.quantize == "int8":
            log("int8: skipped, the fp32 model failed its parity check")
    finally:
        write_json(
            paths.config,
            {
                "config": config.to_dict(),
                "model_spec": spec.to_dict(),
                "data": choice.why,
                "outputs": {
                    "onnx": str(paths.onnx) if result.written else None,
                    "int8": str(paths.int8) if result.int8_written else None,
                    "parity": str(paths.parity),
                },
                "passed": result.passed,
            },
        )
    _raise_failures(result, config)
    return result


def _quantize(
    config: ExportConfig,
    paths: ArtifactPaths,
    fp32: bytes,
    samples: Samples,
    result: ExportResult,
    log: Log,
) -> None:
    from .quantize import quantize_int8

    int8, report = quantize_int8(fp32, samples, config, log)
    report.files = {"fp32": str(paths.onnx), "int8": str(paths.int8)}
    _finish_int8(report, int8, paths, config, result, log)


def _finish_int8(
    report: Report,
    int8: bytes,
    paths: ArtifactPaths,
    config: ExportConfig,
    result: ExportResult,
    log: Log,
) -> None:
    import onnx

    proto = onnx.load_model_from_string(int8)
    set_metadata(proto, {"parity": json.dumps(report.summary(), separators=(",", ":"))})
    _check_model(proto, "the int8 model")
    log(report.table())
    result.int8 = report
    write_json(paths.int8_parity, report.to_dict())
    if report.passed or config.force:
        data = proto.SerializeToString()
        write_bytes(paths.int8, data)
        result.int8_written = True
        log(f"wrote {paths.int8} ({len(data) / 1e6:.2f} MB)")


def verify(config: ExportConfig, log: Log = print) -> ExportResult:
    """Check an existing OUTPUT (and its int8 twin with quantize="int8") against config.model."""
    paths = preflight(config)
    fp32 = paths.onnx.read_bytes()
    try:
        _check_model(fp32, str(paths.onnx))
    except Exception as exc:  # protobuf decode errors of non-ONNX files, checker failures
        if isinstance(exc, CifarError):
            raise
        raise ModelError(
            f"{paths.onnx} is not a readable ONNX model ({type(exc).__name__}); "
            f"re-export it with cifar-export. Received: OUTPUT={paths.onnx}"
        ) from exc
    _, spec, samples, _, reference = _prepare(config, log)
    report = check_parity(
        fp32,
        reference,
        samples.images,
        atol=config.atol,
        batch_sizes=config.batch_sizes,
        source=samples.source,
        threads=config.threads,
    )
    report.files = {"keras": str(config.model), "onnx": str(paths.onnx)}
    _note_provenance(report, fp32, config.model)
    log(report.table())
    result = ExportResult(paths, spec, report, written=False)
    _try_write_json(paths.parity, report, log)
    if config.quantize == "int8":
        from .quantize import check_int8

        int8 = paths.int8.read_bytes()
        _check_model(int8, str(paths.int8))
        result.int8 = check_int8(
            fp32,
            int8,
            samples,
            min_agreement=config.int8_min_agreement,
            max_accuracy_drop=config.int8_max_accuracy_drop,
            threads=config.threads,
        )
        result.int8.files = {"fp32": str(paths.onnx), "int8": str(paths.int8)}
        log(result.int8.table())
        _try_write_json(paths.int8_parity, result.int8, log)
    _raise_failures(result, config)
    return result


def _note_provenance(report: Report, onnx_bytes: bytes, keras_path: Path) -> None:
    import onnx

    props = get_metadata(onnx.load_model_from_string(onnx_bytes))
    sha = sha256_file(keras_path)
    report.stats["source_sha256_matches"] = props.get("source_sha256") == sha
    report.stats["model_version"] = props.get("model_version")


def _try_write_json(path: Path, report: Report, log: Log) -> None:
    try:
        write_json(path, report.to_dict())
    except OSError as exc:  # a read-only checkout must not hide the verdict
        log(f"note: could not write {path} ({exc.strerror or exc})")
