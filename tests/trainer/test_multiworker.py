"""--strategy multi-worker: TF_CONFIG checks, and real clusters of worker processes on loopback.

The training tests use a slice of the real subset (80 images of each training batch, 100 test
images, rewritten in the official format under tmp_path) and 2-3 tiny epochs.
"""

from __future__ import annotations

import csv
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from cifar10_runtime.errors import ConfigError
from cifar10_trainer.distributed import peer_error
from cifar10_trainer.errors import PeerError
from cifar10_trainer.launcher import free_ports, tf_config
from cifar10_trainer.precision import choose, cpu_flags
from cifar10_trainer.tf_config import Cluster, read_tf_config

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
CLI = [sys.executable, "-m", "cifar10_trainer.cli"]
BOUND_S = 90  # the 60 s peer timeout plus slack for a loaded machine: past it, a hang
TINY = ["--epochs", "2", "--batch-size", "12", "--filters", "8,16", "--dense-units", "32"]


# --- TF_CONFIG and messages (no TensorFlow)


def _one_worker(addr: str) -> str:
    return json.dumps(
        {"cluster": {"worker": [addr]}, "task": {"type": "worker", "index": 0}}, ensure_ascii=False
    )


def test_tf_config_parsed_and_chief_is_worker_0() -> None:
    c = read_tf_config(tf_config([1111, 2222], 1))
    assert c.workers == 2 and c.index == 1 and not c.is_chief
    assert read_tf_config(tf_config([1111, 2222], 0)).is_chief
    both = {"cluster": {"chief": ["a:1"], "worker": ["b:2"]}, "task": {"type": "chief", "index": 0}}
    assert read_tf_config(json.dumps(both)).is_chief


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ("", "needs the TF_CONFIG environment variable"),
        ("{not json", "not valid JSON"),
        ('{"task": {"type": "worker", "index": 0}}', "'cluster'"),
        ('{"cluster": {"worker": ["a:1"]}}', "'task'"),
        (tf_config([1111, 2222], 2), "set an index 0..1. Received: task.index=2"),
        ('{"cluster": {"worker": ["a"]}, "task": {"type": "worker", "index": 0}}', "host:port"),
        ('{"cluster": {"ps": ["a:1"]}, "task": {"type": "ps", "index": 0}}', "'ps'"),
        # "²".isdigit() is True and int("²") raises; so do 5,000 digits.
        (_one_worker("h:\u00b2"), "port 1..65535; fix that entry. Received: 'h:\u00b2'"),
        (_one_worker("h:\u0663"), "Received: 'h:\u0663'"),  # Arabic-Indic digit three
        (_one_worker("h:" + "9" * 5000), "(5002 characters)"),
        (_one_worker("h:0"), "Received: 'h:0'"),
        (_one_worker("h:65536"), "Received: 'h:65536'"),
        (
            '{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 1%s}}'
            % ("0" * 5000),
            "not valid JSON (Exceeds the limit",
        ),
    ],
)
def test_bad_tf_config_is_one_clear_line(raw: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=None) as info:
        read_tf_config(raw)
    message = str(info.value)
    assert needle in message and "\n" not in message and "Received: " in message
    assert len(message) < 600  # outside input is cut, never echoed whole


