"""Which engine runs a model: the load-time self-check and the choice by measurement.

`choose` takes the model's onnxruntime float32 session (already opened and probed) and:
1. reads the golden set and the allowed precisions from the metadata (none: onnxruntime
   float32 as before, and the log says why nothing else was tried);
2. replays the golden images on onnxruntime float32: a file that no longer computes its
   reference outputs (weights changed after export) is refused, exit 4;
3. opens every other allowed candidate available here (engines.candidates: the int8 twin,
   OpenVINO at each allowed precision) and replays the golden set on it within its
   precision's tolerance;
4. times the survivors briefly at a few batch sizes, interleaved, and keeps the fastest per
   batch range (engines.plan); a candidate must beat onnxruntime float32 by SWITCH_MARGIN to
   be used at all, so the choice never runs slower than it on this machine beyond timing noise;
5. logs the whole table in one block.
A forced engine or precision that cannot run here is a ConfigError (exit 2) naming what is
missing and how to get it.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from cifar10_runtime.contract import ENGINES, INPUT_NAME, OUTPUT_NAME, PRECISIONS
from cifar10_runtime.engines.candidates import Candidate, candidates
from cifar10_runtime.engines.golden import Golden, read_golden
from cifar10_runtime.engines.plan import BatchPlan, build_steps, fmt, render
from cifar10_runtime.engines.runners import (
    EXTRA_HINT,
    Runner,
    openvino_backend,
    openvino_runner,
    ort_file_runner,
    ort_runner,
)
from cifar10_runtime.engines.sessions import cpu_session
from cifar10_runtime.engines.timing import TIMING_BATCHES
from cifar10_runtime.engines.timing_cache import plan_speeds
from cifar10_runtime.errors import CifarError, ConfigError, ModelError, first_line

log = logging.getLogger("cifar10_runtime.engines.runners")


def check_request(engine: str, precision: str) -> tuple[str, str]:
    engine, precision = str(engine).strip().lower(), str(precision).strip().lower()
    if engine not in ("auto", *ENGINES):
        raise ConfigError(
            f"engine must be auto, {', '.join(ENGINES)}. Received: engine={engine!r}."
        )
    if precision not in ("auto", *PRECISIONS):
        raise ConfigError(
            f"precision must be auto, {', '.join(PRECISIONS)}. Received: precision={precision!r}."
        )
    if engine == "onnxruntime" and precision == "bf16":
        raise ConfigError(
            "onnxruntime's CPU EP has no bf16 path; bf16 runs on OpenVINO. Use --engine "
            "openvino (or auto). Received: engine='onnxruntime', precision='bf16'."
        )
    return engine, precision


def choose(
    anchor: Runner,
    model: Any,
    metadata: dict[str, Any],
    source: str,
    engine: str = "auto",
    precision: str = "auto",
    threads: int | None = None,
    self_check: bool = True,
) -> BatchPlan:
    started = time.perf_counter()
    engine, precision = check_request(engine, precision)
    asked = f"Received: engine={engine!r}, precision={precision!r}."
    golden, why_none = read_golden(metadata)
    if not self_check:
        golden, why_none = None, "the self-check was turned off by the caller"
    if golden is None:
        plan = _without_golden(anchor, model, engine, precision, threads, why_none, asked)
    else:
        plan = _with_golden(anchor, model, golden, source, engine, precision, threads, asked)
    plan.seconds = time.perf_counter() - started
    plan.text = render(plan, source, threads)
    log.info("%s", plan.text)
    return plan


def _without_golden(anchor, model, engine, precision, threads, why, asked) -> BatchPlan:
    if precision in ("bf16", "int8"):
        raise ConfigError(
            f"precision {precision} needs the export's evidence that it keeps the model's "
            f"accuracy, and {why}. Re-export with cifar-export ({EXTRA_HINT} for bf16, "
            f"--quantize int8 for int8), or use precision auto. {asked}"
        )
    if engine == "openvino":
        runner = _open(model, "openvino", "fp32", threads, asked)
        row = {"candidate": runner.name, "backend": runner.backend, "status": "used unchecked"}
        return BatchPlan([(1, runner)], [row], f"forced; not checked at load: {why}")
    row = {"candidate": anchor.name, "backend": anchor.backend, "status": "used"}
    return BatchPlan([(1, anchor)], [row], f"onnxruntime/fp32 only: {why}; nothing else was tried")


def _open(model, engine: str, precision: str, threads, asked: str, spinning=True) -> Runner:
    if engine == "openvino":
        backend, why = openvino_backend()
        if backend is None:
            raise ConfigError(f"engine openvino is not available here: {why}. {asked}")
        return openvino_runner(model, precision, threads)
    return ort_file_runner(model, "int8", threads, INPUT_NAME, OUTPUT_NAME, spinning=spinning)


def _with_golden(anchor, model, golden, source, engine, precision, threads, asked) -> BatchPlan:
    reference_diff = golden.max_diff(golden.replay(anchor.run))
    if not reference_diff <= golden.tolerance("fp32"):
        raise ModelError(
            f"{source} no longer reproduces its golden outputs: onnxruntime float32 differs "
            f"from the reference recorded at export by {reference_diff:.3g} (tolerance "
            f"{golden.tolerance('fp32'):g}). The file changed after export (weights edited, "
            "or a damaged copy); re-export it with cifar-export."
        )
    gpu = bool(anchor.providers) and anchor.providers[0] != "CPUExecutionProvider"
    tried, table = candidates(model, golden, engine, precision, gpu, asked)
    runners = _checked_runners(tried, table, anchor, reference_diff, golden, threads, asked)
    if not runners:
        raise ModelError(
            f"{source}: no engine asked for reproduces the golden outputs ({_failures(table)}). "
            f"Use engine auto, or re-export the model. {asked}"
        )
    if len(runners) == 1:
        _mark_used(table, runners[0])
        return BatchPlan([(1, runners[0])], table, "the only candidate that passed")
    return _timed_plan(runners, table, golden, threads)


def _checked_runners(
    tried: list[Candidate],
    table: list[dict[str, Any]],
    anchor: Runner,
    reference_diff: float,
    golden: Golden,
    threads: int | None,
    asked: str,
) -> list[Runner]:
    """Open each candidate and replay the golden set on it; the ones within tolerance, and
    a row each in `table`."""
    runners: list[Runner] = []
    # With OpenVINO in the running, onnxruntime sessions opened from here on stop spinning
    # when a run returns (see unspun).
    spinning = not any(eng == "openvino" for eng, _, _ in tried)
    for eng, prec, file in tried:
        row = {"candidate": f"{eng}/{prec}", "tolerance": golden.tolerance(prec)}
        if (eng, prec) == ("onnxruntime", "fp32"):
            runner, diff = anchor, reference_diff
        else:
            opened = time.perf_counter()
            try:
                runner = _open(file, eng, prec, threads, asked, spinning)
                diff = golden.max_diff(golden.replay(runner.run))
            except Exception as exc:  # noqa: BLE001 - an engine that fails here is not used
                note = str(exc) if isinstance(exc, CifarError) else first_line(exc)
                table.append({**row, "status": "failed to open or run", "note": note})
                continue
            row["open_s"] = round(time.perf_counter() - opened, 3)
        row.update(backend=runner.backend, golden_max_diff=diff)
        if diff <= golden.tolerance(prec):
            runners.append(runner)
            table.append({**row, "status": "passed"})
        else:
            table.append({**row, "status": "failed the golden check"})
    return runners


def _failures(table: list[dict[str, Any]]) -> str:
    return "; ".join(
        f"{r['candidate']}: {r['status']} ({fmt(r.get('golden_max_diff'))} > "
        f"{r.get('tolerance', 0):g})"
        if "golden_max_diff" in r
        else f"{r['candidate']}: {r.get('note', r['status'])}"
        for r in table
    )


def _timed_plan(
    runners: list[Runner], table: list[dict[str, Any]], golden: Golden, threads: int | None
) -> BatchPlan:
    """Time the runners that passed and give each batch range to the fastest."""
    speeds, timing = plan_speeds(runners, golden.images, threads)
    for row in table:
        if row["candidate"] in speeds:
            row["images_per_s"] = {str(b): round(v, 1) for b, v in speeds[row["candidate"]].items()}
    steps = build_steps(runners, speeds)
    basis = f"fastest per batch range at batches {', '.join(map(str, TIMING_BATCHES))}"
    why = f"{basis}, {timing}"
    if len({r.engine for _, r in steps}) > 1:
        steps = [(start, unspun(r, threads)) for start, r in steps]
        shared = "; onnxruntime's threads stop spinning after each run, OpenVINO's share the cores"
        basis, why = basis + shared, why + shared
    for _, r in steps:
        _mark_used(table, r)
    return BatchPlan(steps, table, why, timing=timing, basis=basis)


def unspun(runner: Runner, threads: int | None) -> Runner:
    """The onnxruntime runner again, its workers stopping their spin when a run returns: in a
    plan with OpenVINO they would otherwise hold the cores OpenVINO's threads need right
    after every onnxruntime call."""
    if runner.engine != "onnxruntime" or runner.session is None or not runner.spinning:
        return runner
    session = runner.session
    inp, out = session.get_inputs()[0].name, session.get_outputs()[0].name
    session = cpu_session(runner.source, threads, spinning=False)
    return ort_runner(session, runner.precision, inp, out, runner.source, spinning=False)


def _mark_used(table: list[dict], runner: Runner) -> None:
    for row in table:
        if row["candidate"] == runner.name and row["status"] == "passed":
            row["status"] = "passed, used"
