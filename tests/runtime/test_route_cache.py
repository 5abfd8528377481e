"""The load-time timings kept per machine (cifar10_runtime.engines.timing_cache).

Most tests drive `plan_speeds` with two stand-in runners over files of their own, so they
do not depend on which candidates an export allowed on this CPU; the last ones load the
exported int8 fixture through `Predictor`, where it has two candidates.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from cifar10_runtime import Predictor
from cifar10_runtime.engines import load, timing_cache
from cifar10_runtime.engines.golden import Golden
from cifar10_runtime.engines.runners import Runner

IMAGES = np.zeros((4, 32, 32, 3), np.uint8)


@pytest.fixture()
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(timing_cache.ENV, str(tmp_path / "cache"))
    return tmp_path / "cache" / timing_cache.FILE


def _runners(folder: Path, content: bytes = b"model") -> list[Runner]:
    def run(x: np.ndarray) -> np.ndarray:
        return np.zeros((len(x), 10), np.float32)

    runners = []
    for engine, precision in (("onnxruntime", "fp32"), ("onnxruntime", "int8")):
        path = folder / f"{precision}.onnx"
        path.write_bytes(content + precision.encode())
        runners.append(Runner(engine, precision, "stand-in 1.0", run, source=str(path)))
    return runners


def _forbid_timing(monkeypatch: pytest.MonkeyPatch) -> None:
    """From here on the test fails if anything times the runners (a cache hit must not)."""

    def refuse(*_args, **_kwargs):
        raise AssertionError("the candidates were timed although their timings were cached")

    monkeypatch.setattr(timing_cache, "time_runners", refuse)


def test_the_first_load_times_and_keeps_what_the_next_load_uses(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runners = _runners(tmp_path)
    speeds, note = timing_cache.plan_speeds(runners, IMAGES, 1)
    assert note == "timed at load"
    (entry,) = json.loads(cache.read_text()).values()
    assert set(entry["speeds"]) == {"onnxruntime/fp32", "onnxruntime/int8"}
    _forbid_timing(monkeypatch)
    again, note = timing_cache.plan_speeds(runners, IMAGES, 1)
    assert again == speeds
    assert str(cache) in note and f"{timing_cache.ENV}=off" in note


def test_a_timing_on_a_busy_machine_is_not_kept(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Other processes used more than BUSY_SHARE of the CPUs during the timing: this load
    uses the figures, the next one times again."""
    monkeypatch.setattr(load, "BUSY_SHARE", 0.1)
    used = iter([0.0, 1e6])  # before, after: far more CPU than the timing's wall time
    monkeypatch.setattr(load, "others_cpu_s", lambda: next(used))
    speeds, note = timing_cache.plan_speeds(_runners(tmp_path), IMAGES, 1)
    assert note == "timed at load, on a busy machine: not kept"
    assert set(speeds) == {"onnxruntime/fp32", "onnxruntime/int8"}
    assert not cache.exists()


@pytest.mark.parametrize("change", ["threads", "file content"])
def test_another_thread_count_or_file_is_another_key(
    tmp_path: Path, cache: Path, change: str
) -> None:
    timing_cache.plan_speeds(_runners(tmp_path), IMAGES, 1)
    if change == "threads":
        timing_cache.plan_speeds(_runners(tmp_path), IMAGES, 2)
    else:
        timing_cache.plan_speeds(_runners(tmp_path, b"re-exported"), IMAGES, 1)
    assert len(json.loads(cache.read_text())) == 2


def test_off_never_writes_and_times_every_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv(timing_cache.ENV, "off")
    monkeypatch.setenv("XDG_CACHE_HOME", str(home))
    monkeypatch.setenv("HOME", str(home))
    assert timing_cache.cache_file() is None
    for _ in range(2):
        assert timing_cache.plan_speeds(_runners(tmp_path), IMAGES, 1)[1] == "timed at load"
    assert list(home.iterdir()) == []


