"""Whether a timing may be kept: how much of this process's CPUs other processes used meanwhile.

A timing is only worth caching (engines.timing_cache) when it measured our engines, not
the rest of the machine. The signal is the CPU time that everything else ran on the CPUs
this process may use (Linux's /proc/stat, per CPU, steal included: a VM's neighbours count
too) minus this process's own (/proc/self/task/*/schedstat).

An earlier signal, this process's own waits for a CPU (schedstat's run-queue time), read
as "busy" on an idle 2-core EPYC: two engines' thread pools timed side by side (onnxruntime
and OpenVINO, 2 threads each) wait for each other, 1.2-1.3x the wall time summed over the
threads, with nothing else running. Other processes' CPU time is blind to that.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from cifar10_runtime.engines.cpu import usable_cpus

# Others used more than this share of our CPUs' time during a timing: it measured them as
# much as the engines. On a 2-core AMD EPYC the engine timing read 0.004 idle, and 0.24-0.26
# beside one busy loop (which then got about half a core: our threads held the rest).
BUSY_SHARE = 0.1
# /proc/stat's per-CPU fields that are work: user, nice, system, irq, softirq, steal (guest
# time is already inside user; idle and iowait are not work).
_WORK_FIELDS = (0, 1, 2, 5, 6, 7)


def schedstat_s(field: int, pid: int | str = "self") -> float:
    """One field of Linux's /proc/PID/task/TID/schedstat summed over the threads of process
    `pid`, in seconds (0: time on a CPU, 1: time runnable but waiting for one; nanoseconds in
    the file, finer than /proc/PID/stat's 10 ms ticks); 0.0 where it cannot be read."""
    total = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0.0
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat", encoding="ascii") as handle:
                total += int(handle.read().split()[field])
        except (OSError, ValueError, IndexError):
            continue  # a thread that ended between the listing and the read
    return total / 1e9


def cpus_work_s(stat_text: str, cpus: set[int], tick_s: float) -> float:
    """Seconds of work done on `cpus` since boot, read from /proc/stat's text."""
    total = 0
    for line in stat_text.splitlines():
        name, _, rest = line.partition(" ")
        if not name.startswith("cpu") or not name[3:].isdigit() or int(name[3:]) not in cpus:
            continue
        fields = rest.split()
        total += sum(int(fields[i]) for i in _WORK_FIELDS if i < len(fields))
    return total * tick_s


def others_cpu_s() -> float:
    """CPU seconds that everything but this process has run on this process's CPUs, since
    boot (a running total: only differences mean anything); 0.0 where /proc cannot be read
    (another OS: no timing is then ever called busy)."""
    try:
        with open("/proc/stat", encoding="ascii") as handle:
            text = handle.read()
        cpus = os.sched_getaffinity(0)
        tick_s = 1.0 / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, AttributeError):
        return 0.0
    return cpus_work_s(text, cpus, tick_s) - schedstat_s(0)


class Stopwatch:
    """Wall time, and the CPU time others used meanwhile, from its creation: whether a timing
    may be cached."""

    def __init__(
        self,
        clock: Callable[[], float] = time.perf_counter,
        others: Callable[[], float] | None = None,  # None: others_cpu_s
        cpus: int | None = None,  # None: cpu.usable_cpus()
    ) -> None:
        self.clock, self.others = clock, others or others_cpu_s
        self.cpus = cpus or usable_cpus()
        self.started, self.others_before = clock(), self.others()

    def others_share(self) -> float:
        """The share of our CPUs' time since the start that other processes used (a thread
        of ours that ended took its CPU time along: the figure only ever errs high)."""
        wall = self.clock() - self.started
        used = max(0.0, self.others() - self.others_before)
        return used / max(wall * self.cpus, 1e-9)

    def cacheable(self, cap: float) -> bool:
        """Done within `cap` seconds, and others used at most BUSY_SHARE of our CPUs."""
        return self.clock() - self.started < cap and self.others_share() <= BUSY_SHARE
