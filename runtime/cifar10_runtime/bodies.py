"""Reading request bodies within limits: size (413), multipart well-formedness (400).

The size limit is checked on Content-Length before anything is read, and counted while
streaming so a chunked body cannot pass it. Every 413 carries `Connection: close`, so the
server drops the connection instead of reading and discarding the rest of the upload.
A multipart body must end with its closing boundary: a body cut short (in the last file
or just before the end) is a 400, never an answer with one prediction fewer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

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
        if not declared.strip().isdigit():
            raise HTTPException(400, f"invalid Content-Length. Received: {declared!r}.", CLOSE)
        if int(declared) > self.max_body:
            raise BodyTooLarge(self.max_body, f"Content-Length {declared}")

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
        closing = _closing_delimiter(request.headers.get("content-type", ""))
        seen = _Tail(closing)

        async def watched() -> AsyncIterator[bytes]:
            async for chunk in self.stream(request):
                seen.feed(chunk)
                yield chunk

        parser = MultiPartParser(request.headers, watched(), max_files=MAX_FILES, max_fields=100)
        try:
            form = await parser.parse()
        except MultiPartException as exc:
            raise HTTPException(400, f"malformed multipart body: {exc.message}", CLOSE) from None
        try:
            if not seen.found:
                raise HTTPException(
                    400,
                    "malformed multipart body: the closing boundary is missing, so the body "
                    "was cut short and its last file may be incomplete. Send the whole body.",
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


def _closing_delimiter(content_type: str) -> bytes:
    for param in content_type.split(";")[1:]:
        key, _, value = param.strip().partition("=")
        if key.strip().lower() == "boundary":
            return b"--" + value.strip().strip('"').encode("latin-1") + b"--"
    return b""  # no boundary: the parser itself refuses the body


class _Tail:
    """Whether `needle` appeared in the stream, across chunk borders, keeping O(1) memory."""

    def __init__(self, needle: bytes) -> None:
        self.needle = needle
        self.tail = b""
        self.found = not needle

    def feed(self, chunk: bytes) -> None:
        if self.found:
            return
        window = self.tail + chunk
        if self.needle in window:
            self.found = True
        self.tail = window[-(len(self.needle) - 1) :] if len(self.needle) > 1 else b""