def test_the_default_place_is_the_users_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(timing_cache.ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", "/somewhere")
    assert timing_cache.cache_file() == Path("/somewhere/cifar10-runtime/routes.json")


@pytest.mark.parametrize(
    "damage", ["not json", "[]", '{"x": 1}', "no speeds", "negative", "too old", "one missing"]
)
def test_a_damaged_or_stale_entry_is_timed_again_and_replaced(
    tmp_path: Path, cache: Path, damage: str
) -> None:
    runners = _runners(tmp_path)
    timing_cache.plan_speeds(runners, IMAGES, 1)
    entries = json.loads(cache.read_text())
    (key,) = entries
    entry = entries[key]
    if damage == "no speeds":
        entry.pop("speeds")
    elif damage == "negative":
        entry["speeds"]["onnxruntime/int8"]["1"] = -1
    elif damage == "too old":
        entry["measured_at"] = time.time() - timing_cache.MAX_AGE_S - 60
    elif damage == "one missing":
        entry["speeds"].pop("onnxruntime/fp32")
    cache.write_text(damage if damage in ("not json", "[]", '{"x": 1}') else json.dumps(entries))
    assert timing_cache.plan_speeds(runners, IMAGES, 1)[1] == "timed at load"
    fresh = json.loads(cache.read_text())
    assert timing_cache._valid(fresh[key], runners) is not None


def test_a_cache_that_cannot_be_written_is_passed_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv(timing_cache.ENV, str(blocker / "cache"))
    for _ in range(2):
        assert timing_cache.plan_speeds(_runners(tmp_path), IMAGES, 1)[1] == "timed at load"


def test_a_runner_without_a_source_file_is_never_cached(tmp_path: Path, cache: Path) -> None:
    runners = _runners(tmp_path)
    runners[1].source = None
    timing_cache.plan_speeds(runners, IMAGES, 1)
    assert not cache.exists()


def test_entries_are_capped_newest_kept(cache: Path) -> None:
    entries = {f"k{i}": {"measured_at": float(i), "speeds": {}} for i in range(100)}
    timing_cache._write(cache, entries)
    kept = json.loads(cache.read_text())
    assert len(kept) == timing_cache.MAX_ENTRIES and "k99" in kept and "k0" not in kept


# --- through Predictor, on the exported model with its int8 twin ------------------------
def _two_candidates(engines_dir: Path) -> Predictor:
    predictor = Predictor(engines_dir / "model.onnx", threads=1, engine="onnxruntime")
    passed = [r for r in predictor.engine_choice["candidates"] if r["status"].startswith("pass")]
    if len(passed) < 2:
        pytest.skip(f"the export allowed one candidate on this CPU, nothing to time: {passed}")
    return predictor


def test_a_second_predictor_uses_the_cached_timings_and_still_checks_the_golden_set(
    engines_dir: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Kept however long the timing took: on a loaded machine it can run into its cap, and
    # such timings are (rightly) not kept, which is not what this test is about.
    monkeypatch.setattr(timing_cache, "TIMING_CAP_S", float("inf"))
    first = _two_candidates(engines_dir)
    assert "timed at load" in first.engine_choice["why"]
    _forbid_timing(monkeypatch)
    checks = []
    real = Golden.max_diff
    monkeypatch.setattr(Golden, "max_diff", lambda g, out: checks.append(1) or real(g, out))
    second = Predictor(engines_dir / "model.onnx", threads=1, engine="onnxruntime")
    assert second.engine == first.engine
    assert str(cache) in second.engine_choice["why"]
    # the lasting reason (the model card's) names neither the cache nor the time
    for predictor in (first, second):
        basis = predictor.engine_choice["basis"]
        assert basis.startswith("fastest per batch range") and "tim" not in basis, basis
    assert len(checks) >= 2  # float32 and the int8 twin replayed the golden set
    rows = {r["candidate"]: r for r in second.engine_choice["candidates"]}
    assert "images_per_s" in rows["onnxruntime/int8"]
