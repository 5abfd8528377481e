"""TF_CONFIG, read and checked: the cluster of a multi-worker run and this process's task.

TensorFlow's standard TF_CONFIG environment variable tells each worker the cluster and which
task it is, e.g. on worker 1 of 2:

    TF_CONFIG='{"cluster": {"worker": ["host-a:12345", "host-b:12345"]},
                "task": {"type": "worker", "index": 1}}'

Worker 0 (or the one "chief" task, when the cluster lists one) is the chief: it alone writes
the run folder. Every mistake is one line naming the entry and the fix, before TensorFlow
starts.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import Any

from cifar10_runtime.errors import ConfigError

JOBS = ("chief", "worker")  # the task types MultiWorkerMirroredStrategy trains with
# ASCII digits only: str.isdigit() and \d also accept "²" or "٣", which int() then rejects.
_PORT_RE = re.compile(r"[0-9]{1,5}")
_EXAMPLE = (
    '{"cluster": {"worker": ["host-a:12345", "host-b:12345"]}, '
    '"task": {"type": "worker", "index": 0}}'
)


@dataclass(frozen=True)
class Cluster:
    tasks: tuple[tuple[str, str], ...]  # (job, "host:port") in TensorFlow's task order
    job: str
    index: int

    @property
    def workers(self) -> int:
        return len(self.tasks)

    @property
    def is_chief(self) -> bool:
        has_chief = any(job == "chief" for job, _ in self.tasks)
        return self.job == "chief" or (not has_chief and self.index == 0)

    def address(self, job: str, index: int) -> str | None:
        matches = [addr for j, addr in self.tasks if j == job]
        return matches[index] if 0 <= index < len(matches) else None

    def name(self, job: str, index: int) -> str:
        addr = self.address(job, index)
        return f"{job} {index}" + (f" ({addr})" if addr else "")

    def task_ids(self) -> list[tuple[str, int]]:
        """(job, index) of every task, in TensorFlow's task order."""
        ids, seen = [], {}
        for job, _ in self.tasks:
            ids.append((job, seen.get(job, 0)))
            seen[job] = seen.get(job, 0) + 1
        return ids


def read_tf_config(raw: str | None = None) -> Cluster:
    """Parse and check TF_CONFIG (the environment's, unless `raw` is given)."""
    raw = os.environ.get("TF_CONFIG") if raw is None else raw
    cluster, task = _load_spec(raw)
    tasks = _cluster_tasks(cluster)
    job, index = _own_task(cluster, task, tasks)
    return Cluster(tuple(tasks), job, index)


def _load_spec(raw: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """TF_CONFIG's `cluster` and `task` objects, present and of the right kind."""
    if not raw or not raw.strip():
        raise ConfigError(
            "--strategy multi-worker needs the TF_CONFIG environment variable on every worker; "
            f"set it (e.g. TF_CONFIG='{_EXAMPLE}'), or use --local-workers N to run N workers "
            "here. Received: TF_CONFIG unset or empty"
        )
    try:
        spec = json.loads(raw)
    except ValueError as exc:  # JSONDecodeError, and ints past Python's 4300-digit limit
        raise ConfigError(
            f"TF_CONFIG is not valid JSON ({_cut(exc)}); set it to one object like {_EXAMPLE}. "
            f"Received: TF_CONFIG={_cut(raw)}"
        ) from None
    if not isinstance(spec, dict) or not isinstance(spec.get("cluster"), dict):
        raise ConfigError(
            f"TF_CONFIG needs a 'cluster' object; set it like {_EXAMPLE}. "
            f"Received: TF_CONFIG={_cut(raw)}"
        )
    task = spec.get("task")
    if not isinstance(task, dict) or "type" not in task or "index" not in task:
        raise ConfigError(
            f"TF_CONFIG needs 'task': {{'type': ..., 'index': ...}}; add it like {_EXAMPLE}. "
            f"Received: task={_cut(task)}"
        )
    return spec["cluster"], task


def _cluster_tasks(cluster: dict[str, Any]) -> list[tuple[str, str]]:
    """The cluster's (job, "host:port") tasks in TensorFlow's order, each address checked."""
    others = sorted(set(cluster) - set(JOBS))
    if others:
        raise ConfigError(
            "MultiWorkerMirroredStrategy uses only 'worker' (and at most one 'chief') jobs; "
            f"remove the others from TF_CONFIG's cluster. Received: jobs {_cut(others)}"
        )
    tasks: list[tuple[str, str]] = []
    for job in JOBS:
        addrs = cluster.get(job, [])
        if not isinstance(addrs, list) or not all(isinstance(a, str) for a in addrs):
            raise ConfigError(
                f"TF_CONFIG cluster.{job} must be a list of 'host:port' strings; fix it. "
                f"Received: cluster.{job}={_cut(addrs)}"
            )
        for addr in addrs:
            host, _, port = addr.rpartition(":")
            if not host or not _PORT_RE.fullmatch(port) or not 0 < int(port) < 65536:
                raise ConfigError(
                    f"TF_CONFIG cluster.{job} needs 'host:port' entries with a port 1..65535; "
                    f"fix that entry. Received: {_cut(addr)!r}"
                )
            tasks.append((job, addr))
    if len(cluster.get("chief", [])) > 1:
        raise ConfigError(
            "TF_CONFIG cluster.chief may list one task only; make the others workers. "
            f"Received: {len(cluster['chief'])} chief tasks"
        )
    if not tasks:
        raise ConfigError(
            f"TF_CONFIG cluster lists no workers; list them like {_EXAMPLE}. "
            f"Received: cluster={_cut(cluster)}"
        )
    return tasks


def _own_task(
    cluster: dict[str, Any], task: dict[str, Any], tasks: list[tuple[str, str]]
) -> tuple[str, int]:
    """This process's (job, index), checked against the cluster."""
    job, index = task["type"], task["index"]
    if job not in JOBS:
        raise ConfigError(
            "TF_CONFIG task.type must be 'worker' or 'chief'; set one of them. "
            f"Received: task.type={_cut(repr(job))}"
        )
    count = len(cluster.get(job, []))
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < count:
        raise ConfigError(
            f"TF_CONFIG task.index is out of range: cluster.{job} lists {count} task(s), so "
            f"set an index 0..{count - 1}. Received: task.index={_cut(repr(index))}"
        )
    if len(set(addr for _, addr in tasks)) != len(tasks):
        raise ConfigError(
            "TF_CONFIG cluster lists the same host:port twice; give each task its own. "
            f"Received: {_cut([addr for _, addr in tasks])}"
        )
    return job, index


def _cut(value: object, limit: int = 80) -> str:
    """Outside input shown in a one-line error, cut so a huge value cannot flood the log."""
    text = str(value).splitlines()[0] if str(value) else ""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(str(value))} characters)"
