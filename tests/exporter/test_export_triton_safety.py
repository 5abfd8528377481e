"""`--triton-repository DIR` never touches what cifar-export did not write: symbolic links,
a user's own model folders and unwritable places are refused with one ConfigError naming the
path; tensor names and versions cannot inject fields into config.pbtxt; staged and replaced
folders never stay behind.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cifar10_exporter.outputs import triton
from cifar10_exporter.outputs.triton import (
    MARKER,
    check_repository,
    remove_leftovers,
    write_repository,
)
from cifar10_runtime.errors import ConfigError, ModelError

onnx = pytest.importorskip("onnx")
model_config_pb2 = pytest.importorskip(
    "tritonclient.grpc.model_config_pb2", reason="tritonclient[grpc] not installed"
)
from google.protobuf import text_format  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runtime"))
from make_models import FULL_METADATA, _model  # noqa: E402

QUIET = {"log": lambda _line: None}


def _save(folder: Path, filename: str, **kwargs: object) -> Path:
    metadata = {**FULL_METADATA, **kwargs.pop("metadata", {})}  # type: ignore[dict-item]
    model = _model(onnx.TensorProto.UINT8, ["N", 32, 32, 3], metadata=metadata, **kwargs)
    path = folder / filename
    onnx.save(model, str(path))
    return path


@pytest.fixture()
def valid(tmp_path: Path) -> Path:
    folder = tmp_path / "models"
    folder.mkdir()
    return _save(folder, "model.onnx")


def _parse(folder: Path):  # type: ignore[no-untyped-def]
    config = model_config_pb2.ModelConfig()
    text_format.Parse((folder / "config.pbtxt").read_text(), config)  # unknown field: error
    return config


def _beside(repo: Path) -> list[str]:
    """Everything in DIR's parent but DIR and the models folder: leftovers."""
    return sorted(p.name for p in repo.parent.iterdir() if p.name not in (repo.name, "models"))


# --- links and folders that are not ours ----------------------------------------------------


@pytest.mark.parametrize("twin_exported", [False, True])
def test_a_symlinked_twin_is_refused_and_left_alone(
    valid: Path, tmp_path: Path, twin_exported: bool
) -> None:
    repo, elsewhere = tmp_path / "repo", tmp_path / "precious"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("mine")
    repo.mkdir()
    (repo / "cifar10_int8").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(ConfigError, match="symbolic link") as caught:
        write_repository(repo, valid, valid if twin_exported else None, **QUIET)
    assert str(repo / "cifar10_int8") in str(caught.value) and "\n" not in str(caught.value)
    assert (repo / "cifar10_int8").is_symlink() and (elsewhere / "keep.txt").read_text() == "mine"
    assert _beside(repo) == ["precious"]


def test_a_symlinked_model_folder_is_refused_before_anything_is_written(
    valid: Path, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "cifar10").symlink_to("/dev/null")
    with pytest.raises(ConfigError, match="symbolic link"):
        check_repository(repo)
    with pytest.raises(ConfigError, match="symbolic link"):
        write_repository(repo, valid, **QUIET)
    assert os.readlink(repo / "cifar10") == "/dev/null" and _beside(repo) == []


@pytest.mark.parametrize("name", ["cifar10", "cifar10_int8"])
def test_a_users_own_folder_is_never_replaced_or_deleted(
    valid: Path, tmp_path: Path, name: str
) -> None:
    repo = tmp_path / "repo"
    (repo / name / "1").mkdir(parents=True)
    (repo / name / "config.pbtxt").write_text('name: "hand-made"\n')
    with pytest.raises(ConfigError, match=f"not written by cifar-export.*{MARKER}") as caught:
        write_repository(repo, valid, **QUIET)
    assert str(repo / name) in str(caught.value) and "Move it away" in str(caught.value)
    assert (repo / name / "config.pbtxt").read_text() == 'name: "hand-made"\n'


def test_a_marker_that_is_a_link_does_not_make_a_folder_ours(valid: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "cifar10").mkdir(parents=True)
    (tmp_path / "real-marker").write_text("")
    (repo / "cifar10" / MARKER).symlink_to(tmp_path / "real-marker")
    with pytest.raises(ConfigError, match="not written by cifar-export"):
        write_repository(repo, valid, **QUIET)


