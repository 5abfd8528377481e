"""The CPU's facts have one home (cifar10_runtime.engines.cpu): usable cores honour the
affinity mask, and every stage reads /proc/cpuinfo and counts cores through it."""

from __future__ import annotations

import os

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
