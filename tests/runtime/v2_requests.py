"""Open Inference Protocol infer requests for in-process tests (test_v2_strict.py,
test_v2_grammar.py): one valid request in JSON or binary form, and the check of an answer."""

from __future__ import annotations

import json
from typing import Any

INFER = "/v2/models/cifar10/infer"
HEADER = "Inference-Header-Content-Length"
PIXELS = [i % 256 for i in range(3072)]
RAW = bytes(PIXELS)


def infer_request(binary: bool) -> dict[str, Any]:
    tensor: dict[str, Any] = {"name": "image", "datatype": "UINT8", "shape": [1, 32, 32, 3]}
    if binary:
        tensor["parameters"] = {"binary_data_size": len(RAW)}
    else:
        tensor["data"] = list(PIXELS)
        tensor["parameters"] = {}
    return {
        "id": "r1",
        "parameters": {"binary_data_output": False},
        "inputs": [tensor],
        "outputs": [{"name": "probabilities", "parameters": {"binary_data": False}}],
    }


def post(client: Any, head: bytes, binary: bool) -> Any:
    if not binary:
        return client.post(INFER, content=head, headers={"Content-Type": "application/json"})
    return client.post(INFER, content=head + RAW, headers={HEADER: str(len(head))})


def check_answer(response: Any, status: int, fragment: str = "") -> None:
    """`status`; an error is JSON with one bounded line; a 200 is JSON or binary, whole."""
    assert response.status_code == status, (status, response.status_code, response.text[:300])
    assert response.headers["x-content-type-options"] == "nosniff"
    if status != 200:
        assert response.headers["content-type"] == "application/json"
        body = response.json()
        assert set(body) == {"error"}, body
        assert "\n" not in body["error"] and len(body["error"]) < 400, body["error"]
        assert "Traceback" not in body["error"] and fragment in body["error"], body["error"]
        return
    if HEADER in response.headers:
        assert response.headers["content-type"] == "application/octet-stream"
        length = int(response.headers[HEADER])
        head = json.loads(response.content[:length])
        assert head["outputs"][0]["parameters"] == {"binary_data_size": 40}
        assert len(response.content) == length + 40
    else:
        assert response.headers["content-type"] == "application/json"
        assert len(response.json()["outputs"][0]["data"]) == 10