def test_our_own_folders_are_replaced_and_the_twin_removed(valid: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    write_repository(repo, valid, valid, **QUIET)
    assert (repo / "cifar10" / MARKER).is_file() and (repo / "cifar10_int8" / MARKER).is_file()
    lines: list[str] = []
    write_repository(repo, valid, log=lines.append)
    assert sorted(p.name for p in repo.iterdir()) == ["cifar10"]
    assert any("removed" in line for line in lines) and _beside(repo) == []


# --- unwritable places -------------------------------------------------------------------


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_parent_is_one_config_error(valid: Path, tmp_path: Path) -> None:
    parent = tmp_path / "locked"
    (parent / "repo").mkdir(parents=True)
    parent.chmod(0o555)
    try:
        with pytest.raises(ConfigError, match=str(parent)):
            write_repository(parent / "repo", valid, **QUIET)
    finally:
        parent.chmod(0o755)


def test_a_failed_probe_of_the_parent_is_one_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = tmp_path / "repo"

    def refuse(folder: Path) -> Path:
        if Path(folder) == tmp_path:
            raise PermissionError(errno.EACCES, "Permission denied", str(folder))
        return Path(folder)

    monkeypatch.setattr(triton, "probe_writable", refuse)
    with pytest.raises(ConfigError, match="Permission denied") as caught:
        check_repository(repo)
    assert str(tmp_path) in str(caught.value) and "--triton-repository" in str(caught.value)


@pytest.mark.parametrize("failing", ["staging", "rename"])
def test_a_failure_midway_keeps_the_earlier_model_and_leaves_nothing_behind(
    valid: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    repo = tmp_path / "repo"
    write_repository(repo, valid, **QUIET)
    before = (repo / "cifar10" / "config.pbtxt").read_text()
    real_replace, real_write = os.replace, triton.write_bytes

    def replace(src, dst):  # type: ignore[no-untyped-def]
        if Path(src).name.endswith(".tmp") and Path(dst) == repo / "cifar10":
            raise OSError(errno.ENOSPC, "No space left on device", str(dst))
        return real_replace(src, dst)

    def write_bytes(target, data):  # type: ignore[no-untyped-def]
        real_write(target, data[:10])
        raise OSError(errno.ENOSPC, "No space left on device", str(target))

    if failing == "rename":
        monkeypatch.setattr(triton.os, "replace", replace)
    else:
        monkeypatch.setattr(triton, "write_bytes", write_bytes)
    with pytest.raises(ConfigError, match="No space left on device"):
        write_repository(repo, valid, **QUIET)
    monkeypatch.undo()
    assert (repo / "cifar10" / "config.pbtxt").read_text() == before
    assert _beside(repo) == [] and sorted(p.name for p in repo.iterdir()) == ["cifar10"]


def test_leftovers_of_a_killed_export_are_removed_only_when_ours(
    valid: Path, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    dead = int(done.stdout)  # a process that has exited
    ours, theirs = tmp_path / f".repo.cifar10.{dead}.old", tmp_path / f".repo.cifar10.{dead}.tmp"
    for folder in (ours, theirs):
        (folder / "1").mkdir(parents=True)
    (ours / MARKER).write_text("")
    link = tmp_path / f".repo.cifar10.{dead + 1}.old"
    link.symlink_to(tmp_path / "models", target_is_directory=True)
    assert remove_leftovers(repo, "cifar10") == [ours]
    assert theirs.is_dir() and link.is_symlink() and (tmp_path / "models").is_dir()


# --- config.pbtxt cannot be injected -----------------------------------------------------


@pytest.mark.parametrize("which", ["input_name", "output_name"])
@pytest.mark.parametrize("bad", ["x\ny", "x\r\nmax_batch_size: 1", "x\x00", "x\u2028y"])
def test_control_characters_in_tensor_names_are_refused(
    tmp_path: Path, which: str, bad: str
) -> None:
    model = _save(tmp_path, "model.onnx", **{which: bad})
    with pytest.raises(ModelError, match="control character") as caught:
        write_repository(tmp_path / "repo", model, **QUIET)
    assert "\n" not in str(caught.value) and not (tmp_path / "repo" / "cifar10").exists()


@pytest.mark.parametrize("name", ['say "hi"', "back\\slash", "üñí_名前", "it's"])
def test_quotes_backslashes_and_unicode_in_names_round_trip(tmp_path: Path, name: str) -> None:
    model = _save(tmp_path, "model.onnx", input_name=name, output_name=name + "_out")
    (folder,) = write_repository(tmp_path / "repo", model, **QUIET)
    config = _parse(folder)
    assert config.input[0].name == name and config.output[0].name == name + "_out"


@pytest.mark.parametrize(
    "version, filename",
    [
        ("v1\nmax_batch_size: 1", "model.onnx"),
        ("v1\r\ninstance_group [ { count: 9 } ]", "model.onnx"),
        ("v1", "evil\nmax_batch_size: 2\n.onnx"),
    ],
)
def test_the_comment_line_cannot_carry_fields(tmp_path: Path, version: str, filename: str) -> None:
    model = _save(tmp_path, filename, metadata={"model_version": version})
    (folder,) = write_repository(tmp_path / "repo", model, **QUIET)
    config = _parse(folder)  # a duplicated field would fail to parse; check the values too
    assert config.max_batch_size == triton.TRITON_MAX_BATCH_SIZE
    assert [g.count for g in config.instance_group] == [1]
    comment = (folder / "config.pbtxt").read_text().splitlines()[0]
    assert comment.startswith("# Written by cifar-export") and "\\n" in comment


# --- the command line -------------------------------------------------------------------


def test_cli_refuses_a_symlinked_twin_before_any_work(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "model.keras").write_bytes(b"")  # never read: the flag fails first
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "cifar10_int8").symlink_to(tmp_path, target_is_directory=True)
    out = tmp_path / "model.onnx"
    result = cli(out, "--model", tmp_path / "model.keras", "--triton-repository", repo)
    assert result.exit_code == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(repo / "cifar10_int8") in errors[0]
    assert "Traceback" not in result.stderr and not out.exists()
    assert (repo / "cifar10_int8").is_symlink()
