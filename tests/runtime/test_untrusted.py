"""cifar10_runtime.untrusted: strict decimals, model versions, server paths in metadata."""

from __future__ import annotations

from urllib.parse import unquote

import pytest

from cifar10_runtime.errors import ConfigError
from cifar10_runtime.untrusted import (
    check_model_version,
    parse_decimal,
    version_header,
    without_server_paths,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", 0),
        (" 42 ", 42),
        (b"1234", 1234),
        ("9" * 18, int("9" * 18)),
        ("9" * 19, None),
        ("9" * 5000, None),
        ("²", None),
        ("٣", None),
        ("1_0", None),
        ("-1", None),
        ("+1", None),
        ("", None),
        ("0x10", None),
        (None, None),
    ],
)
def test_parse_decimal_takes_ascii_digits_only(
    text: str | bytes | None, expected: int | None
) -> None:
    assert parse_decimal(text) == expected


@pytest.mark.parametrize(
    "version", ["tiny-1.0", "sha256:0123456789ab", "运行1-2fc6665b", "v 1 (50%)", "run+int8"]
)
def test_any_printable_version_round_trips_through_its_header(version: str) -> None:
    header = version_header(version)
    header.encode("ascii")  # always sendable
    assert all(0x21 <= ord(c) < 0x7F for c in header)
    assert unquote(header) == version
    assert check_model_version(version) == version


def test_ascii_versions_go_out_unchanged() -> None:
    assert version_header("tiny-1.0") == "tiny-1.0"
    assert version_header("运行1-2fc6665b") == "%E8%BF%90%E8%A1%8C1-2fc6665b"
    assert version_header("a\r\nX: 1") == "a%0D%0AX:%201"


@pytest.mark.parametrize(
    ("version", "needle"),
    [
        ("a\r\nX-Injected: 1", "control character '\\r'"),
        ("a\nb", "control character '\\n'"),
        ("a\tb", "control character '\\t'"),
        ("a\x00", "control character '\\x00'"),
        ("a\u2028b", "control character"),
        ("a\x85b", "control character"),
        ("  ", "it is empty"),
        ("x" * 129, "129 characters long"),
    ],
)
def test_versions_with_control_characters_are_refused(version: str, needle: str) -> None:
    with pytest.raises(ConfigError) as caught:
        check_model_version(version)
    message = str(caught.value)
    assert message.startswith("--model-version cannot be a model version: ")
    assert needle in message and f"Received: {version!r}." in message
    assert "\n" not in message and "\r" not in message


def test_server_paths_are_cut_to_their_names() -> None:
    metadata = {
        "class_names": ["/bin/sh", "cat"],  # names chosen by people stay as they are
        "model_version": "/v1",
        "metrics": {"data": "/srv/data/cifar-10-subset/", "split": "test", "n": 5},
        "list": ["C:\\data\\set", "\\\\host\\share\\cifar", "file:///x/y.npz", "~/z", "a/b"],
        "note": "accuracy not measured",
        "root": "/",
    }
    assert without_server_paths(metadata) == {
        "class_names": ["/bin/sh", "cat"],
        "model_version": "/v1",
        "metrics": {"data": "cifar-10-subset", "split": "test", "n": 5},
        "list": ["set", "cifar", "y.npz", "z", "a/b"],
        "note": "accuracy not measured",
        "root": "/",
    }


def test_stale_temporaries_with_odd_pid_fields_are_removed(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from cifar10_runtime.files import remove_stale_temps

    target = tmp_path / "model.onnx"
    odd = [".model.onnx.²1.abc.onnx", ".model.onnx.99999999999.abc.onnx", ".model.onnx.٣.x.onnx"]
    for name in odd:
        (tmp_path / name).write_bytes(b"half")
    removed = remove_stale_temps(target)
    assert sorted(p.name for p in removed) == sorted(odd)
