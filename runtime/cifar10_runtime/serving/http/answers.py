"""HTTP error answers made by the server itself (not the app), rewritten as JSON.

uvicorn's parsers answer bytes that are not HTTP with a plain-text 400 (and an app that
fails before answering with a plain-text 500), written straight to the transport.
connections.py spots such an answer (a 4xx/5xx status line written while the app is not
sending) and sends this module's rewrite instead: same status, JSON `{"error": ...}`
body, `Connection: close`. Any framing of the original (Content-Length, chunked, close)
is understood; no parser's internals are.
"""

from __future__ import annotations

import json


def is_error_answer(data: bytes) -> bool:
    # "HTTP/1.1 400 ..." or "HTTP/1.0 503 ...": a status line with a 4xx/5xx code.
    return data[:5] == b"HTTP/" and data[9:10] in (b"4", b"5")


def complete(raw: bytes) -> bool:
    head, found, body = raw.partition(b"\r\n\r\n")
    if not found:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return value.strip().isdigit() and len(body) >= int(value)
    return False


def json_error_answer(raw: bytes) -> bytes:
    """A server-made HTTP error answer (any framing) rewritten with a JSON {"error"} body."""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    version, _, rest = lines[0].partition(b" ")
    code, _, reason = rest.partition(b" ")
    kept, chunked = [], False
    for line in lines[1:]:
        name = line.split(b":", 1)[0].strip().lower()
        if name == b"transfer-encoding":
            chunked = b"chunked" in line.lower()
        if name not in (b"content-type", b"content-length", b"connection", b"transfer-encoding"):
            kept.append(line)
    text = (_unchunk(body) if chunked else body).decode("latin-1").strip()
    text = text or reason.decode("latin-1") or "error"
    if code == b"400":
        message = (
            f"the request is not valid HTTP/1.1 ({text.rstrip('.')}). Send a request line, "
            "headers and a blank line, as RFC 9112 says."
        )
    elif code == b"500":
        message = "internal server error; see the server log."
    else:
        message = text
    payload = json.dumps({"error": message}).encode()
    kept += [
        b"content-type: application/json",
        b"content-length: " + str(len(payload)).encode(),
        b"connection: close",
    ]
    return b"\r\n".join([version + b" " + code + b" " + reason, *kept]) + b"\r\n\r\n" + payload


def _unchunk(body: bytes) -> bytes:
    out, rest = [], body
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        try:
            size = int(size_line.split(b";")[0], 16)
        except ValueError:
            break
        if size == 0:
            break
        out.append(rest[:size])
        rest = rest[size + 2 :]
    return b"".join(out)
