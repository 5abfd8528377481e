"""The server's batch size measured on the machine (engines.batch_sizes): the ladder, the
choice at the knee, and the per-machine cache. Fake runs on a virtual clock: exact, instant,
no timing asserted."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cifar10_runtime import Predictor, limits
from cifar10_runtime.engines import batch_sizes, load, timing_cache
from cifar10_runtime.engines.plan import BatchPlan
from cifar10_runtime.engines.runners import Runner


def test_the_ladder_doubles_up_to_the_ceiling() -> None:
    assert batch_sizes.ladder(32) == [1, 2, 4, 8, 16, 32]
    assert batch_sizes.ladder(12) == [1, 2, 4, 8, 12]
    assert batch_sizes.ladder(1) == [1]
    with pytest.raises(ValueError, match="Received: 0"):
        batch_sizes.ladder(0)


@pytest.mark.parametrize(
    ("speeds", "chosen"),
    [
        # a cache-bound CPU: past 8 a bigger run serves fewer images/s
        ({1: 4087, 2: 4780, 4: 4959, 8: 4866, 16: 3752, 32: 2917}, 8),
        # still growing at the ceiling: take it
        ({1: 1540, 2: 1800, 4: 2111, 8: 2250, 16: 2400, 32: 2480}, 32),
        # flat within noise: the largest of the equals
        ({1: 1000, 2: 990, 4: 1001}, 4),
        # int8 on a quiet AVX-512 EPYC: +-10% of noise around a flat curve is still flat
        ({1: 11113, 2: 13189, 4: 11385, 8: 12441, 16: 11707, 32: 11958}, 32),
        # batching only costs: one at a time
        ({1: 1000, 2: 800, 4: 600}, 1),
    ],
)
def test_the_largest_size_within_the_knee_of_the_best_is_chosen(
    speeds: dict[int, float], chosen: int
) -> None:
    assert batch_sizes.choose(speeds) == chosen


class _Clock:
    """Virtual time, and the CPU time other processes used meanwhile (load.others_cpu_s)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.used = 0.0

    def __call__(self) -> float:
        return self.now

    def others(self) -> float:
        return self.used


def _plan(tmp_path: Path) -> BatchPlan:
    model = tmp_path / "m.onnx"
    model.write_bytes(b"a model file: only its digest is read")
    runner = Runner("onnxruntime", "fp32", "cpu", lambda x: x, source=str(model))
    return BatchPlan([(1, runner)])


def test_tune_times_every_size_chooses_and_keeps_the_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(timing_cache.ENV, str(tmp_path / "cache"))
    clock, seen = _Clock(), []
    # 1 ms a run plus 0.1 ms an image up to 8 images, 0.5 ms an image beyond (a cache cliff)
    cost = {b: 1e-3 + 1e-4 * min(b, 8) + 5e-4 * max(0, b - 8) for b in (1, 2, 4, 8, 16, 32)}

    def run(x: np.ndarray) -> None:
        seen.append(len(x))
        clock.now += cost[len(x)]

    plan = _plan(tmp_path)
    first = batch_sizes.tune(run, plan, 32, threads=1, clock=clock, others=clock.others, cpus=2)
    assert first.size == 8 and first.source == "timed at start"
    assert sorted(set(seen)) == [1, 2, 4, 8, 16, 32]
    assert first.speeds[8] == pytest.approx(8 / cost[8])
    assert "max 8 images (images/s at batch 1: " in first.describe()
    seen.clear()
    again = batch_sizes.tune(run, plan, 32, threads=1, clock=clock, others=clock.others, cpus=2)
    assert seen == []  # from the cache: nothing ran
    assert again.size == 8 and again.source.startswith("timings from ")
    assert again.speeds == pytest.approx(first.speeds)
    # another key: timed again
    other = batch_sizes.tune(run, plan, 32, threads=2, clock=clock, others=clock.others, cpus=2)
    assert other.source == "timed at start"


def test_a_ladder_timed_while_others_used_the_cores_is_used_but_not_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Other processes used over BUSY_SHARE of the cores during the timing: this start uses
    the figures, the next one times again."""
    monkeypatch.setenv(timing_cache.ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(load, "BUSY_SHARE", 0.1)
    clock, seen = _Clock(), []

    def run(x: np.ndarray) -> None:
        seen.append(len(x))
        clock.now += 1e-3 * len(x)
        clock.used += 0.5e-3 * len(x)  # a quarter of 2 cores' time went to others

    plan = _plan(tmp_path)
    busy = batch_sizes.tune(run, plan, 4, threads=1, clock=clock, others=clock.others, cpus=2)
    assert busy.source == "timed at start, on a busy machine: not kept"
    assert busy.speeds and busy.size in (1, 2, 4)
    seen.clear()
    again = batch_sizes.tune(run, plan, 4, threads=1, clock=clock, others=clock.others, cpus=2)
    assert seen and again.source.endswith("not kept")  # timed again: nothing was cached


def test_a_damaged_cache_entry_is_timed_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(timing_cache.ENV, str(tmp_path / "cache"))
    clock = _Clock()

    def run(x: np.ndarray) -> None:
        clock.now += 1e-3 * len(x)

    plan = _plan(tmp_path)
    batch_sizes.tune(run, plan, 4, threads=1, clock=clock, others=clock.others, cpus=2)
    key = timing_cache.machine_key(
        [plan.steps[0][1]], 1, {"ladder": [1, 2, 4], "plan": [[1, "onnxruntime/fp32"]]}
    )
    # the key is the one tune uses: an entry written under it is what the next start reads
    timing_cache.remember(key, {"ladder": {"1": 9.0, "2": 5.0, "4": 5.0}})
    assert (
        batch_sizes.tune(run, plan, 4, threads=1, clock=clock, others=clock.others, cpus=2).size
        == 1
    )
    timing_cache.remember(key, {"ladder": {"1": "-1", "2": 5.0, "4": 5.0}})
    retimed = batch_sizes.tune(run, plan, 4, threads=1, clock=clock, others=clock.others, cpus=2)
    assert retimed.source == "timed at start"


def test_a_ceiling_of_one_needs_no_timing(tmp_path: Path) -> None:
    def run(x: np.ndarray) -> None:
        raise AssertionError("nothing to time")

    assert batch_sizes.tune(run, _plan(tmp_path), 1, threads=1).size == 1


def test_a_real_predictor_chooses_a_size_in_the_ladder(engines_dir: Path) -> None:
    predictor = Predictor(engines_dir / "model.onnx", threads=1)
    tuning = predictor.tune_batch_size(limits.MAX_BATCH_SIZE)
    assert tuning.size in batch_sizes.ladder(limits.MAX_BATCH_SIZE)
    assert sorted(tuning.speeds) == batch_sizes.ladder(limits.MAX_BATCH_SIZE)
    assert all(v > 0 for v in tuning.speeds.values())
    assert tuning.to_dict()["max_batch_size"] == tuning.size
