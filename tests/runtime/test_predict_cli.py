"""`cifar-predict`: folders, a corrupt file among good ones, JSON lines, exit codes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from runtime_samples import broken_files, odd_images

from cifar10_runtime import Predictor
from cifar10_runtime.cli.predict import main


@pytest.fixture()
def folder(subset_pngs: Path, tmp_path: Path) -> Path:
    """Ten real images in two levels, one corrupt PNG, and files that are not images."""
    root = tmp_path / "photos"
    (root / "sub").mkdir(parents=True)
    for i, png in enumerate(sorted(subset_pngs.glob("*.png"))[:10]):
        shutil.copy(png, root / ("sub" if i >= 6 else "") / f"img{i}.png")
    (root / "corrupt.png").write_bytes(broken_files()["truncated.png"])
    (root / "notes.txt").write_text("not an image, and not picked up")
    (root / ".hidden.png").write_bytes(b"skipped: hidden")
    return root


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_json_lines_for_a_folder_with_one_corrupt_file(
    folder: Path, valid_model: Path, predictor: Predictor
) -> None:
    code, out, err = _run(str(valid_model), str(folder), "--json", "--top-k", "3")
    assert code == 5
    lines = [json.loads(line) for line in out.splitlines()]
    paths = [line["path"] for line in lines]
    assert len(lines) == 11 and paths == sorted(paths)  # walked in sorted order
    assert not any("notes.txt" in p or ".hidden" in p for p in paths)
    errors = [line for line in lines if "error" in line]
    assert [Path(e["path"]).name for e in errors] == ["corrupt.png"]
    assert set(errors[0]) == {"path", "error"} and "truncated" in errors[0]["error"]
    for line in lines:
        if "error" in line:
            continue
        assert set(line) == {"path", "label", "index", "probability", "top_k"}
        expected = predictor.predict(line["path"], top_k=3).to_dict()
        assert {k: line[k] for k in expected} == expected  # floats round-trip exactly
    assert "1 of 11 inputs failed" in err
    assert "Traceback" not in err


def test_plain_table_and_errors_on_stderr(folder: Path, valid_model: Path) -> None:
    code, out, err = _run(str(valid_model), str(folder), "-k", "2", "--batch-size", "3")
    assert code == 5
    header, rule, *rows = out.splitlines()
    assert header.split() == ["path", "label", "prob", "top-2"]
    assert set(rule) == {"-"}
    assert len(rows) == 10 and all(row.startswith(str(folder)) for row in rows)
    assert "corrupt.png" not in out
    assert f"error: {folder / 'corrupt.png'}: broken or truncated image" in err


def test_good_inputs_exit_zero_and_files_can_be_named(
    subset_pngs: Path, valid_model: Path, tmp_path: Path
) -> None:
    odd = tmp_path / "odd"
    odd.mkdir()
    for name, data in odd_images().items():
        (odd / name).write_bytes(data)
    named = tmp_path / "image.data"  # an explicit file is tried whatever its extension
    shutil.copy(subset_pngs / "000.png", named)
    code, out, err = _run(str(valid_model), str(odd), str(named), "--json")
    assert code == 0, err
    assert len(out.splitlines()) == len(odd_images()) + 1
    assert err == ""


def test_missing_inputs_and_empty_folders_are_reported(
    valid_model: Path, subset_pngs: Path, tmp_path: Path
) -> None:
    (tmp_path / "empty").mkdir()
    code, out, err = _run(
        str(valid_model),
        str(subset_pngs / "001.png"),
        str(tmp_path / "nope"),
        str(tmp_path / "empty"),
        "--json",
    )
    assert code == 5
    lines = [json.loads(line) for line in out.splitlines()]
    assert "label" in lines[0]
    assert "no such file or folder" in lines[1]["error"]
    assert "folder has no image files" in lines[2]["error"]


def test_model_errors_are_one_line_without_traceback(models_dir: Path, folder: Path) -> None:
    code, _, err = _run(str(models_dir / "absent.onnx"), str(folder))
    assert code == 4
    assert err.startswith("error: model file not found") and err.count("\n") == 1
    code, _, err = _run(str(models_dir / "wrong_shape.onnx"), str(folder))
    assert code == 4 and "uint8 [N,28,28,1]" in err and "Traceback" not in err


def test_bad_flags_are_usage_errors(valid_model: Path, folder: Path) -> None:
    code, _, err = _run(str(valid_model), str(folder), "--top-k", "11")
    assert code == 2 and "top-k" in err
    code, _, err = _run(str(valid_model))
    assert code == 2 and "IMAGE_OR_DIR" in err


def test_progress_bar_only_when_asked_or_on_a_terminal(folder: Path, valid_model: Path) -> None:
    # CliRunner is not a terminal: asked for, the bar is only its label, written once.
    code, _, err = _run(str(valid_model), str(folder), "--json", "--progress")
    assert code == 5 and err.count("classifying 11 images") == 1 and "[#" not in err
    code, _, err = _run(str(valid_model), str(folder), "--json")
    assert "classifying" not in err


def test_progress_bar_is_drawn_on_a_terminal(folder: Path, valid_model: Path) -> None:
    import pty

    code = (
        "import sys; from cifar10_runtime.cli.predict import main; "
        "sys.argv[0] = 'cifar-predict'; main()"
    )
    leader, follower = pty.openpty()
    with subprocess.Popen(
        [
            sys.executable,
            "-c",
            code,
            str(valid_model),
            str(folder),
            "--batch-size",
            "4",
            "--progress",
        ],
        stdout=subprocess.PIPE,
        stderr=follower,
    ) as proc:
        os.close(follower)
        out = proc.stdout.read().decode() if proc.stdout else ""
        drawn = b""
        while True:  # until the child has exited and the terminal reports EOF (EIO on Linux)
            try:
                block = os.read(leader, 4096)
            except OSError:
                break
            if not block:
                break
            drawn += block
    os.close(leader)
    assert proc.returncode == 5 and len(out.splitlines()) == 2 + 10
    text = drawn.decode(errors="replace")
    assert "11/11" in text and "#" in text and "classifying 11 images" in text


@pytest.mark.slow
def test_installed_console_script(folder: Path, valid_model: Path) -> None:
    script = Path(sys.executable).with_name("cifar-predict")
    if not script.exists():
        pytest.skip(f"cifar-predict is not installed next to {sys.executable}")
    done = subprocess.run(
        [str(script), str(valid_model), str(folder), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 5
    assert len(done.stdout.splitlines()) == 11
    assert done.stderr.strip() == "1 of 11 inputs failed."
