"""What the tritonclient conformance tests share (HTTP and gRPC clients raise the same
exception type). (Module name unique across tests/: see runtime_samples.py.)"""

from __future__ import annotations

from typing import Any

import pytest


def infer_raises(client: Any, fragment: str, status: str, *args: Any, **kwargs: Any) -> None:
    """`client.infer(*args, **kwargs)` raises the client's own exception, with our message
    (`fragment` in it) and `status` (HTTP "404", gRPC "StatusCode.NOT_FOUND")."""
    from tritonclient.utils import InferenceServerException

    with pytest.raises(InferenceServerException) as caught:
        client.infer(*args, **kwargs)
    assert fragment in caught.value.message(), caught.value.message()
    assert caught.value.status() == status
