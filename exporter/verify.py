"""`--verify-only`: check an existing export against its Keras model, rewrite its reports.

The Keras model is wrapped as the graph under test records (`export_wrapper` metadata), so
the check is of that file; parity, accuracy and the gate run as in an export, and the parity
JSON and the model card are regenerated. The model itself is never rewritten. The steps are
steps.py's, shared with `export` (pipeline.py).
"""

from __future__ import annotations

from cifar10_exporter.checks.assess import ExportResult, Log, check_model, raise_failures, score
from cifar10_exporter.config import ExportConfig
from cifar10_exporter.outputs.files import ArtifactPaths
from cifar10_exporter.outputs.metadata import get_metadata, read_json
from cifar10_exporter.steps import (
    checks_twin,
    int8_step,
    preflight,
    prepare,
    run_parity,
    write_card,
)
from cifar10_exporter.wrapper import WrapperSpec
from cifar10_runtime.contract import GOLDEN_KEY, PRECISIONS_KEY
from cifar10_runtime.errors import CifarError, ModelError
from cifar10_runtime.files import sha256_hex as sha256_file
from cifar10_runtime.files import write_json
from cifar10_trainer.run import Run


def verify(config: ExportConfig, log: Log = print, paths: ArtifactPaths | None = None):
    """Check an existing OUTPUT (and its int8 twin: with quantize="int8", or "auto" when one
    is there) against config.model; rewrites the parity JSON and the model card, never the
    model. `config.verify_only` need not be set: checking is what this function does."""
    import onnx

    config = config.replace(verify_only=True)  # preflight and int8_step check, never write
    paths = paths or preflight(config)
    fp32 = paths.onnx.read_bytes()
    try:
        check_model(fp32, str(paths.onnx))
        props = get_metadata(onnx.load_model_from_string(fp32))
    except Exception as exc:  # protobuf decode errors of non-ONNX files, checker failures
        if isinstance(exc, CifarError):
            raise
        raise ModelError(
            f"{paths.onnx} is not a readable ONNX model ({type(exc).__name__}); "
            f"re-export it with cifar-export. Received: OUTPUT={paths.onnx}"
        ) from exc
    run = Run.of_model(config.model)
    recorded = _recorded_spec(props, config)
    _, spec, samples, decision, reference = prepare(config, run, log, recorded)
    report = run_parity(config, fp32, reference, samples, paths)
    report.stats["preprocessing"] = decision or read_json(props, "preprocessing", {})
    report.stats["source_sha256_matches"] = props.get("source_sha256") == sha256_file(config.model)
    report.stats["model_version"] = props.get("model_version")
    if PRECISIONS_KEY in props:  # the engine evidence the file carries, for the card
        golden = read_json(props, GOLDEN_KEY, {})
        count = golden.get("images", {}).get("shape", [0])[0]
        report.stats["engines"] = {**read_json(props, PRECISIONS_KEY), "golden_images": count}
    log(report.table())
    verdict = score(config, samples, reference, report, run, log)
    result = ExportResult(paths, spec, report, written=False, gate=verdict)
    if checks_twin(config, paths):
        int8 = paths.int8.read_bytes()
        check_model(int8, str(paths.int8))
        report.stats["int8"] = int8_step(
            config, paths, fp32, samples, report.outputs, result, log, int8=int8
        )
    if report.stats["source_sha256_matches"] is False:
        # Checked against another Keras file: this verdict is not about how OUTPUT was made,
        # so the reports beside OUTPUT (about its own source) are left as they are.
        log(f"note: {paths.parity} left as it was: {paths.onnx} was exported from another file")
    else:
        try:
            write_json(paths.parity, report.to_dict())
        except OSError as exc:
            log(f"note: could not write {paths.parity} ({exc.strerror or exc})")
        write_card(paths, config, spec, run, report, props, log)
    raise_failures(result, config)
    return result


def _recorded_spec(props: dict[str, str], config: ExportConfig) -> WrapperSpec | None:
    """The wrapper the graph under test was built with, unless flags ask for another."""
    flags = (config.input_scale, config.channel_order, config.output_kind)
    if "export_wrapper" not in props or flags != ("auto", "auto", "auto"):
        return None
    try:
        return WrapperSpec.from_dict(read_json(props, "export_wrapper"))
    except (ValueError, TypeError, KeyError):
        return None
