"""The one atomic write and SHA-256 helper every stage uses (cifar10_runtime.files)."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from cifar10_runtime import files
from cifar10_runtime.errors import first_line


def test_atomic_write_leaves_no_temporary_and_follows_the_umask(tmp_path: Path) -> None:
    target = tmp_path / "model.onnx"
    files.write_bytes(target, b"one")
    files.write_bytes(target, b"two")
    assert target.read_bytes() == b"two"
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask


def test_a_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "metrics.json"
    files.write_json(target, {"ok": 1})
    with pytest.raises(RuntimeError), files.atomic_path(target) as tmp:
        tmp.write_text('{"half')
        raise RuntimeError("crash mid-write")
    assert target.read_text() == '{\n  "ok": 1\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_missing_folders_are_created(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "report.md"
    files.write_text(target, "héllo\n")
    assert target.read_text(encoding="utf-8") == "héllo\n"


def test_sha256_of_a_file_and_of_bytes_agree(tmp_path: Path) -> None:
    data = os.urandom(3 << 20 | 17)  # several read blocks and a ragged tail
    (tmp_path / "blob").write_bytes(data)
    want = hashlib.sha256(data).hexdigest()
    assert files.sha256_hex(tmp_path / "blob") == want
    assert files.sha256_hex(str(tmp_path / "blob")) == want
    assert files.sha256_hex(data) == want
    assert files.sha256_hex(b"") == hashlib.sha256(b"").hexdigest()


def test_first_line_of_an_exception() -> None:
    assert first_line(RuntimeError("  bad node\n  dump line 2\n")) == "bad node"
    assert first_line(ValueError("")) == "ValueError"
    assert first_line(ValueError(""), default="invalid model") == "invalid model"
    assert first_line(ValueError("x" * 400)) == "x" * 300


def test_probe_writable_finds_the_nearest_folder_and_leaves_nothing(tmp_path: Path) -> None:
    from cifar10_runtime.files import probe_writable

    assert probe_writable(tmp_path / "new" / "deeper") == tmp_path
    assert sorted(tmp_path.iterdir()) == []  # probed, nothing created
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(NotADirectoryError) as err:
        probe_writable(blocker / "run")
    assert err.value.filename == str(blocker)


def test_non_finite_numbers_never_reach_json_files(tmp_path: Path) -> None:
    files.write_json(tmp_path / "m.json", {"loss": float("nan"), "rows": [float("inf"), 1.0]})
    assert json.loads((tmp_path / "m.json").read_text()) == {"loss": None, "rows": [None, 1.0]}


def test_killed_writers_temporaries_are_removed_by_the_next_write(tmp_path: Path) -> None:
    target = tmp_path / "model.keras"
    legacy = tmp_path / ".model.keras.k2j4x_9q.keras"  # what kill -9 left before this fix
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".model.keras.{dead.pid}.abcd1234.keras"
    live = tmp_path / f".model.keras.{os.getpid()}.zzzz.keras"  # a writer still at work
    for path in (legacy, stale, live):
        path.write_bytes(b"partial")
    with files.atomic_path(target) as tmp:
        tmp.write_bytes(b"ok")
    assert target.read_bytes() == b"ok"
    assert not legacy.exists() and not stale.exists()
    assert live.exists()