def test_cli_tf_config_with_a_non_ascii_port_digit_is_exit_2(tmp_path: Path) -> None:
    env = {**os.environ, "TF_CONFIG": _one_worker("h:\u00b2")}
    cmd = [sys.executable, "-m", "cifar10_trainer.cli", "--strategy", "multi-worker"]
    res = subprocess.run(
        [*cmd, "--dataset", "synthetic", "--output-dir", str(tmp_path / "r")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert res.returncode == 2, res.stderr
    assert res.stderr.startswith("error: TF_CONFIG cluster.worker needs 'host:port' entries")
    assert len(res.stderr.splitlines()) == 1 and "Traceback" not in res.stderr


def test_peer_error_names_the_lost_peer_not_ourselves() -> None:
    me = Cluster((("worker", "127.0.0.1:1"), ("worker", "127.0.0.1:2")), "worker", 0)
    text = (
        "Collective ops is aborted by: recvmsg:Connection reset by peer\nAdditional GRPC error "
        "information from remote target /job:worker/replica:0/task:1 while calling RecvBuf"
    )
    msg = str(peer_error(RuntimeError(text), me))
    assert msg.startswith("lost peer worker 1 (127.0.0.1:2) (connection reset by peer)")
    assert "--resume" in msg and "\n" not in msg
    # A frozen peer only makes the collective time out, naming nobody: with two, it is the other.
    msg = str(peer_error(RuntimeError("Collective ops timed out"), me))
    assert msg.startswith("lost peer worker 1 (127.0.0.1:2) (timed out)")


def test_free_ports_are_distinct() -> None:
    ports = free_ports(4)
    assert len(set(ports)) == 4 and all(0 < p < 65536 for p in ports)


@pytest.mark.parametrize(
    ("tf_cfg", "args", "needle"),
    [
        (None, [], "needs the TF_CONFIG environment variable"),
        ("{oops", [], "TF_CONFIG is not valid JSON"),
        (tf_config([1111], 3), [], "Received: task.index=3"),
        (None, ["--local-workers", "2", "--strategy", "mirrored"], "--local-workers runs"),
    ],
)
def test_cli_refuses_bad_cluster_input_before_any_folder(
    tmp_path: Path, tf_cfg: str | None, args: list[str], needle: str
) -> None:
    env = {k: v for k, v in ENV.items() if k != "TF_CONFIG"}
    if tf_cfg is not None:
        env["TF_CONFIG"] = tf_cfg
    out = tmp_path / "run"
    if "--strategy" not in args:
        args = [*args, "--strategy", "multi-worker"]
    cmd = [*CLI, "--dataset", "synthetic", *args, "--output-dir", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], lines
    assert not out.exists()


# --- real clusters (slow)


class Worker:
    """One `cifar-train` worker process; its output lines are read on a thread, as they come."""

    def __init__(self, index: int, ports: list[int], args: list[str], home: Path):
        home.mkdir(parents=True, exist_ok=True)
        # Its own cwd and TMPDIR, so "leaves nothing behind" can be checked.
        env = {**ENV, "TF_CONFIG": tf_config(ports, index), "TMPDIR": str(home)}
        self.proc = subprocess.Popen(
            [*CLI, *args],
            cwd=home,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_for(self, needle: str, timeout: float = 600) -> str:
        deadline = time.monotonic() + timeout
        while True:
            line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            if line is None:
                raise AssertionError(f"exited before printing {needle!r}: {self.seen[-5:]}")
            self.seen.append(line)
            if needle in line:
                return line

    def finish(self, timeout: float = 600) -> tuple[int, list[str]]:
        rc = self.proc.wait(timeout=timeout)
        while (line := self.lines.get(timeout=30)) is not None:
            self.seen.append(line)
        return rc, self.seen


def cluster(n: int, args: list[str], root: Path) -> list[Worker]:
    ports = free_ports(n)
    return [Worker(i, ports, args, root / f"worker{i}") for i in range(n)]


def checksum(lines: list[str]) -> str:
    return next(ln.split()[-1] for ln in lines if ln.startswith("final weights sha256"))


@pytest.mark.slow
def test_two_workers_train_and_only_the_chief_writes(tmp_path: Path, data_slice: Path) -> None:
    run = tmp_path / "run"
    args = ["--data-dir", str(data_slice), *TINY, "--strategy", "multi-worker"]
    workers = cluster(2, [*args, "--output-dir", str(run)], tmp_path)
    results = [w.finish() for w in workers]
    assert [rc for rc, _ in results] == [0, 0], [lines[-5:] for _, lines in results]
    assert checksum(results[0][1]) == checksum(results[1][1])  # replicas stayed identical

    metrics = json.loads((run / "metrics.json").read_text())
    assert (metrics["strategy"], metrics["workers"], metrics["replicas"]) == ("multi-worker", 2, 2)
    # The custom loop trains at the precision auto picks for this CPU (bf16 where it has it).
    auto = choose("auto", use_gpu=False, flags=cpu_flags())
    assert metrics["precision"] == auto.policy and metrics["precision_reason"] == auto.why
    first = next(ln for ln in results[0][1] if ln.startswith("cifar-train: "))
    assert (
        first.startswith("cifar-train: training on cpu x1") and f"precision {auto.policy}" in first
    )
    assert metrics["global_batch"] == 24 and metrics["epochs"] == 2
    assert metrics["final_weights_sha256"] == checksum(results[0][1])
    assert sum(map(sum, metrics["confusion_matrix"])) == 100  # the whole test split, once
    names = {p.name for p in run.iterdir()}
    assert {
        "config.json",
        "state.json",
        "history.csv",
        "checkpoint.keras",
        "model.keras",
        "metrics.json",
        "learning_curves.png",
    } <= names
    assert not [n for n in names if n.startswith(".")], "temporary files left behind"
    rows = list(csv.DictReader((run / "history.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2"] and all(r["val_accuracy"] for r in rows)
    assert (run.parent / "latest").resolve() == run.resolve()
    # No run folder, no temporary saves (".ses" is a session marker this machine's sandbox
    # drops in every $TMPDIR, with or without us).
    left = [p.name for p in (tmp_path / "worker1").iterdir() if p.name != ".ses"]
    assert left == []


@pytest.mark.slow
def test_killed_worker_stops_the_other_then_resume_finishes(
    tmp_path: Path, data_slice: Path
) -> None:
    run = tmp_path / "run"
    args = ["--data-dir", str(data_slice), *TINY, "--epochs", "3", "--strategy", "multi-worker"]
    chief, other = cluster(2, [*args, "--output-dir", str(run)], tmp_path)
    other.wait_for("epoch 1 done")  # printed by the non-chief once its epoch 1 is saved
    other.proc.send_signal(signal.SIGKILL)
    other.proc.wait()
    rc, lines = chief.finish(timeout=BOUND_S)  # TimeoutExpired here would be the hang
    errors = [ln for ln in lines if ln.startswith("error: ")]
    assert rc == PeerError.exit_code == 6 and len(errors) == 1, lines[-5:]
    assert errors[0].startswith("error: lost peer worker 1 (127.0.0.1:"), errors
    assert (
        "; restart every worker with --resume --output-dir RUN_FOLDER to continue from the last "
        "finished epoch. Received: " in errors[0]
    ), errors
    assert not (run / "metrics.json").exists()
    done = json.loads((run / "state.json").read_text())["epoch"]
    assert 1 <= done < 3

    resumed = cluster(2, ["--resume", "--output-dir", str(run)], tmp_path / "again")
    results = [w.finish() for w in resumed]
    assert [r for r, _ in results] == [0, 0], [lines[-5:] for _, lines in results]
    assert checksum(results[0][1]) == checksum(results[1][1])
    rows = list(csv.DictReader((run / "history.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]
    assert json.loads((run / "metrics.json").read_text())["workers"] == 2


@pytest.mark.slow
def test_one_worker_matches_strategy_none(tmp_path: Path, data_slice: Path) -> None:
    """Same seed, same global batch (24 divides the 360 training images: the same 15 steps).

    Epoch 1 agrees to the printed 6 digits: same shuffle, initial weights, dropout and
    augmentation draws, and the custom loop's arithmetic (compute_average_loss, gradients
    through a one-replica all-reduce) rounds like fit's. Not exactly from epoch 2: the input
    pipeline tf.distribute rewrites (auto-shard, rebatch) reshuffles in another, equally random
    order than fit's, so the later train losses agree only statistically, while validation
    losses, over fixed images, stay close (the bounds are the assertions below).
    """
    common = ["--data-dir", str(data_slice), *TINY, "--batch-size", "24", "--quiet"]
    none_dir, multi_dir = tmp_path / "none", tmp_path / "multi"
    cmd = [*CLI, *common, "--output-dir", str(none_dir)]
    res = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    cmd = [*CLI, *common, "--local-workers", "1", "--output-dir", str(multi_dir)]
    res = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    a = list(csv.DictReader((none_dir / "history.csv").open()))
    b = list(csv.DictReader((multi_dir / "history.csv").open()))
    assert len(a) == len(b) == 2
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert float(b[0][key]) == pytest.approx(float(a[0][key]), rel=1e-5), key
    assert float(b[1]["loss"]) == pytest.approx(float(a[1]["loss"]), rel=0.1)
    assert float(b[1]["val_loss"]) == pytest.approx(float(a[1]["val_loss"]), rel=1e-2)
    m = json.loads((multi_dir / "metrics.json").read_text())
    assert (m["strategy"], m["workers"], m["global_batch"]) == ("multi-worker", 1, 24)


@pytest.mark.slow
def test_unreachable_peer_is_one_line_and_no_folder(tmp_path: Path) -> None:
    """Only worker 0 of 2 is started: it must give up after --peer-timeout, never hang."""
    out = tmp_path / "run"
    env = {**ENV, "TF_CONFIG": tf_config(free_ports(2), 0)}
    cmd = [*CLI, "--dataset", "synthetic", "--strategy", "multi-worker", "--peer-timeout", "5"]
    res = subprocess.run(
        [*cmd, "--output-dir", str(out)], capture_output=True, text=True, env=env, timeout=BOUND_S
    )
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("error: ")]
    # The start-up watchdog ends a worker stuck inside TensorFlow's start-up with SIGKILL
    # (exit 137 in a shell), after printing its one line (distributed.StartupWatchdog).
    assert res.returncode == -signal.SIGKILL and len(errors) == 1, res.stderr[-2000:]
    assert "could not form the cluster within 5 s: no answer from worker 1 (127.0.0.1:" in errors[0]
    assert not out.exists()
