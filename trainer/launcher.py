"""`cifar-train --local-workers N ...`: N multi-worker processes on this machine, on 127.0.0.1.

This is also the executable documentation of a real launch. On N hosts, start on host I:

    TF_CONFIG='{"cluster": {"worker": ["host0:2222", "host1:2222"]},
                "task": {"type": "worker", "index": I}}' \\
    cifar-train --strategy multi-worker --output-dir RUN_FOLDER [the same flags everywhere]

exactly what `launch` does here with free loopback ports: one TF_CONFIG per process, the same
arguments for all. Worker 0 is the chief: its output is streamed, the others' is kept in a
temporary log whose last line is shown if they fail. When one worker fails the rest are stopped;
the exit code is the worst of those that ended by themselves (0 when all succeeded).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HOST = "127.0.0.1"
STOP_GRACE_S = 10.0  # SIGTERM first; SIGKILL for a worker still there after this


def free_ports(n: int) -> list[int]:
    """N distinct ports the kernel says are free (all held open together, then released)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((HOST, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def tf_config(ports: list[int], index: int) -> str:
    workers = [f"{HOST}:{p}" for p in ports]
    return json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})


def _last_line(log: Path) -> str:
    lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    return lines[-1] if lines else "(no output)"


def _stop(procs: list[subprocess.Popen]) -> set[int]:
    """Stop every worker still running; the indexes of those this stopped."""
    stopped = {i for i, p in enumerate(procs) if p.poll() is None}
    for i in stopped:
        procs[i].send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    for i in stopped:
        try:
            procs[i].wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            procs[i].kill()
            procs[i].wait()
    return stopped


def _code(rc: int) -> int:
    return 128 - rc if rc < 0 else rc  # killed by signal S: 128+S, as a shell reports it


def launch(n: int, args: list[str]) -> int:
    """Run `cifar-train ARGS` as workers 0..n-1 of one cluster; the worst exit code."""
    ports = free_ports(n)
    cmd = [sys.executable, "-m", "cifar10_trainer.cli", *args]
    with tempfile.TemporaryDirectory(prefix="cifar-train-workers-") as tmp:
        logs = [Path(tmp) / f"worker{i}.log" for i in range(n)]
        procs: list[subprocess.Popen] = []
        print(
            f"starting {n} worker(s) on {HOST} ports {','.join(map(str, ports))}; "
            "worker 0 (chief) output follows",
            file=sys.stderr,
            flush=True,
        )
        try:
            for i in range(n):
                env = {**os.environ, "TF_CONFIG": tf_config(ports, i)}
                if i == 0:
                    procs.append(subprocess.Popen(cmd, env=env))
                else:
                    with open(logs[i], "wb") as log:
                        procs.append(
                            subprocess.Popen(
                                cmd,
                                env=env,
                                stdin=subprocess.DEVNULL,
                                stdout=log,
                                stderr=subprocess.STDOUT,
                            )
                        )
            stopped: set[int] = set()
            while any(p.poll() is None for p in procs):
                if any(p.poll() not in (None, 0) for p in procs):
                    stopped = _stop(procs)
                    break
                time.sleep(0.2)
        except KeyboardInterrupt:
            _stop(procs)
            return 130
        finally:
            _stop(procs)  # never leave a worker behind, whatever happened here
        codes = {i: _code(p.returncode) for i, p in enumerate(procs) if i not in stopped}
        for i, rc in sorted(codes.items()):
            if i:
                print(f"worker {i} exited {rc}: {_last_line(logs[i])}", file=sys.stderr)
        if stopped:
            print(f"stopped worker(s) {sorted(stopped)} after a failure", file=sys.stderr)
        return max(codes.values(), default=1)
