"""Adversarial cases against a real `cifar-serve` on 127.0.0.1.

Each case is sent the way the attack sent it (raw sockets where the bytes matter), and
after each the server must still be ready; at the end its log holds no traceback. Waits
are events (an answer, the server closing) with generous bounds; nothing is timed.
"""

from __future__ import annotations

import io
import json
import os
import socket
import stat
import struct
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families
from runtime_samples import encode
from serve_process import ServeProcess
from serve_samples import sample_pngs

from cifar10_runtime.images import FORMATS_TEXT

pytestmark = pytest.mark.slow
BOUND = 30.0
FLAGS = ("--threads", "1", "--max-body-mb", "2")
GS_STAND_IN = """#!/bin/sh
echo "$@" >> "{marker}"
case "$1" in --version) echo 10.0; exit 0;; esac
exit 1
"""


@pytest.fixture(scope="module")
def gs_marker(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A stand-in `gs` first on the server's PATH; it appends every call to the marker file."""
    folder = tmp_path_factory.mktemp("fake_gs")
    marker = folder / "gs-called"
    script = folder / "gs"
    script.write_text(GS_STAND_IN.format(marker=marker))
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return marker


@pytest.fixture(scope="module")
def server(
    valid_model: Path, gs_marker: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServeProcess]:
    env = {**os.environ, "PATH": f"{gs_marker.parent}{os.pathsep}{os.environ['PATH']}"}
    log = tmp_path_factory.mktemp("adversarial") / "serve.log"
    srv = ServeProcess(valid_model, log, *FLAGS, env=env)
    yield srv
    srv.stop()
    text = srv.text()
    assert "Traceback" not in text and "Exception in ASGI application" not in text, text[-3000:]


def _assert_ready(server: ServeProcess) -> None:
    assert httpx.get(f"{server.url}/readyz", timeout=BOUND).status_code == 200


def _one_line_error(response: httpx.Response, status: int, *fragments: str) -> str:
    assert response.status_code == status, response.text[:500]
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert "\n" not in error and "\r" not in error, error
    for fragment in fragments:
        assert fragment in error, error
    return error


def _read_response(sock: socket.socket, buffer: bytearray) -> tuple[int, bytes]:
    """One HTTP/1.1 response (status, body) from a keep-alive socket."""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed after {bytes(buffer)[:200]!r}"
        buffer += chunk
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    fields = dict(line.split(":", 1) for line in lines[1:])
    length = int({k.lower(): v for k, v in fields.items()}.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed inside a body"
        rest += chunk
    buffer[:] = rest[length:]
    return status, rest[:length]


def _metrics(server: ServeProcess) -> tuple[int, int]:
    """(size in bytes of /metrics, number of series of cifar_http_requests_total)."""
    text = httpx.get(f"{server.url}/metrics", timeout=BOUND).text
    series = sum(
        len(family.samples)
        for family in text_string_to_metric_families(text)
        if family.name == "cifar_http_requests"
    )
    return len(text.encode()), series


# --- 1. metric labels -----------------------------------------------------------------------
def _junk_methods(server: ServeProcess, start: int, count: int) -> None:
    """`count` requests with distinct junk methods on one keep-alive connection."""
    buffer = bytearray()
    with socket.create_connection(("127.0.0.1", server.port), timeout=BOUND) as sock:
        for i in range(start, start + count):
            sock.sendall(b"Q%05dZZZ /healthz HTTP/1.1\r\nHost: x\r\n\r\n" % i)
            assert _read_response(sock, buffer)[0] == 405
            sock.sendall(b"get /v2/models/x%d/ready HTTP/1.1\r\nHost: x\r\n\r\n" % i)
            assert _read_response(sock, buffer)[0] == 405


@pytest.fixture(scope="module")
def h11_server(
    valid_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServeProcess]:
    """The pure-Python parser: h11 hands any token as a method to the app (httptools refuses
    unknown methods itself), so this is where client-chosen methods reach the metrics."""
    log = tmp_path_factory.mktemp("adversarial-h11") / "serve.log"
    srv = ServeProcess(valid_model, log, *FLAGS, "--http", "h11")
    yield srv
    srv.stop()
    assert "Traceback" not in srv.text(), srv.text()[-3000:]


def test_the_default_parser_answers_a_junk_method_with_json_400(server: ServeProcess) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=BOUND) as sock:
        sock.sendall(b"Q00001ZZZ /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        status, body = _read_response(sock, bytearray())
    assert status == 400 and "error" in json.loads(body), body
    assert "Q00001ZZZ" not in httpx.get(f"{server.url}/metrics", timeout=BOUND).text
    _assert_ready(server)


def test_junk_methods_do_not_grow_the_metrics(h11_server: ServeProcess) -> None:
    server = h11_server
    _junk_methods(server, 0, 1)  # every series these requests can make now exists
    _metrics(server)
    size_before, series_before = _metrics(server)
    _junk_methods(server, 1, 300)
    size_after, series_after = _metrics(server)
    assert series_after == series_before
    assert size_after - size_before < 200, (size_before, size_after)  # counters' digits
    text = httpx.get(f"{server.url}/metrics", timeout=BOUND).text
    assert 'method="other"' in text and "Q00001ZZZ" not in text and 'method="get"' not in text
    assert 'endpoint="/v2/models/{name}/ready"' in text and "/v2/models/x1/" not in text
    _assert_ready(server)


# --- 2. image formats -----------------------------------------------------------------------
def _psd() -> bytes:
    header = b"8BPS" + struct.pack(">H6xHIIHH", 1, 3, 32, 32, 8, 3)
    return header + struct.pack(">III", 0, 0, 0) + struct.pack(">H", 0) + b"\x80" * 3072


def _refused_bodies() -> dict[str, bytes]:
    image = Image.new("RGB", (32, 32), (200, 10, 10))
    bodies = {fmt: encode(image, fmt) for fmt in ("EPS", "ICNS", "QOI", "DDS", "TGA", "PCX")}
    bodies["PSD"] = _psd()
    for fmt, body in bodies.items():  # every one is a file this Pillow would decode
        assert Image.open(io.BytesIO(body)).format == fmt
    return bodies


def test_only_the_listed_formats_are_decoded_and_gs_never_runs(
    server: ServeProcess, gs_marker: Path
) -> None:
    for fmt, body in _refused_bodies().items():
        for media in ("image/png", "application/octet-stream"):
            response = httpx.post(
                f"{server.url}/v1/predict", content=body, headers={"Content-Type": media}
            )
            error = _one_line_error(response, 400, f"Use {FORMATS_TEXT}.")
            assert "/tmp" not in error and "gs " not in error and "-sDEVICE" not in error, fmt
        files = {"file": (f"x.{fmt.lower()}", body, "image/png")}
        response = httpx.post(f"{server.url}/v1/predict", files=files)
        _one_line_error(response, 400, f"x.{fmt.lower()}:", FORMATS_TEXT)
    assert not gs_marker.exists(), gs_marker.read_text()
    ok = httpx.post(
        f"{server.url}/v1/predict",
        content=sample_pngs(1)[0],
        headers={"Content-Type": "image/png"},
    )
    assert ok.status_code == 200
    _assert_ready(server)


# --- 5. client input that used to be a 500 -------------------------------------------------
def _raw_exchange(server: ServeProcess, request: bytes) -> tuple[int, bytes]:
    buffer = bytearray()
    with socket.create_connection(("127.0.0.1", server.port), timeout=BOUND) as sock:
        sock.sendall(request)
        return _read_response(sock, buffer)


def test_deep_json_and_odd_header_lengths_are_400(server: ServeProcess) -> None:
    infer = f"{server.url}/v2/models/cifar10/infer"
    deep = b"[" * 100_000 + b"]" * 100_000
    for body in (deep, b'{"inputs": ' + deep + b"}", b'{"a":' * 50_000 + b"1" + b"}" * 50_000):
        response = httpx.post(infer, content=body, timeout=BOUND)
        _one_line_error(response, 400)  # too big outside tensor data, or nested too deep
    for body in (b"[" * 5000 + b"]" * 5000, b'{"a":' * 5000 + b"1" + b"}" * 5000):
        response = httpx.post(infer, content=body, timeout=BOUND)  # parsed on the loop
        _one_line_error(response, 400, "nested too deeply")
    head = b'{"inputs": []}'
    for value in ("²".encode("latin-1"), b"9" * 5000, b"\xd9\xa3", b"1_0", b"-1", b" "):
        request = (
            b"POST /v2/models/cifar10/infer HTTP/1.1\r\nHost: x\r\n"
            b"Inference-Header-Content-Length: " + value + b"\r\n"
            b"Content-Length: %d\r\n\r\n" % len(head) + head
        )
        status, body = _raw_exchange(server, request)
        assert status == 400, (value[:20], body[:300])
        assert b"Inference-Header-Content-Length" in body
    _assert_ready(server)


# --- 6. multipart closing delimiter -----------------------------------------------------------
def _part(name: str, content: bytes, boundary: bytes = b"BOUND") -> bytes:
    head = f'Content-Disposition: form-data; name="f"; filename="{name}"\r\n'
    return b"--" + boundary + b"\r\n" + head.encode() + b"\r\n" + content + b"\r\n"


def test_a_closing_boundary_inside_a_file_does_not_hide_a_cut_body(server: ServeProcess) -> None:
    png_a, png_b = sample_pngs(2)
    url = f"{server.url}/v1/predict"
    headers = {"Content-Type": "multipart/form-data; boundary=BOUND"}
    tricky = png_a + b"--BOUND--"  # the closing delimiter's text, not at a part boundary
    cut = _part("a.png", tricky) + _part("b.png", png_b)[:-40]
    _one_line_error(httpx.post(url, content=cut, headers=headers), 400, "closing boundary")
    # A delimiter at a part boundary in the first file ends the body early: the parts after
    # it would be dropped, so that is refused too, never an answer with fewer predictions.
    early = _part("a.png", png_a + b"\r\n--BOUND--\r\n") + _part("b.png", png_b) + b"--BOUND--\r\n"
    _one_line_error(
        httpx.post(url, content=early, headers=headers), 400, "parts follow the closing boundary"
    )
    whole = _part("a.png", png_a) + _part("b.png", png_b) + b"--BOUND--\r\n"
    response = httpx.post(url, content=whole, headers=headers)
    assert response.status_code == 200
    assert [p["file"] for p in response.json()["predictions"]] == ["a.png", "b.png"]
    _assert_ready(server)


# --- 7. decode budget -------------------------------------------------------------------------
def jpeg_declaring(width: int, height: int) -> bytes:
    """A tiny JPEG whose frame header claims width x height (the scan data is 8x8's)."""
    data = bytearray(encode(Image.new("RGB", (8, 8), (90, 120, 200)), "JPEG", quality=50))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    assert Image.open(io.BytesIO(bytes(data))).size == (width, height)
    return bytes(data)


def test_many_small_jpegs_declaring_8000x8000_hit_the_request_budget(
    server: ServeProcess,
) -> None:
    jpeg = jpeg_declaring(8000, 8000)
    body = b"".join(_part(f"{i}.jpg", jpeg) for i in range(256)) + b"--BOUND--\r\n"
    assert len(body) < 2 * 2**20
    headers = {"Content-Type": "multipart/form-data; boundary=BOUND"}
    response = httpx.post(f"{server.url}/v1/predict", content=body, headers=headers)
    _one_line_error(response, 413, "--max-request-pixels", "decoded pixels")
    _assert_ready(server)


# --- 3. model versions a header cannot carry as they are ------------------------------------
@pytest.mark.parametrize("fixture", ["version_unicode", "version_crlf"])
def test_any_model_version_serves_and_readyz_tells_the_truth(
    models_dir: Path, tmp_path: Path, fixture: str
) -> None:
    model = models_dir / f"{fixture}.onnx"
    srv = ServeProcess(model, tmp_path / "serve.log", "--threads", "1")
    try:
        version = httpx.get(f"{srv.url}/v1/metadata", timeout=BOUND).json()["model_version"]
        assert version in ("运行1-2fc6665b", "tiny\r\nX-Injected: 1")
        header = quote(version, safe="".join(chr(c) for c in range(0x21, 0x7F) if c != 0x25))
        ready = httpx.get(f"{srv.url}/readyz", timeout=BOUND)
        assert ready.status_code == 200 and ready.json()["model_version"] == version
        assert ready.headers["x-model-version"] == header
        png = sample_pngs(1)[0]
        predicted = httpx.post(
            f"{srv.url}/v1/predict", content=png, headers={"Content-Type": "image/png"}
        )
        assert predicted.status_code == 200, predicted.text
        assert predicted.headers["x-model-version"] == header
        assert "x-injected" not in predicted.headers
        assert predicted.json()["model_version"] == version
        meta = httpx.get(f"{srv.url}/v1/metadata", timeout=BOUND)
        assert meta.status_code == 200 and meta.headers["x-model-version"] == header
        v2 = httpx.get(f"{srv.url}/v2/models/cifar10", timeout=BOUND).json()
        assert v2["versions"] == [version]
        versioned = f"{srv.url}/v2/models/cifar10/versions/{quote(version, safe='')}/ready"
        assert httpx.get(versioned, timeout=BOUND).status_code == 200
        text = httpx.get(f"{srv.url}/metrics", timeout=BOUND).text
        list(text_string_to_metric_families(text))  # still parses
    finally:
        srv.stop()
    log = srv.text()
    assert "Traceback" not in log and "Invalid HTTP" not in log, log[-3000:]
