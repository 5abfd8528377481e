"""Whether a timing may be kept (cifar10_runtime.engines.load): the CPU time other processes
used on this process's CPUs, read from /proc/stat minus this process's own; a Stopwatch on a
virtual clock; and real contention from busy processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cifar10_runtime.engines import load

STAT = """cpu  300 10 30 5000 7 1 2 4 9 0
cpu0 100 5 10 2500 3 1 1 2 9 0
cpu1 200 5 20 2500 4 0 1 2 0 0
cpu12 1000 0 0 0 0 0 0 0 0 0
intr 1138558 0 0 0
ctxt 123
"""


def test_work_on_our_cpus_is_read_from_proc_stat() -> None:
    # user + nice + system + irq + softirq + steal; idle, iowait and guest are not added
    assert load.cpus_work_s(STAT, {0}, 0.01) == pytest.approx((100 + 5 + 10 + 1 + 1 + 2) / 100)
    assert load.cpus_work_s(STAT, {0, 1}, 0.01) == pytest.approx((119 + 228) / 100)
    assert load.cpus_work_s(STAT, {12}, 0.01) == pytest.approx(10.0)  # cpu12 is not cpu1
    assert load.cpus_work_s(STAT, {5}, 0.01) == 0.0  # a CPU the file does not list
    assert load.cpus_work_s("", {0}, 0.01) == 0.0


class _Clock:
    def __init__(self) -> None:
        self.now, self.used = 0.0, 0.0

    def __call__(self) -> float:
        return self.now

    def others(self) -> float:
        return self.used


@pytest.mark.parametrize(
    ("wall", "used", "cap", "share", "kept"),
    [
        (1.0, 0.0, 2.0, 0.0, True),  # nobody else ran
        (1.0, 0.2, 2.0, 0.1, True),  # a tenth of 2 cores: at the line, kept
        (1.0, 0.5, 2.0, 0.25, False),  # one busy loop's worth on 2 cores
        (3.0, 0.0, 2.0, 0.0, False),  # past the cap
        (1.0, -5.0, 2.0, 0.0, True),  # a counter that went back (a thread ended): no one
    ],
)
def test_stopwatch_keeps_a_timing_unless_others_used_the_cores(
    monkeypatch: pytest.MonkeyPatch, wall: float, used: float, cap: float, share: float, kept: bool
) -> None:
    monkeypatch.setattr(load, "BUSY_SHARE", 0.1)
    clock = _Clock()
    watch = load.Stopwatch(clock, clock.others, cpus=2)
    clock.now += wall
    clock.used += used
    assert watch.others_share() == pytest.approx(share)
    assert watch.cacheable(cap) is kept


@pytest.mark.skipif(not Path("/proc/stat").is_file(), reason="needs Linux's /proc")
def test_this_process_work_is_not_counted_as_others() -> None:
    """0.3 s of this thread's own CPU: the running total of others' CPU does not grow by it
    (it can grow by whatever else runs meanwhile, so only the upper side of ours is checked:
    the total of all work grew by at least our part, and others' by that much less)."""
    cpus = os.sched_getaffinity(0)
    tick = 1.0 / os.sysconf("SC_CLK_TCK")

    def all_work() -> float:
        return load.cpus_work_s(Path("/proc/stat").read_text(), cpus, tick)

    work0, others0, own0 = all_work(), load.others_cpu_s(), load.schedstat_s(0)
    started = time.thread_time()
    while time.thread_time() - started < 0.3:  # this thread's CPU time, not a clock
        pass
    work, others, own = (
        all_work() - work0,
        load.others_cpu_s() - others0,
        load.schedstat_s(0) - own0,
    )
    assert own >= 0.29
    # Two independent counters agree: /proc/stat's work on our CPUs (10 ms ticks) took in our
    # spin, which schedstat (nanoseconds) measured; a wrong field or unit breaks this.
    assert work >= own - 0.05
    assert others == pytest.approx(work - own, abs=0.1)  # 10 ms ticks on a few CPUs


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux's /proc")
def test_other_processes_on_the_core_are_seen(monkeypatch: pytest.MonkeyPatch) -> None:
    """Three busy processes and this one on the same single core: they used most of it while
    this thread ran 0.2 s of its own CPU, and the Stopwatch calls the timing busy."""
    monkeypatch.setattr(load, "BUSY_SHARE", 0.1)
    core = min(os.sched_getaffinity(0))
    spin = (
        f"import os, sys, time; os.sched_setaffinity(0, {{{core}}}); print(flush=True)\n"
        "end = time.monotonic() + 30\nwhile time.monotonic() < end: pass"
    )
    others = [
        subprocess.Popen([sys.executable, "-c", spin], stdout=subprocess.PIPE) for _ in range(3)
    ]
    mine = os.sched_getaffinity(0)
    try:
        for proc in others:  # each is on the core and spinning once it has said so
            assert proc.stdout is not None and proc.stdout.readline() == b"\n"
        os.sched_setaffinity(0, {core})
        watch = load.Stopwatch()
        started = time.thread_time()
        while time.thread_time() - started < 0.2:
            pass
        share, kept = watch.others_share(), watch.cacheable(60.0)
    finally:
        os.sched_setaffinity(0, mine)
        for proc in others:
            proc.kill()
            proc.wait()
    # 4 busy processes on one core: the 3 others had about three quarters of it.
    assert share > 0.5 and not kept
