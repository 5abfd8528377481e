"""A routes.json that is not what the cache writes: a FIFO, a symbolic link (to /dev/zero,
to a good file), a folder, a huge or deeply nested file, absurd numbers. Each is passed over
with one logged line, the load times afresh and the new timings replace the file (a link is
replaced, its target left alone).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path

import numpy as np
import pytest

from cifar10_runtime.engines import timing_cache
from cifar10_runtime.engines.runners import Runner
from cifar10_runtime.untrusted import parse_json, read_regular_file

IMAGES = np.zeros((4, 32, 32, 3), np.uint8)
LOGGER = "cifar10_runtime.engines.runners"


@pytest.fixture()
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(timing_cache.ENV, str(tmp_path / "cache"))
    (tmp_path / "cache").mkdir()
    return tmp_path / "cache" / timing_cache.FILE


def _runners(folder: Path) -> list[Runner]:
    def run(x: np.ndarray) -> np.ndarray:
        return np.zeros((len(x), 10), np.float32)

    runners = []
    for precision in ("fp32", "int8"):
        path = folder / f"{precision}.onnx"
        path.write_bytes(b"model" + precision.encode())
        runners.append(Runner("onnxruntime", precision, "stand-in 1.0", run, source=str(path)))
    return runners


def _load_passes_over(folder: Path, cache: Path, caplog: pytest.LogCaptureFixture) -> str:
    """Load once; the damaged file is reported on exactly one line and replaced by timings."""
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        note = timing_cache.plan_speeds(_runners(folder), IMAGES, 1)[1]
    assert note == "timed at load"
    lines = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert len(lines) == 1 and "passed over" in lines[0] and str(cache) in lines[0], lines
    assert not cache.is_symlink() and cache.is_file()
    (entry,) = json.loads(cache.read_text()).values()
    assert set(entry["speeds"]) == {"onnxruntime/fp32", "onnxruntime/int8"}
    return lines[0]


def _deep(levels: int) -> str:
    return '{"k": ' + "[" * levels + "]" * levels + "}"


@pytest.mark.parametrize(
    "content, reason",
    [
        (_deep(100_000), "nested"),
        (_deep(timing_cache.MAX_DEPTH + 1), "nested"),
        ('{"k": {"measured_at": ' + "9" * 400 + ', "speeds": {}}}', "number"),
        ('{"k": {"measured_at": 1e400, "speeds": {}}}', "float range"),
        ('{"k": {"measured_at": NaN, "speeds": {}}}', "NaN"),
        ("[1, 2]", "not an object"),
        ("\xff\xfe not text", ""),
        ('{"k": ', ""),
    ],
)
def test_hostile_json_is_passed_over_with_one_line(
    tmp_path: Path, cache: Path, caplog: pytest.LogCaptureFixture, content: str, reason: str
) -> None:
    cache.write_bytes(content.encode("latin-1"))
    assert reason in _load_passes_over(tmp_path, cache, caplog)


def test_a_file_over_the_size_limit_is_not_read(
    tmp_path: Path, cache: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with open(cache, "wb") as handle:  # sparse: its size is seen before any byte is read
        handle.truncate(300 << 20)
    assert "bytes (at most" in _load_passes_over(tmp_path, cache, caplog)


def test_many_entries_within_the_size_limit_are_pruned_at_the_next_write(
    tmp_path: Path, cache: Path, caplog: pytest.LogCaptureFixture
) -> None:
    entries = {f"k{i}": {"measured_at": float(i), "speeds": {}} for i in range(5000)}
    text = json.dumps(entries)
    assert len(text) <= timing_cache.MAX_FILE_BYTES
    cache.write_text(text)
    timing_cache.plan_speeds(_runners(tmp_path), IMAGES, 1)
    assert len(json.loads(cache.read_text())) == timing_cache.MAX_ENTRIES


def test_a_symlink_to_dev_zero_is_never_followed(
    tmp_path: Path, cache: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache.symlink_to("/dev/zero")
    assert "symbolic link" in _load_passes_over(tmp_path, cache, caplog)


def test_a_symlink_to_a_good_file_is_replaced_and_its_target_left_alone(
    tmp_path: Path, cache: Path, caplog: pytest.LogCaptureFixture
) -> None:
    target = tmp_path / "elsewhere.json"
    target.write_text("{}")
    cache.symlink_to(target)
    _load_passes_over(tmp_path, cache, caplog)
    assert target.read_text() == "{}"


def test_a_folder_is_passed_over(
    tmp_path: Path, cache: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache.mkdir()
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        assert timing_cache.plan_speeds(_runners(tmp_path), IMAGES, 1)[1] == "timed at load"
    warnings = [r for r in caplog.records if r.name == LOGGER and r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "not a regular file" in warnings[0].getMessage()
    assert cache.is_dir()  # not ours to delete; the write fails quietly


def test_a_fifo_does_not_block_the_load(
    tmp_path: Path, cache: Path, caplog: pytest.LogCaptureFixture
) -> None:
    os.mkfifo(cache)
    result: list[str] = []
    worker = threading.Thread(
        target=lambda: result.append(timing_cache.plan_speeds(_runners(tmp_path), IMAGES, 1)[1]),
        daemon=True,
    )
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        worker.start()
        worker.join(60)  # a guard against hanging the suite, not a timing assertion
        if worker.is_alive():  # release the blocked reader before failing
            os.close(os.open(cache, os.O_WRONLY | os.O_NONBLOCK))
            pytest.fail("loading with a FIFO as routes.json blocked")
    assert result == ["timed at load"]
    lines = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert len(lines) == 1 and "not a regular file" in lines[0]
    assert cache.is_file() and not cache.is_symlink()  # replaced by a regular file


def test_a_missing_file_is_not_reported(
    tmp_path: Path, cache: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        timing_cache.plan_speeds(_runners(tmp_path), IMAGES, 1)
    assert not [r for r in caplog.records if r.name == LOGGER]


def test_read_regular_file_reads_small_files_and_refuses_the_rest(tmp_path: Path) -> None:
    small = tmp_path / "small"
    small.write_bytes(b"abc")
    assert read_regular_file(small, 3) == b"abc"
    small.write_bytes(b"abcd")
    with pytest.raises(ValueError, match="4 bytes"):
        read_regular_file(small, 3)
    with pytest.raises(ValueError, match="not a regular file"):
        read_regular_file(tmp_path, 10)
    with pytest.raises(FileNotFoundError):
        read_regular_file(tmp_path / "missing", 10)


@pytest.mark.parametrize(
    "text", ["[" * 40 + "]" * 40, "1" * 41, "-1e999", "Infinity", '{"a": -NaN}', "[1,"]
)
def test_parse_json_refuses_what_would_crash_or_mislead(text: str) -> None:
    with pytest.raises(ValueError):
        parse_json(text)


def test_parse_json_counts_no_brackets_inside_strings() -> None:
    text = json.dumps({"a": "[" * 100 + '\\"{' * 50, "b": [[1.5, -2]]})
    assert parse_json(text) == json.loads(text)
