"""A real `cifar-serve` process on 127.0.0.1 for the serving tests, driven by its log.

The server binds port 0 (the kernel picks a free port, no race) and the test learns the
port from uvicorn's "Uvicorn running on" line, readiness from the app's own "ready:" line;
every wait is an event (a log line, a process exit, a socket read) with a generous bound,
never a sleep. Output goes to a file for failure messages. (Module name unique across
tests/: see runtime_samples.py.)
"""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

RUNNING = re.compile(r"Uvicorn running on http://127\.0\.0\.1:(\d+)")
# The app's own line (server.py's lifespan), once per worker: its model is loaded and its
# batcher runs. uvicorn's "running on" line is the only uvicorn wording relied on (the port).
STARTED = "ready: Predictor("
BOUND = 60.0  # seconds: generous, only reached when something is broken


class ServeProcess:
    """`cifar-serve MODEL --port 0 ...` whose log lines are watched by a reader thread."""

    def __init__(self, model: Path, log: Path, *flags: str, ready_lines: int = 1, **popen) -> None:
        script = Path(sys.executable).with_name("cifar-serve")
        if not script.exists():
            pytest.skip(f"cifar-serve is not installed next to {sys.executable}")
        self.log_path = log
        self.lines: list[str] = []
        self._changed = threading.Condition()
        command = [str(script), str(model), "--host", "127.0.0.1", "--port", "0", *flags]
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **popen
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not (self.wait_for("Uvicorn running on") and self.wait_for(STARTED, ready_lines)):
            self.stop()
            pytest.fail(f"cifar-serve did not start:\n{self.text()}")
        port = next(int(m.group(1)) for line in self.lines if (m := RUNNING.search(line)))
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.address = f"127.0.0.1:{port}"

    def _read(self) -> None:
        assert self.process.stdout is not None
        with open(self.log_path, "w") as out:
            for raw in self.process.stdout:
                line = raw.decode(errors="replace")
                out.write(line)
                out.flush()
                with self._changed:
                    self.lines.append(line)
                    self._changed.notify_all()
        with self._changed:
            self.lines.append("")  # end of output: wakes every waiter
            self._changed.notify_all()

    def count(self, fragment: str) -> int:
        with self._changed:
            return sum(fragment in line for line in self.lines)

    def wait_for(self, fragment: str, count: int = 1, timeout: float = BOUND) -> bool:
        """Block until `fragment` has appeared in `count` log lines (False: exited or timeout)."""
        with self._changed:
            return (
                self._changed.wait_for(
                    lambda: (
                        self.count_unlocked(fragment) >= count
                        or (self.lines and self.lines[-1] == "" and self.process.poll() is not None)
                    ),
                    timeout,
                )
                and self.count_unlocked(fragment) >= count
            )

    def count_unlocked(self, fragment: str) -> int:
        return sum(fragment in line for line in self.lines)

    def text(self) -> str:
        with self._changed:
            return "".join(self.lines)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            code = self.process.wait(timeout=BOUND)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait(timeout=10)
        self._reader.join(10)
        return code


def start_request_inside_the_app(port: int, body: bytes, timeout: float = 30.0) -> socket.socket:
    """Send a request head; return once the app is reading its body (100 Continue)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    head = (
        "POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
        f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n"
    )
    sock.sendall(head.encode())
    assert sock.recv(100).startswith(b"HTTP/1.1 100 ")
    return sock
