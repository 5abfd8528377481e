"""Multi-worker plumbing: the MultiWorkerMirroredStrategy, lost-peer messages, the watchdog.

Each worker is one `cifar-train --strategy multi-worker` process, told the cluster and which
task it is by TF_CONFIG (cifar10_trainer.tf_config). Failure detection is bounded by
`peer_timeout`: collective ops give up after that long (CommunicationOptions.timeout_seconds)
and so does the coordination service's heartbeat, start-up registration and shutdown barrier;
a killed peer is usually noticed at once (its connections reset).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import PeerError
from .tf_config import JOBS, Cluster

# ASCII digits only: \d also accepts "²" or "٣", which int() then rejects.
_TASK_RE = re.compile(r"/job:(chief|worker)/replica:[0-9]+/task:([0-9]+)")


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
        peers = [t for t in cluster.task_ids() if t != (cluster.job, cluster.index)]
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
        others = [c.name(job, i) for job, i in c.task_ids() if (job, i) != (c.job, c.index)]
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
