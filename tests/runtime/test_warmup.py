"""No compile in the serving path: engines that compile per input shape (OpenVINO) run every
batch size the batcher can form before the server reports ready.

Most tests use a spy engine marked `per_shape` (it records the batch sizes it is given) in a
plan beside onnxruntime, so they run in the runtime-only venv; the real OpenVINO ones skip
where it is missing. Waits are events (a gate the fake warm-up holds, the batcher's
`warmed()`, a log line), never sleeps.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cifar10_runtime import Predictor
from cifar10_runtime import predictor as predictor_module
from cifar10_runtime.batcher import MicroBatcher
from cifar10_runtime.engines import runners as engines_module
from cifar10_runtime.engines.plan import BatchPlan
from cifar10_runtime.engines.runners import Runner
from cifar10_runtime.engines.warmup import RUN_CAP

BOUND = 60.0
SPY_FROM = 5  # the spy engine serves batches of this size and up
OPENVINO, OPENVINO_MISSING = engines_module.openvino_backend()
needs_openvino = pytest.mark.skipif(
    OPENVINO is None, reason=f"OpenVINO is not usable here: {OPENVINO_MISSING}"
)


@pytest.fixture()
def spy_sizes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Predictors made in this test get the plan onnxruntime (1 to SPY_FROM-1), then a spy
    per-shape engine; returns the batch sizes the spy was given, in order."""
    seen: list[int] = []
    real_choose = predictor_module.choose

    def choose(anchor: Runner, *args: Any, **kwargs: Any) -> BatchPlan:
        plan = real_choose(anchor, *args, **kwargs)
        base = plan.steps[0][1]

        def run(x: np.ndarray) -> np.ndarray:
            seen.append(len(x))
            return base.run(x)

        spy = Runner("spy", "fp32", "test spy", run, per_shape=True)
        return BatchPlan([(1, base), (SPY_FROM, spy)], plan.table, "test plan")

    monkeypatch.setattr(predictor_module, "choose", choose)
    return seen


def _app(predictor: Predictor, **settings: Any) -> Any:
    pytest.importorskip("starlette", reason="the serve extra is not installed")
    from cifar10_runtime.serving.app import create_app
    from cifar10_runtime.serving.config import ServeConfig

    return create_app(predictor, ServeConfig(**settings))


def _client(app: Any) -> Any:
    from starlette.testclient import TestClient

    return TestClient(app)


@pytest.mark.parametrize("max_batch_size", [12, RUN_CAP + 6])
def test_every_batch_size_the_batcher_can_form_is_warmed(
    valid_model: Path, spy_sizes: list[int], max_batch_size: int
) -> None:
    predictor = Predictor(valid_model, threads=1)
    app = _app(predictor, max_batch_size=max_batch_size)
    with _client(app) as client:
        batcher = app.state.batcher
        record = client.portal.call(batcher.warmed)
        warmed = set(spy_sizes)
        assert record.sizes == {"spy/fp32": tuple(sorted(warmed))}
        spy_sizes.clear()
        # Every run the batcher can hand the model: 1..its own limit (a bigger request is
        # cut at that limit before it reaches the model).
        for n in range(1, batcher.max_batch_size + 1):
            predictor.predict_array(np.zeros((n, 32, 32, 3), np.uint8))
        assert spy_sizes, "the spy engine was never used: the test proves nothing"
        assert set(spy_sizes) <= warmed, f"compiled while serving: {set(spy_sizes) - warmed}"
        assert max(spy_sizes) <= RUN_CAP
        meta = client.get("/v1/metadata").json()["warm_up"]
        assert meta["by_engine"] == {"spy/fp32": sorted(warmed)}
        assert meta["max_batch"] == batcher.max_batch_size


