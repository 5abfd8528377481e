"""Files written whole or not at all, and their SHA-256: the one home of both for every stage.

The trainer, the exporter and the benchmarks write through `atomic_path` (a temporary file
beside the target, fsync, rename), so a crash never leaves a half-written model, metrics or
report where a good one is expected, and new files get the usual umask-based mode.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from cifar10_runtime.untrusted import parse_decimal

# Read once, at import (os.umask can only be read by setting it): mkstemp makes 0600 files,
# written outputs should get the mode any other new file would.
_UMASK = os.umask(0o022)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside `target` (same suffix); rename it onto target on success.

    On an exception the temporary file is removed and `target` keeps its old content. The
    temporary name carries our pid, so temporaries a killed process left behind (kill -9 skips
    every `finally`) are recognised and removed by the next write of the same target.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(target)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{target.name}.{os.getpid()}.", suffix=target.suffix, dir=target.parent
    )
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_UMASK)
    try:
        yield tmp_path
        with open(tmp_path, "rb") as fh:
            os.fsync(fh.fileno())  # on disk before the rename, or a power cut can expose zeros
        os.replace(tmp_path, target)
        _fsync_dir(target.parent)
    finally:
        tmp_path.unlink(missing_ok=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # no such process; no pid is that large
        return False
    except OSError:  # EPERM: alive, someone else's
        return True
    return True


def remove_stale_temps(target: str | os.PathLike[str]) -> list[Path]:
    """Delete `atomic_path` temporaries of `target` whose writer is dead; returns them.

    `.NAME.PID.RANDOM.SUFFIX` is stale when PID is not running; `.NAME.RANDOM.SUFFIX` (no pid:
    written by an older version) always is. A live writer's temporary is left alone.
    """
    target = Path(target)
    prefix = f".{target.name}."
    removed: list[Path] = []
    try:
        candidates = [p for p in target.parent.iterdir() if p.name.startswith(prefix)]
    except OSError:
        return removed
    for path in candidates:
        middle = path.name[len(prefix) : len(path.name) - len(target.suffix) or None]
        if not path.name.endswith(target.suffix) or not path.is_file() or path.is_symlink():
            continue
        pid, dot, _ = middle.partition(".")
        number = parse_decimal(pid) if dot else None  # a name, not a number, until checked
        if number is not None and _pid_alive(number):
            continue
        path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable; some filesystems refuse to open a folder: best effort."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def probe_writable(folder: str | os.PathLike[str]) -> Path:
    """The nearest existing folder at or above `folder`, proven writable; nothing is left behind.

    A file is made and removed there, since permission bits alone lie for root. Raises
    NotADirectoryError (its `filename` the offending path) when that nearest existing path is
    a file, and OSError when no file can be created in it.
    """
    here = Path(folder)
    while not here.exists() and here != here.parent:
        here = here.parent
    if not here.is_dir():
        raise NotADirectoryError(20, "not a folder", str(here))
    fd, probe = tempfile.mkstemp(prefix=".cifar10-probe.", dir=here)
    os.close(fd)
    os.unlink(probe)
    return here


def write_bytes(target: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def write_text(target: str | os.PathLike[str], text: str) -> None:
    write_bytes(target, text.encode("utf-8"))


def _finite(obj: Any) -> Any:
    """NaN and infinities as null: bare NaN is not JSON, and other tools refuse it."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def write_json(
    target: str | os.PathLike[str], obj: Any, default: Callable[[Any], Any] | None = None
) -> None:
    """Indented JSON with a final newline; `default` as for json.dumps (non-JSON types).

    NaN and infinities are written as null (never bare NaN).
    """
    text = json.dumps(_finite(obj), indent=2, default=default, allow_nan=False)
    write_text(target, text + "\n")


def sha256_hex(source: str | os.PathLike[str] | bytes | bytearray | memoryview) -> str:
    """Hex SHA-256 of a file (read in 1 MiB blocks: datasets and models can be large) or bytes."""
    digest = hashlib.sha256()
    if isinstance(source, bytes | bytearray | memoryview):
        digest.update(source)
        return digest.hexdigest()
    with open(source, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
