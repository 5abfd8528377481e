"""The load-time timings of the candidates, kept per machine so a later load need not time
again.

Timing the candidates (engines.timing.time_runners) is most of what `auto` costs at load,
and most of `cifar-predict`'s wall time on a few images. The timings depend on the model
files, the candidates that passed, the CPU, the cores, the thread count and the engines'
versions, and on nothing else that a later load can see: all of these make the key, so a
different CPU (these machines change from one day to the next), a re-export or an upgraded
engine is a new key and is timed afresh. The golden-set check is never cached: every load
still proves the file computes what was checked.

Where: $CIFAR10_ROUTE_CACHE if set (a folder; "off" turns the cache off), else
$XDG_CACHE_HOME/cifar10-runtime, else ~/.cache/cifar10-runtime; one JSON file, routes.json.
A cache that cannot be written (read-only home) is passed over silently. A routes.json that
is not a regular file (a FIFO, a symbolic link, a device), is larger than MAX_FILE_BYTES,
nests deeper than MAX_DEPTH, holds absurd numbers or is not JSON at all is passed over with
one logged line: the load times as if there were none, and its timings then replace the file
atomically (a symbolic link is replaced, never written through).
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from cifar10_runtime.engines.cpu import cpu_features, usable_cpus
from cifar10_runtime.engines.load import Stopwatch
from cifar10_runtime.engines.runners import Runner
from cifar10_runtime.engines.timing import TIMING_BATCHES, TIMING_CAP_S, time_runners
from cifar10_runtime.files import sha256_hex, write_text
from cifar10_runtime.untrusted import parse_json, read_regular_file

ENV = "CIFAR10_ROUTE_CACHE"
FILE = "routes.json"
FORMAT = 1  # bumped when the key or the entries change meaning
MAX_ENTRIES = 64  # one per model x machine x settings: far more than one user has
# MAX_ENTRIES entries take a few tens of KB; a larger file was not written by us and would
# cost time and memory at every load.
MAX_FILE_BYTES = 1 << 20
MAX_DEPTH = 8  # the file is {key: {"speeds": {runner: {batch: speed}}, ...}}
# Timings older than this are taken again: the key names everything known to matter, and
# this bounds how long one measurement taken on a busy machine can steer the choice.
MAX_AGE_S = 7 * 24 * 3600

log = logging.getLogger("cifar10_runtime.engines.runners")


def cache_file() -> Path | None:
    """routes.json in the cache folder, or None when the cache is turned off."""
    where = os.environ.get(ENV)
    if where is not None:
        return None if where.strip().lower() in ("off", "0", "") else Path(where) / FILE
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "cifar10-runtime" / FILE


def plan_speeds(
    runners: list[Runner], images: np.ndarray, threads: int | None
) -> tuple[dict[str, dict[int, float]], str]:
    """Images/s of each runner at each TIMING_BATCHES size, and where they come from:
    the cache when it holds this key, else timed now (and kept, unless the machine was so
    busy that the timing ran into its cap or others used the CPUs: load.Stopwatch)."""
    key = machine_key(runners, threads)
    found = recall(key)
    if found is not None:
        cached = _valid(found[0], runners)
        if cached is not None:
            speeds, when = cached
            return speeds, f"timings from {when} {found[1]}"
    watch = Stopwatch()
    speeds = time_runners(runners, images)
    if not watch.cacheable(TIMING_CAP_S):
        return speeds, "timed at load, on a busy machine: not kept"
    cells = {name: {str(b): v for b, v in row.items()} for name, row in speeds.items()}
    remember(key, {"speeds": cells})
    return speeds, "timed at load"


def recall(key: str | None) -> tuple[dict[str, Any], str] | None:
    """The cached entry for `key` (a dict, not yet checked) and a phrase saying where it was
    cached; None when the cache is off, the key is None or there is no such entry."""
    path = cache_file()
    if path is None or key is None:
        return None
    entry = _read(path).get(key)
    if not isinstance(entry, dict):
        return None
    return entry, f"cached in {path}; {ENV}=off times every load"


def remember(key: str | None, entry: dict[str, Any]) -> None:
    """Keep `entry` (JSON-able) under `key`, stamped with the time; the cache off or the key
    None: nothing."""
    path = cache_file()
    if path is None or key is None:
        return
    entries = _read(path, quiet=True)  # read again: another process may have written meanwhile
    entries[key] = {**entry, "measured_at": time.time()}
    _write(path, entries)


def measured_when(entry: dict[str, Any]) -> str | None:
    """When `entry` was measured ("YYYY-MM-DD HH:MM UTC"), or None when it is older than
    MAX_AGE_S, from the future, or carries no time."""
    try:
        measured = float(entry["measured_at"])
    except (TypeError, KeyError, ValueError, OverflowError):
        return None
    if not 0 <= time.time() - measured <= MAX_AGE_S:
        return None
    return datetime.fromtimestamp(measured, UTC).strftime("%Y-%m-%d %H:%M UTC")


def machine_key(
    runners: list[Runner], threads: int | None, extra: dict[str, Any] | None = None
) -> str | None:
    """The cache key of timings of `runners` here: the model files' digests, the engines and
    their versions, the CPU, its flags and cores, the threads, plus `extra` (what else the
    timing depended on); None when a model cannot be named (never cached)."""
    if cache_file() is None:
        return None
    digests, seen = {}, {}
    for runner in runners:
        name = runner.source if isinstance(runner.source, str | os.PathLike) else id(runner)
        if name not in seen:
            seen[name] = _digest(runner.source)
        if seen[name] is None:
            return None  # a model we cannot name (no source kept): never cached
        digests[runner.name] = seen[name]
    cpu = cpu_features()
    parts = {
        "format": FORMAT,
        "models": digests,
        "backends": sorted((r.name, r.backend, tuple(r.providers)) for r in runners),
        "cpu": [cpu["cpu"], cpu["summary"], usable_cpus()],
        "threads": threads,
        "batches": list(TIMING_BATCHES),
        **({"extra": extra} if extra else {}),
    }
    return sha256_hex(json.dumps(parts, sort_keys=True).encode())[:32]


def _digest(source: Any) -> str | None:
    if not isinstance(source, str | os.PathLike | bytes | bytearray | memoryview):
        return None
    try:
        return sha256_hex(source)
    except OSError:
        return None


def _valid(entry: Any, runners: list[Runner]) -> tuple[dict[str, dict[int, float]], str] | None:
    """The entry's speeds if it is well formed, recent and covers every runner, else None."""
    when = measured_when(entry)
    if when is None:
        return None
    try:
        speeds = {
            r.name: {b: float(entry["speeds"][r.name][str(b)]) for b in TIMING_BATCHES}
            for r in runners
        }
    except (TypeError, KeyError, ValueError, OverflowError):
        return None
    if not all(usable_speeds(cells.values()) for cells in speeds.values()):
        return None
    return speeds, when


