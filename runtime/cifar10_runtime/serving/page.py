"""The try-it page at `GET /`: choose, drop or paste an image and see the model's top 5.

The page (static/index.html, app.js, style.css, favicon.svg) is package data, read once
when the routes are built; it uses only the API beside it (`/v1/metadata`, and
`/v1/predict?include_input=1`, which adds the decoded 32x32 RGB image the model saw to
each prediction). Its Content-Security-Policy allows this origin only, so the page never
fetches from another host and works offline. `cifar-serve --no-ui` leaves these routes out.
"""

from __future__ import annotations

import base64
from importlib import resources
from typing import Any

import numpy as np
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

INCLUDE_INPUT = "include_input"
_TRUE = {"1", "true", "yes"}
# (route path, file in static/, media type)
_FILES = [
    ("/", "index.html", "text/html; charset=utf-8"),
    ("/ui/app.js", "app.js", "text/javascript; charset=utf-8"),
    ("/ui/style.css", "style.css", "text/css; charset=utf-8"),
    ("/favicon.svg", "favicon.svg", "image/svg+xml"),
    # Browsers ask for /favicon.ico on their own; a 404 there would be a console error.
    ("/favicon.ico", "favicon.svg", "image/svg+xml"),
]
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self'; object-src 'none'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Small files; revalidate so a reinstalled package is picked up at once.
    "Cache-Control": "no-cache",
}


def page_routes() -> list[Route]:
    """The page's routes, to add to the API's (static files, GET only)."""
    static = resources.files("cifar10_runtime.serving") / "static"
    out = []
    for path, name, media_type in _FILES:
        body = (static / name).read_bytes()
        out.append(Route(path, _serve(body, media_type), methods=["GET"]))
    return out


def _serve(body: bytes, media_type: str) -> Any:
    async def endpoint(request: Request) -> Response:
        return Response(body, media_type=media_type, headers=_HEADERS)

    return endpoint


def wants_input(request: Request) -> bool:
    """True when the client asked /v1/predict for the decoded images (?include_input=1)."""
    return request.query_params.get(INCLUDE_INPUT, "").lower() in _TRUE


def add_inputs(predictions: list[dict[str, Any]], images: np.ndarray) -> None:
    """Add `input_rgb`: the 32x32x3 uint8 image as the model saw it, base64 of its raw bytes
    (row-major RGB), so the page can show exactly what was classified."""
    for item, image in zip(predictions, images, strict=True):
        item["input_rgb"] = base64.b64encode(image.tobytes()).decode("ascii")
