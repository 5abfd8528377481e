"""Multi-worker plumbing: TF_CONFIG, the MultiWorkerMirroredStrategy, lost-peer messages.

Each worker is one `cifar-train --strategy multi-worker` process; TensorFlow's standard
TF_CONFIG environment variable tells it the cluster and which task it is, e.g. on worker 1 of 2:

    TF_CONFIG='{"cluster": {"worker": ["host-a:12345", "host-b:12345"]},
                "task": {"type": "worker", "index": 1}}'

Worker 0 (or the one "chief" task, when the cluster lists one) is the chief: it alone writes
the run folder. Failure detection is bounded by `peer_timeout`: collective ops give up after
that long (CommunicationOptions.timeout_seconds) and so does the coordination service's
heartbeat, start-up registration and shutdown barrier; a killed peer is usually noticed at once
(its connections reset).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cifar10_runtime.errors import ConfigError

from .errors import PeerError

JOBS = ("chief", "worker")  # the task types MultiWorkerMirroredStrategy trains with
# ASCII digits only: str.isdigit() and \d also accept "²" or "٣", which int() then rejects.
_TASK_RE = re.compile(r"/job:(chief|worker)/replica:[0-9]+/task:([0-9]+)")
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


def read_tf_config(raw: str | None = None) -> Cluster:
    """Parse and check TF_CONFIG (the environment's, unless `raw` is given)."""
    raw = os.environ.get("TF_CONFIG") if raw is None else raw
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
    cluster, task = spec["cluster"], spec.get("task")
    if not isinstance(task, dict) or "type" not in task or "index" not in task:
        raise ConfigError(
            f"TF_CONFIG needs 'task': {{'type': ..., 'index': ...}}; add it like {_EXAMPLE}. "
            f"Received: task={_cut(task)}"
        )
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
    return Cluster(tuple(tasks), job, index)


def _cut(value: object, limit: int = 80) -> str:
    """Outside input shown in a one-line error, cut so a huge value cannot flood the log."""
    text = str(value).splitlines()[0] if str(value) else ""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(str(value))} characters)"


def make_strategy(cluster: Cluster, peer_timeout: int) -> Any:
    """MultiWorkerMirroredStrategy with every wait bounded by `peer_timeout` seconds."""
    import tensorflow as tf
    from tensorflow.compiler.xla.tsl.protobuf import coordination_config_pb2
    from tensorflow.python.eager import context

    ms = peer_timeout * 1000
    jobs = [j for j in JOBS if any(job == j for job, _ in cluster.tasks)]
    # The strategy configures this service itself with TensorFlow's defaults (which wait for
    # an unreachable peer forever at start-up); configured first, ours is used instead.
    context.context().configure_coordination_service(
        service_type="standalone",
        service_leader=f"/job:{jobs[0]}/replica:0/task:0",
        heartbeat_timeout_in_ms=ms,
        cluster_register_timeout_in_ms=ms,
        shutdown_barrier_timeout_in_ms=2 * ms,  # the chief's final test pass runs before it
        coordinated_jobs=[
            coordination_config_pb2.CoordinatedJob(
                name=j, num_tasks=sum(job == j for job, _ in cluster.tasks)
            )
            for j in jobs
        ],
    )
    options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=float(peer_timeout))
    try:
        return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    except (tf.errors.OpError, RuntimeError, ValueError) as exc:
        raise peer_error(exc, cluster, starting=True) from None


def peer_error(exc: BaseException, cluster: Cluster, *, starting: bool = False) -> PeerError:
    """One line naming the peer a TensorFlow error is about (the first one not ourselves)."""
    text = str(getattr(exc, "message", None) or exc)
    peers = [
        (job, int(i))
        for job, i in _TASK_RE.findall(text)
        if (job, int(i)) != (cluster.job, cluster.index)
    ]
    reason = _reason(text)
    if starting:
        missing = ", ".join(cluster.name(j, i) for j, i in peers) or "some peers"
        return PeerError(
            f"could not form the cluster: {missing} not reachable ({reason}); start every "
            "worker with the same TF_CONFIG (each with its own task.index), or raise "
            f"--peer-timeout. Received: {reason}"
        )
    if not peers and cluster.workers == 2:  # a timeout names no task; with two, it is the other
        peers = [t for t in _task_ids(cluster) if t != (cluster.job, cluster.index)]
    who = f"lost peer {cluster.name(*peers[0])}" if peers else "lost contact with the cluster"
    return PeerError(
        f"{who} ({reason}); restart every worker with --resume --output-dir RUN_FOLDER "
        f"to continue from the last finished epoch. Received: {reason}"
    )


def _reason(text: str) -> str:
    patterns = ("Connection reset by peer", "Socket closed", "Connection refused", "heartbeat")
    for pattern in (*patterns, "timed out", "deadline exceeded"):
        if pattern.lower() in text.lower():
            return pattern.lower() if pattern != "heartbeat" else "no heartbeat"
    first = next((line.strip() for line in text.splitlines() if line.strip()), "no detail")
    return first[:160]


def hard_exit(code: int) -> None:
    """Leave now: TensorFlow's shutdown would wait on the lost peer for the barrier timeout."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


@contextlib.contextmanager
def worker_dir(run_dir: Path, is_chief: bool) -> Iterator[Path]:
    """Where this worker writes its per-epoch saves: the run folder for the chief, else a
    temporary folder removed afterwards (every worker saves, as tf.distribute expects, but
    only one run folder may exist)."""
    if is_chief:
        yield run_dir
        return
    tmp = Path(tempfile.mkdtemp(prefix="cifar-train-worker-"))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class StartupWatchdog:
    """Ends this worker with one line if the cluster has not formed within `seconds`.

    TensorFlow waits for a peer that never answers (a wrong host:port, a worker never
    started) inside its context start-up, holding Python's GIL and ignoring SIGTERM, so neither
    a thread nor a signal handler of ours could act. The watchdog is therefore a tiny separate
    process: it prints the line and SIGKILLs us (exit 137) unless disarmed in time; it exits by
    itself when we do (its stdin, our pipe, closes).
    """

    _CODE = (
        "import os, select, signal, sys\n"
        "ready, _, _ = select.select([sys.stdin], [], [], float(sys.argv[2]))\n"
        "if not ready:\n"
        "    print(sys.argv[3], file=sys.stderr, flush=True)\n"
        "    os.kill(int(sys.argv[1]), signal.SIGKILL)\n"
    )

    def __init__(self, cluster: Cluster, seconds: int):
        c = cluster
        others = [c.name(job, i) for job, i in _task_ids(c) if (job, i) != (c.job, c.index)]
        message = (
            f"error: could not form the cluster within {seconds} s: no answer from "
            f"{', '.join(others) or 'the other workers'}; start every worker with the same "
            "TF_CONFIG (each with its own task.index), check that each host:port is reachable, "
            f"or raise --peer-timeout. Received: --peer-timeout={seconds}"
        )
        args = [sys.executable, "-c", self._CODE, str(os.getpid()), str(seconds), message]
        self._proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)

    def disarm(self) -> None:
        if self._proc.stdin and not self._proc.stdin.closed:
            self._proc.stdin.close()  # EOF: the watchdog exits
            self._proc.wait()


def _task_ids(cluster: Cluster) -> list[tuple[str, int]]:
    ids, seen = [], {}
    for job, _ in cluster.tasks:
        ids.append((job, seen.get(job, 0)))
        seen[job] = seen.get(job, 0) + 1
    return ids