def usable_speeds(values: Iterable[float]) -> bool:
    """Whether cached images/s figures can steer a choice: every one finite and positive."""
    return all(math.isfinite(v) and v > 0 for v in values)


def _read(path: Path, quiet: bool = False) -> dict[str, Any]:
    """The cache's entries; {} (with one logged line unless there is no file or `quiet`: a
    write after a read has said it once) when unusable."""
    try:
        data = parse_json(read_regular_file(path, MAX_FILE_BYTES), MAX_DEPTH)
        if not isinstance(data, dict):
            raise ValueError(f"a JSON {type(data).__name__}, not an object")
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        if quiet:
            return {}
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        log.warning(
            "route cache %s passed over (%s); timing afresh, the new timings replace it",
            path,
            str(reason)[:200],
        )
        return {}
    return data  # more than MAX_ENTRIES (someone else's file): pruned at the next write


def _write(path: Path, entries: dict[str, Any]) -> None:
    """Atomically, newest MAX_ENTRIES kept; any failure only means the next load times again."""

    def age(item: tuple[str, Any]) -> float:
        value = item[1].get("measured_at") if isinstance(item[1], dict) else None
        return value if isinstance(value, int | float) else 0.0

    kept = dict(sorted(entries.items(), key=age, reverse=True)[:MAX_ENTRIES])
    try:
        write_text(path, json.dumps(kept, indent=1, sort_keys=True))
    except OSError as exc:
        log.debug("route cache not written to %s: %s", path, exc)
