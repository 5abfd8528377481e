"""The load-time timings kept per machine (cifar10_runtime.route_cache)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from cifar10_runtime import Predictor, route_cache
from cifar10_runtime.golden import Golden


@pytest.fixture()
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(route_cache.ENV, str(tmp_path / "cache"))
    return tmp_path / "cache" / route_cache.FILE


def _forbid_timing(monkeypatch: pytest.MonkeyPatch) -> None:
    """From here on the test fails if a load times its candidates (a cache hit must not)."""

    def refuse(*_args, **_kwargs):
        raise AssertionError("the candidates were timed although their timings were cached")

    monkeypatch.setattr(route_cache, "time_runners", refuse)


def _load(engines_dir: Path, threads: int = 1) -> Predictor:
    return Predictor(engines_dir / "model.onnx", threads=threads, engine="onnxruntime")


def test_the_first_load_times_and_keeps_what_the_next_load_uses(
    engines_dir: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _load(engines_dir)
    assert "timed at load" in first.engine_choice["why"]
    entries = json.loads(cache.read_text())
    assert len(entries) == 1
    (entry,) = entries.values()
    assert set(entry["speeds"]) == {"onnxruntime/fp32", "onnxruntime/int8"}
    _forbid_timing(monkeypatch)
    second = _load(engines_dir)
    assert second.engine == first.engine
    assert str(cache) in second.engine_choice["why"]
    rows = {r["candidate"]: r for r in second.engine_choice["candidates"]}
    assert all("images_per_s" in rows[name] for name in entry["speeds"])


def test_another_thread_count_is_another_key(engines_dir: Path, cache: Path) -> None:
    _load(engines_dir, threads=1)
    _load(engines_dir, threads=2)
    assert len(json.loads(cache.read_text())) == 2


def test_the_golden_check_still_runs_on_a_cache_hit(
    engines_dir: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _load(engines_dir)
    _forbid_timing(monkeypatch)
    calls = []
    real = Golden.max_diff
    monkeypatch.setattr(Golden, "max_diff", lambda g, out: calls.append(1) or real(g, out))
    _load(engines_dir)
    assert len(calls) >= 2  # float32 and the int8 twin replayed the golden set


def test_off_never_writes_and_times_every_load(
    engines_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(route_cache.ENV, "off")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))
    assert route_cache.cache_file() is None
    assert "timed at load" in _load(engines_dir).engine_choice["why"]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "damage",
    ["not json", "[]", '{"x": 1}', "KEY:speeds-missing", "KEY:negative", "KEY:too-old"],
)
def test_a_damaged_or_stale_entry_is_timed_again_and_replaced(
    engines_dir: Path, cache: Path, damage: str
) -> None:
    _load(engines_dir)
    entries = json.loads(cache.read_text())
    (key,) = entries
    if damage == "KEY:speeds-missing":
        entries[key].pop("speeds")
    elif damage == "KEY:negative":
        entries[key]["speeds"]["onnxruntime/int8"]["1"] = -1
    elif damage == "KEY:too-old":
        entries[key]["measured_at"] = time.time() - route_cache.MAX_AGE_S - 60
    text = json.dumps(entries) if damage.startswith("KEY:") else damage
    cache.write_text(text)
    assert "timed at load" in _load(engines_dir).engine_choice["why"]
    fresh = json.loads(cache.read_text())
    assert key in fresh and route_cache._valid(fresh[key], []) is not None


def test_a_cache_that_cannot_be_written_is_passed_over(
    engines_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv(route_cache.ENV, str(blocker / "cache"))
    predictor = _load(engines_dir)
    assert "timed at load" in predictor.engine_choice["why"]
    assert predictor.predict_array(np.zeros((2, 32, 32, 3), np.uint8)).shape == (2, 10)


def test_entries_are_capped_newest_kept(cache: Path) -> None:
    entries = {f"k{i}": {"measured_at": float(i), "speeds": {}} for i in range(100)}
    route_cache._write(cache, entries)
    kept = json.loads(cache.read_text())
    assert len(kept) == route_cache.MAX_ENTRIES and "k99" in kept and "k0" not in kept
