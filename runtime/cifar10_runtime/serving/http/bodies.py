"""Reading request bodies within limits: size (413), multipart well-formedness (400).

The size limit is checked on Content-Length before anything is read, and counted while
streaming so a chunked body cannot pass it. Every 413 carries `Connection: close`, so the
server drops the connection instead of reading and discarding the rest of the upload.
A multipart body must end with its closing delimiter, and it counts only where the
multipart parser itself sees it, at a part boundary (`CRLF--BOUNDARY--`, RFC 2046 5.1.1):
the same bytes inside a file are data. A body cut short (in the last file or just before
the end) is a 400, and so is one with parts after the closing delimiter (a file whose
content holds the delimiter ends the body early); never an answer with a file dropped.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException, MultiPartParser, parse_options_header
from starlette.requests import Request

from cifar10_runtime.untrusted import parse_decimal

CLOSE = {"Connection": "close"}
MAX_FILES = 256


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int, received: str) -> None:
        super().__init__(
            413,
            f"request body is larger than the limit of {limit} bytes "
            f"({limit / 2**20:g} MB). Received: {received}. Send a smaller body "
            "(the model only needs 32x32 images) or raise --max-body-mb.",
            headers=CLOSE,
        )


class BodyReader:
    """Reads one request's body under `max_body` bytes."""

    def __init__(self, max_body: int) -> None:
        self.max_body = max_body

    def check_length(self, request: Request) -> None:
        declared = request.headers.get("content-length")
        if declared is None:
            return
        length = parse_decimal(declared)
        if length is None:
            raise HTTPException(400, f"invalid Content-Length. Received: {declared[:40]!r}.", CLOSE)
        if length > self.max_body:
            raise BodyTooLarge(self.max_body, f"Content-Length {length}")

    async def stream(self, request: Request) -> AsyncIterator[bytes]:
        self.check_length(request)
        seen = 0
        async for chunk in request.stream():
            seen += len(chunk)
            if seen > self.max_body:
                raise BodyTooLarge(self.max_body, f"more than {self.max_body} bytes streamed")
            yield chunk

    async def read(self, request: Request) -> bytes:
        return b"".join([chunk async for chunk in self.stream(request)])

    async def read_files(self, request: Request) -> list[tuple[str, bytes]]:
        """The file parts of a multipart/form-data body, as (filename or field, content)."""
        epilogue = _Epilogue(_boundary(request.headers.get("content-type", "")))

        async def watched() -> AsyncIterator[bytes]:
            async for chunk in self.stream(request):
                epilogue.feed(chunk)
                yield chunk

        parser = _EndAwareParser(request.headers, watched(), max_files=MAX_FILES, max_fields=100)
        try:
            form = await parser.parse()
        except MultiPartException as exc:
            raise HTTPException(400, f"malformed multipart body: {exc.message}", CLOSE) from None
        try:
            if not parser.ended:
                raise HTTPException(
                    400,
                    "malformed multipart body: the closing boundary is missing, so the body "
                    "was cut short and its last file may be incomplete. Send the whole body.",
                    CLOSE,
                )
            if epilogue.parts_after_end:
                raise HTTPException(
                    400,
                    "malformed multipart body: parts follow the closing boundary (a file's "
                    "content holds the boundary line?), so files would be dropped. Send "
                    "each file once, with a boundary that does not occur in any file.",
                    CLOSE,
                )
            files = [(k, v) for k, v in form.multi_items() if isinstance(v, UploadFile)]
            if not files:
                raise HTTPException(
                    400, "the multipart body has no file part. Send images as file fields."
                )
            return [(upload.filename or key, await upload.read()) for key, upload in files]
        finally:
            await form.close()


class _EndAwareParser(MultiPartParser):
    """Starlette's parser, recording python-multipart's end callback: it fires only on the
    closing delimiter at a part boundary, exactly where the parser stops taking parts."""

    ended = False

    def on_end(self) -> None:
        self.ended = True


def _boundary(content_type: str) -> bytes:
    """The boundary parameter, parsed as the multipart parser parses it (b"" if none)."""
    _, params = parse_options_header(content_type)
    value = params.get(b"boundary", b"")
    return value if isinstance(value, bytes) else value.encode("latin-1")


class _Epilogue:
    """Whether a delimiter (`CRLF--BOUNDARY`) follows the first closing delimiter
    (`CRLF--BOUNDARY--`) in the stream: parts the parser skips as epilogue. Reads the
    stream as the parser does, as if preceded by CRLF (the first delimiter may open the
    body without one), across chunk borders, in O(1) memory."""

    def __init__(self, boundary: bytes) -> None:
        self.delimiter = b"\r\n--" + boundary
        self.closing = self.delimiter + b"--"
        self.tail = b"\r\n"
        self.closed = not boundary  # no boundary: the parser itself refuses the body
        self.parts_after_end = False

    def feed(self, chunk: bytes) -> None:
        if self.parts_after_end or not self.delimiter[4:]:
            return
        window = self.tail + chunk
        if not self.closed:
            at = window.find(self.closing)
            if at < 0:
                self.tail = window[-(len(self.closing) - 1) :]
                return
            self.closed = True
            window = window[at + len(self.closing) :]
        if self.delimiter in window:
            self.parts_after_end = True
        self.tail = window[-(len(self.delimiter) - 1) :]