def test_a_batch_over_the_cap_runs_in_chunks_each_on_its_own_engine(
    valid_model: Path, spy_sizes: list[int]
) -> None:
    import onnxruntime as ort

    predictor = Predictor(valid_model, threads=1)
    x = np.random.default_rng(0).integers(0, 256, (2 * RUN_CAP + SPY_FROM - 2, 32, 32, 3))
    x = x.astype(np.uint8)
    got = predictor.predict_array(x)
    # Two full chunks on the spy; the remainder (SPY_FROM - 2 images) on onnxruntime.
    assert spy_sizes == [RUN_CAP, RUN_CAP]
    session = ort.InferenceSession(str(valid_model), providers=["CPUExecutionProvider"])
    expected = session.run(None, {session.get_inputs()[0].name: x})[0]
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_readiness_stays_false_until_the_warm_up_is_done(
    valid_model: Path, spy_sizes: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    predictor = Predictor(valid_model, threads=1)
    entered, gate = threading.Event(), threading.Event()
    real_warm_up = predictor.warm_up

    def slow_warm_up(max_batch_size: int, stopping: Any = None) -> Any:
        entered.set()
        assert gate.wait(BOUND)
        return real_warm_up(max_batch_size, stopping)

    monkeypatch.setattr(predictor, "warm_up", slow_warm_up)
    grpc = _grpc_or_none()
    app = _app(predictor, max_batch_size=8, **({"grpc_port": 0} if grpc else {}))
    with _client(app) as client:
        try:
            assert entered.wait(BOUND)
            assert _readiness(client, app, grpc) == {"REST": 503, "gRPC": False}
            assert client.get("/healthz").status_code == 200
            assert client.get("/v2/health/live").status_code == 200
            assert client.get("/readyz").json()["status"] == "not ready"
            assert app.state.batcher.warming and not spy_sizes
        finally:
            gate.set()  # a failure above must not hold the shutdown for BOUND
        record = client.portal.call(app.state.batcher.warmed)
        assert record.sizes == {"spy/fp32": tuple(range(SPY_FROM, 9))}
        assert _readiness(client, app, grpc) == {"REST": 200, "gRPC": True}


def _grpc_or_none() -> Any:
    try:
        import grpc  # noqa: F401
        import tritonclient.grpc.service_pb2  # noqa: F401
    except ImportError:
        return None
    return grpc


def _readiness(client: Any, app: Any, grpc: Any) -> dict[str, Any]:
    """Every readiness answer, which must agree: REST's status, gRPC's ready flag."""
    rest = {
        client.get(path).status_code
        for path in ("/readyz", "/v2/health/ready", "/v2/models/cifar10/ready")
    }
    assert len(rest) == 1, rest
    answer: dict[str, Any] = {"REST": rest.pop(), "gRPC": None}
    if grpc is None:
        answer["gRPC"] = answer["REST"] == 200  # not installed: nothing more to check
        return answer
    from cifar10_runtime.serving.grpc.protocol import protocol

    p = protocol()
    with grpc.insecure_channel(f"127.0.0.1:{app.state.grpc.port}") as channel:
        flags = set()
        for name, message in (
            ("ServerReady", p.ServerReadyRequest()),
            ("ModelReady", p.ModelReadyRequest(name="cifar10")),
        ):
            method = p.methods[name]
            call = channel.unary_unary(
                method.path,
                request_serializer=method.request.SerializeToString,
                response_deserializer=method.response.FromString,
            )
            flags.add(call(message, timeout=BOUND).ready)
    assert len(flags) == 1, flags
    answer["gRPC"] = flags.pop()
    return answer


def test_the_ready_line_names_the_warm_up(
    valid_model: Path, spy_sizes: list[int], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="cifar10_runtime.serving.app")
    app = _app(Predictor(valid_model, threads=1), max_batch_size=9)
    with _client(app) as client:
        client.portal.call(app.state.batcher.warmed)
        client.get("/readyz")  # a loop turn after warmed(): the line is logged by then
    lines = [r.getMessage() for r in caplog.records]
    warming = [i for i, line in enumerate(lines) if line.startswith("warming up spy/fp32")]
    ready = [i for i, line in enumerate(lines) if line.startswith("ready: Predictor(")]
    assert len(warming) == 1 and len(ready) == 1 and warming[0] < ready[0], lines
    assert f"warm-up: spy/fp32 at batch {SPY_FROM}-9 ({10 - SPY_FROM} sizes" in lines[ready[0]]


def test_nothing_to_warm_is_ready_at_once_and_says_so(
    valid_model: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="cifar10_runtime.serving.app")
    predictor = Predictor(valid_model, threads=1)
    assert predictor.sizes_to_warm(1000) == {}
    app = _app(predictor)
    with _client(app):
        assert app.state.batcher.running  # no warm-up: ready when the lifespan is
    ready = [r.getMessage() for r in caplog.records if r.getMessage().startswith("ready:")]
    assert len(ready) == 1 and "warm-up: none needed" in ready[0]


# --- the batcher's side ---------------------------------------------------------------------


def _echo(x: np.ndarray) -> np.ndarray:
    return np.repeat(x[:, 0, 0, :1].astype(np.float32), 10, axis=1)


def test_requests_taken_while_warming_wait_for_it_then_run() -> None:
    entered, gate = threading.Event(), threading.Event()

    def warm_up(stopping: Any) -> str:
        entered.set()
        assert gate.wait(BOUND)
        return "warm"

    async def scenario() -> None:
        runs: list[int] = []

        def model(x: np.ndarray) -> np.ndarray:
            runs.append(len(x))
            return _echo(x)

        batcher = MicroBatcher(model, max_batch_size=4)
        await batcher.start(warm_up=warm_up)
        assert batcher.warming and not batcher.running
        x = np.zeros((1, 32, 32, 3), np.uint8)
        x[0, 0, 0, 0] = 7
        task = asyncio.ensure_future(batcher.submit(x))
        await asyncio.sleep(0)  # one loop turn: submit() queued it
        assert batcher.pending == 1 and not task.done() and runs == []
        gate.set()
        assert await batcher.warmed() == "warm"
        probs, size = await task
        assert float(probs[0, 0]) == 7.0 and size == 1 and runs == [1]
        assert batcher.running
        await batcher.close()

    asyncio.run(scenario())


def test_close_during_the_warm_up_tells_it_to_stop_and_a_failed_one_still_serves(
    caplog: pytest.LogCaptureFixture,
) -> None:
    entered, gate = threading.Event(), threading.Event()

    def warm_up(stopping: Any) -> bool:
        entered.set()
        assert gate.wait(BOUND)
        return stopping()

    def broken(stopping: Any) -> None:
        raise RuntimeError("no such shape")

    async def scenario() -> None:
        batcher = MicroBatcher(_echo)
        await batcher.start(warm_up=warm_up)
        assert await asyncio.get_running_loop().run_in_executor(None, entered.wait, BOUND)
        closing = asyncio.ensure_future(batcher.close())
        await asyncio.sleep(0)
        gate.set()
        await closing
        assert batcher.warm_up_result is True  # stopping() said so
        failing = MicroBatcher(_echo)
        await failing.start(warm_up=broken)
        assert isinstance(await failing.warmed(), RuntimeError)
        assert failing.running
        probs, _ = await failing.submit(np.zeros((2, 32, 32, 3), np.uint8))
        assert probs.shape == (2, 10)
        await failing.close()

    asyncio.run(scenario())
    assert any("warm-up failed" in r.getMessage() for r in caplog.records)


# --- real OpenVINO ------------------------------------------------------------------------


@needs_openvino
def test_openvino_is_warmed_for_every_size_before_cifar_serve_says_ready(
    engines_dir: Path, tmp_path: Path
) -> None:
    pytest.importorskip("uvicorn", reason="the serve extra is not installed")
    from serve_process import ServeProcess

    server = ServeProcess(
        engines_dir / "model.onnx",
        tmp_path / "serve.log",
        "--engine",
        "openvino",
        "--precision",
        "int8",
        "--max-batch-size",
        "9",
        "--threads",
        "1",
    )
    try:
        text = server.text()
        assert "warming up openvino/int8 at 9 batch sizes (1-9): not ready until done" in text
        assert text.index("warming up openvino/int8") < text.index("ready: Predictor(")
        ready = next(line for line in text.splitlines() if "ready: Predictor(" in line)
        assert "warm-up: openvino/int8 at batch 1-9 (9 sizes" in ready
        with urllib.request.urlopen(f"{server.url}/v1/metadata", timeout=BOUND) as answer:
            record = json.load(answer)["warm_up"]
        assert record["by_engine"] == {"openvino/int8": list(range(1, 10))}
        assert record["max_batch"] == 9 and record["stopped"] is False
    finally:
        server.stop()
    assert "Traceback" not in server.text(), server.text()[-3000:]
