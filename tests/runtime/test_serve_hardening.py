"""Hardening in-process (TestClient): v2 parsing off the event loop, nosniff, metadata without
server paths, strict numbers from clients, the per-request decode budget.

Concurrency is arranged with gates (threading.Event), never timing: a parse is held open
inside its thread while /readyz is asked; if the parse ran on the event loop, /readyz
could not answer until the gate's bound ran out, and the test fails.
"""

from __future__ import annotations

import gzip
import json
import re
import threading
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from serve_samples import sample_pngs
from starlette.exceptions import HTTPException
from starlette.requests import Request

import cifar10_runtime.serving.v2.rest as v2_module
from cifar10_runtime import ModelError, Predictor
from cifar10_runtime.images import FORMATS_TEXT
from cifar10_runtime.limits import JSON_DECODES
from cifar10_runtime.serving.app import create_app
from cifar10_runtime.serving.config import ServeConfig
from cifar10_runtime.serving.http.bodies import BodyReader

with warnings.catch_warnings():
    warnings.simplefilter("ignore", UserWarning)  # see test_serve_app.py
    from starlette.testclient import TestClient

REPO = Path(__file__).resolve().parents[2]
BOUND = 20.0  # seconds a gate waits at most: reached only when the test is failing
INFER = "/v2/models/cifar10/infer"


@pytest.fixture()
def client(predictor: Predictor) -> Iterator[TestClient]:
    with TestClient(create_app(predictor)) as c:
        yield c


def _infer_body(images: int) -> dict[str, Any]:
    x = np.random.default_rng(0).integers(0, 256, (images, 32, 32, 3), dtype=np.uint8)
    tensor = {"name": "image", "shape": list(x.shape), "datatype": "UINT8"}
    return {"inputs": [{**tensor, "data": x.ravel().tolist()}]}


class HeldOpen:
    """Wraps a v2 module function: the first call holds until released (or BOUND passes)."""

    def __init__(self, inner: Callable[..., Any]) -> None:
        self.inner = inner
        self.entered = threading.Event()
        self.release = threading.Event()
        self.released_in_time: bool | None = None

    def __call__(self, *args: Any) -> Any:
        if not self.entered.is_set():
            self.entered.set()
            self.released_in_time = self.release.wait(BOUND)
        return self.inner(*args)


@pytest.mark.parametrize(
    ("function", "headers", "encode"),
    [
        ("split_body", {}, lambda body: body),  # a big JSON tensor
        ("decompress", {"Content-Encoding": "gzip"}, gzip.compress),  # a small gzip body
    ],
)
def test_readyz_answers_while_a_big_v2_body_is_parsed(
    predictor: Predictor,
    monkeypatch: pytest.MonkeyPatch,
    function: str,
    headers: dict[str, str],
    encode: Callable[[bytes], bytes],
) -> None:
    held = HeldOpen(getattr(v2_module, function))
    monkeypatch.setattr(v2_module, function, held)
    body = encode(json.dumps(_infer_body(64)).encode())
    answers: dict[str, Any] = {}
    with TestClient(create_app(predictor)) as client:

        def big() -> None:
            answers["big"] = client.post(INFER, content=body, headers=headers)

        thread = threading.Thread(target=big)
        thread.start()
        assert held.entered.wait(BOUND)
        ready = client.get("/readyz")  # while the parse is held open
        answers["readyz_first"] = thread.is_alive()
        held.release.set()
        thread.join(BOUND)
    assert ready.status_code == 200
    assert held.released_in_time is True, "the parse held the event loop: /readyz waited"
    assert answers["readyz_first"]
    assert answers["big"].status_code == 200, answers["big"].text
    assert len(answers["big"].json()["outputs"][0]["data"]) == 640


def test_v2_answers_match_inline_and_off_the_loop(client: TestClient) -> None:
    small, big = _infer_body(1), _infer_body(64)
    one = client.post(INFER, json=small).json()["outputs"][0]["data"]
    many = client.post(INFER, json=big).json()["outputs"][0]["data"]
    zipped = client.post(
        INFER, content=gzip.compress(json.dumps(big).encode()), headers={"Content-Encoding": "gzip"}
    ).json()["outputs"][0]["data"]
    assert many == zipped and one == many[:10]


def test_every_answer_says_nosniff_once(client: TestClient) -> None:
    png = sample_pngs(1)[0]
    answers = [
        client.post("/v1/predict", content=png, headers={"Content-Type": "image/png"}),
        client.post("/v1/predict", content=b"junk", headers={"Content-Type": "image/png"}),
        client.post(INFER, json=_infer_body(1)),
        client.post(INFER, content=b"{"),
        client.get("/v1/metadata"),
        client.get("/readyz"),
        client.get("/nowhere"),
        client.get("/metrics"),
        client.get("/openapi.json"),
        client.get("/"),  # the page sets it itself: not twice
    ]
    for response in answers:
        values = response.headers.get_list("x-content-type-options")
        assert values == ["nosniff"], (response.request.url, values)


