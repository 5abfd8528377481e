"""cifar10_runtime.serving.http.bodies: where a multipart body really ends (RFC 2046 5.1.1)."""

from __future__ import annotations

import pytest

from cifar10_runtime.serving.http.bodies import _Epilogue

PART = b'--B\r\nContent-Disposition: form-data; name="f"; filename="a"\r\n\r\n'


def _feed(body: bytes, size: int) -> _Epilogue:
    scan = _Epilogue(b"B")
    for start in range(0, len(body), size):
        scan.feed(body[start : start + size])
    return scan


@pytest.mark.parametrize("size", [1, 2, 3, 7, 10_000])  # chunk borders anywhere
@pytest.mark.parametrize(
    ("body", "closed", "parts_after_end"),
    [
        (PART + b"x\r\n--B--\r\n", True, False),
        (PART + b"x\r\n--B--", True, False),
        (PART + b"x--B--y\r\n--B--\r\n", True, False),  # not at a part boundary: data
        (PART + b"x--B--y", False, False),
        (PART + b"x\r\n--B--\r\n" + PART + b"y\r\n--B--\r\n", True, True),
        (PART + b"x\r\n--B--\r\nepilogue text\r\n", True, False),
        (b"--B--\r\n", True, False),  # the first delimiter needs no CRLF before it
    ],
)
def test_the_closing_delimiter_counts_at_a_part_boundary_only(
    body: bytes, closed: bool, parts_after_end: bool, size: int
) -> None:
    scan = _feed(body, size)
    assert (scan.closed, scan.parts_after_end) == (closed, parts_after_end)
