"""The CPU's facts have one home (cifar10_runtime.engines.cpu): usable cores honour the
affinity mask, and every stage reads /proc/cpuinfo and counts cores through it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cifar10_runtime.engines import cpu


def test_usable_cores_honour_the_affinity_mask(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 3, 5}, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    assert cpu.usable_cpus() == 3


def test_without_an_affinity_call_the_cores_are_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 6)
    assert cpu.usable_cpus() == 6
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert cpu.usable_cpus() == 1


def test_the_benchmarks_machine_record_counts_usable_cores_the_same_way(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from benchmarks import machine

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {1}, raising=False)
    assert machine.cpu_info()["usable_cpus"] == 1


def test_the_trainer_reads_cpu_flags_through_the_one_reader(tmp_path: Path) -> None:
    from cifar10_trainer import precision

    assert precision.cpu_flags is cpu.cpu_flags
    info = tmp_path / "cpuinfo"
    info.write_text("model name\t: Test CPU\nflags\t\t: fpu avx512_bf16\n")
    assert cpu.cpu_flags(info) == frozenset({"fpu", "avx512_bf16"})
    assert cpu.read_cpuinfo(info) == ("Test CPU", {"fpu", "avx512_bf16"})
    assert cpu.cpu_flags(tmp_path / "missing") is None