def test_metadata_keeps_names_and_drops_absolute_paths(valid_model: Path) -> None:
    predictor = Predictor(valid_model, threads=1)
    predictor.metadata["metrics"] = {
        "accuracy": 0.5,
        "data": "/home/someone/shared/data/cifar-10-subset",
        "nested": [{"folder": "C:\\Users\\someone\\data\\cifar"}, "~/runs/运行1"],
    }
    with TestClient(create_app(predictor)) as client:
        info = client.get("/v1/metadata").json()
    assert info["metrics"] == {
        "accuracy": 0.5,
        "data": "cifar-10-subset",
        "nested": [{"folder": "cifar"}, "运行1"],
    }
    assert "/home/" not in json.dumps(info)
    assert info["class_names"] == list(predictor.class_names)
    assert info["model_version"] == "tiny-1.0"


@pytest.mark.parametrize("top_k", ["²", "1_0", "٣", "9" * 5000, "-1", " "])
def test_top_k_takes_ascii_digits_only(client: TestClient, top_k: str) -> None:
    png = sample_pngs(1)[0]
    response = client.post(
        "/v1/predict", params={"top_k": top_k}, content=png, headers={"Content-Type": "image/png"}
    )
    assert response.status_code == 400, response.text
    assert "top_k must be an integer from 1 to 10" in response.json()["error"]


@pytest.mark.parametrize("value", ["²".encode("latin-1"), b"9" * 5000, b"\xd9\xa3", b"1_0"])
def test_content_length_takes_ascii_digits_only(value: bytes) -> None:
    request = Request({"type": "http", "method": "POST", "headers": [(b"content-length", value)]})
    with pytest.raises(HTTPException) as caught:
        BodyReader(1000).check_length(request)
    assert caught.value.status_code == 400 and "invalid Content-Length" in caught.value.detail


def test_the_request_decode_budget_is_a_413_before_decoding(predictor: Predictor) -> None:
    pngs = sample_pngs(3)  # 3 x 1024 pixels against a budget of 2048
    files = [("f", (f"{i}.png", png, "image/png")) for i, png in enumerate(pngs)]
    with TestClient(create_app(predictor, ServeConfig(max_request_pixels=2048))) as client:
        refused = client.post("/v1/predict", files=files)
        assert refused.status_code == 413
        error = refused.json()["error"]
        assert "3 images of this request would be 3072 decoded pixels" in error
        assert "budget of 2048 per request (--max-request-pixels)" in error
        assert client.post("/v1/predict", files=files[:2]).status_code == 200
        assert client.get("/v1/metadata").json()["server"]["max_request_pixels"] == 2048


def test_docs_name_the_decoded_formats_as_the_code_does(client: TestClient) -> None:
    def flat(text: str) -> str:
        return re.sub(r"\s+", " ", text)

    for doc in ("README.md", "DESIGN.md"):
        assert FORMATS_TEXT in flat((REPO / doc).read_text()), doc
    body = client.get("/openapi.json").json()["paths"]["/v1/predict"]["post"]["requestBody"]
    assert FORMATS_TEXT in body["description"]
    error = client.post("/v1/predict", content=b"GIF", headers={"Content-Type": "image/gif"})
    assert error.json()["error"].endswith(f"Use {FORMATS_TEXT}.")


def test_a_version_too_long_for_a_header_is_refused_at_start(valid_model: Path) -> None:
    predictor = Predictor(valid_model, threads=1)
    predictor.model_version = "运" * 300
    with pytest.raises(ModelError, match=r"model_version is 300 characters, 2700 bytes as an"):
        create_app(predictor)
    predictor.model_version = "运" * 128  # the longest the exporter writes: served
    with TestClient(create_app(predictor)) as client:
        assert len(client.get("/readyz").headers["x-model-version"]) == 128 * 9


def test_at_most_json_decodes_big_bodies_parse_at_once(
    predictor: Predictor, monkeypatch: pytest.MonkeyPatch
) -> None:
    entered = threading.Semaphore(0)
    release = threading.Event()
    inner = v2_module.split_body

    def held(*args: Any) -> Any:
        entered.release()
        assert release.wait(BOUND)
        return inner(*args)

    monkeypatch.setattr(v2_module, "split_body", held)
    body = json.dumps(_infer_body(8)).encode()  # over INLINE_JSON_BYTES: a worker thread
    codes: list[int] = []
    with TestClient(create_app(predictor)) as client:
        threads = [
            threading.Thread(
                target=lambda: codes.append(client.post(INFER, content=body).status_code)
            )
            for _ in range(JSON_DECODES + 2)
        ]
        try:
            for thread in threads:
                thread.start()
            for _ in range(JSON_DECODES):
                assert entered.acquire(timeout=BOUND)
            # The others wait at the gate: none gets in while these are held (a bounded
            # wait that only ends early if the bound is broken).
            assert not entered.acquire(timeout=1.0), "more big bodies parsed at once"
            assert client.get("/readyz").status_code == 200
        finally:
            release.set()
            for thread in threads:
                thread.join(BOUND)
    assert codes == [200] * (JSON_DECODES + 2)
