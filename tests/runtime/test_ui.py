"""The try-it page in-process: served as package data, self-contained, and off with --no-ui."""

from __future__ import annotations

import base64
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from cifar10_runtime import Predictor, load_image
from cifar10_runtime.serving.app import create_app
from cifar10_runtime.serving.config import ServeConfig

with warnings.catch_warnings():
    warnings.simplefilter("ignore", UserWarning)  # see test_serve_app.py
    from starlette.testclient import TestClient

ASSETS = {
    "/ui/app.js": "text/javascript",
    "/ui/style.css": "text/css",
    "/favicon.svg": "image/svg+xml",
    "/favicon.ico": "image/svg+xml",
}


@pytest.fixture()
def client(predictor: Predictor) -> Iterator[TestClient]:
    with TestClient(create_app(predictor)) as c:
        yield c


def test_page_and_its_assets_are_served_from_this_origin_only(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    html = page.text
    assert 'data-testid="top1"' in html and 'type="file"' in html and 'accept="image/*"' in html
    # Every referenced URL is relative to this server (no scheme, no //host).
    refs = re.findall(r'(?:src|href)="([^"]*)"', html)
    assert refs and all(not re.match(r"^([a-z]+:|//)", ref) for ref in refs), refs
    for path, media in ASSETS.items():
        asset = client.get(path)
        assert asset.status_code == 200, path
        assert asset.headers["content-type"].startswith(media), path
        body = asset.content.replace(b'xmlns="http://www.w3.org/2000/svg"', b"")  # a name only
        assert b"http://" not in body and b"https://" not in body, path
    assert client.get("/").content == html.encode()  # read once, served the same every time


def test_predict_can_return_the_image_the_model_saw(
    client: TestClient, predictor: Predictor, subset_pngs: Path
) -> None:
    data = (subset_pngs / "003.png").read_bytes()
    response = client.post(
        "/v1/predict?top_k=5&include_input=1", files={"image": ("cat.png", data, "image/png")}
    )
    assert response.status_code == 200, response.text
    assert re.fullmatch(r"predict;dur=\d+\.\d{3}", response.headers["server-timing"])
    (prediction,) = response.json()["predictions"]
    seen = np.frombuffer(base64.b64decode(prediction.pop("input_rgb")), np.uint8)
    np.testing.assert_array_equal(seen.reshape(32, 32, 3), load_image(data))
    assert prediction == {"file": "cat.png", **predictor.predict(data, top_k=5).to_dict()}
    # Without the flag the answer is unchanged.
    plain = client.post("/v1/predict", content=data, headers={"Content-Type": "image/png"})
    assert "input_rgb" not in plain.json()["predictions"][0]


def test_ui_false_leaves_the_page_out(predictor: Predictor) -> None:
    with TestClient(create_app(predictor, ServeConfig(no_ui=True))) as c:
        assert c.get("/").status_code == 404
        assert c.get("/ui/app.js").status_code == 404
        assert c.get("/healthz").status_code == 200


@pytest.mark.parametrize(("flags", "served"), [([], True), (["--no-ui"], False)])
def test_cli_no_ui_flag(
    valid_model: Path, monkeypatch: pytest.MonkeyPatch, flags: list[str], served: bool
) -> None:
    from cifar10_runtime.cli import serve as serve_cli
    from cifar10_runtime.serving.http import drain

    apps: list[Any] = []
    monkeypatch.setattr(drain, "run", lambda app, **kwargs: apps.append(app))
    result = CliRunner().invoke(serve_cli.main, [str(valid_model), "--threads", "1", *flags])
    assert result.exit_code == 0, result.output
    (app,) = apps
    with TestClient(app) as c:
        assert (c.get("/").status_code == 200) is served
        assert c.get("/readyz").status_code == 200
