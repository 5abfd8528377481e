"""deploy/kserve/: both InferenceService manifests loaded with KServe's own Python models
(kserve.V1beta1InferenceService and the kubernetes.client classes it nests, strictly: an
unknown or mistyped field fails), their settings checked against cifar-serve's real CLI
and the Triton repository layout, and the Containerfile's rules (slim base, runtime wheel
only, no TensorFlow, non-root).

kserve's dependencies do not sit well beside TensorFlow's (it brings uvloop, which would
change uvicorn's loop in the serving tests), so these run in their own venv:
`make test-kserve` (build/venv-kserve-manifests: kserve, pyyaml, pytest, the runtime).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

yaml = pytest.importorskip("yaml", reason="pyyaml not installed: run `make test-kserve`")
pytest.importorskip("kserve", reason="kserve not installed here: run `make test-kserve`")
from kserve_models import ManifestError, inference_service  # noqa: E402

from cifar10_runtime.cli.serve import main as cifar_serve  # noqa: E402
from cifar10_runtime.contract import MODEL_NAME  # noqa: E402

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "kserve"
# What `cifar-export --triton-repository DIR` writes (cifar10_exporter.outputs.triton):
# DIR/<name>/1/.
MODEL_IN_REPOSITORY = f"{MODEL_NAME}/1/model.onnx"
STORAGE_SCHEMES = ("pvc://", "s3://", "gs://", "https://", "hdfs://", "oci://", "azure://")


def manifest(name: str) -> dict[str, Any]:
    documents = list(yaml.safe_load_all((DEPLOY / name).read_text()))
    assert len(documents) == 1, f"{name}: one InferenceService per file"
    return documents[0]


def serve_options(args: list[str]) -> dict[str, Any]:
    """`args` parsed by cifar-serve's own click command (an unknown flag fails here)."""
    context = cifar_serve.make_context("cifar-serve", list(args))
    return context.params


def test_the_triton_manifest_is_a_valid_inference_service() -> None:
    isvc = inference_service(manifest("triton.yaml"))
    predictor = isvc.spec.predictor
    model = predictor.model
    assert model.model_format.name == "triton"
    assert model.protocol_version == "grpc-v2"
    assert model.storage_uri.startswith(STORAGE_SCHEMES)
    assert [(p.name, p.container_port) for p in model.ports] == [("h2c", 9000)]
    assert predictor.scale_metric == "concurrency" and predictor.scale_target > 0
    assert 1 <= predictor.min_replicas <= predictor.max_replicas
    assert set(model.resources.requests) == set(model.resources.limits) == {"cpu", "memory"}


def test_the_cifar_serve_manifest_matches_the_cli_and_the_repository() -> None:
    isvc = inference_service(manifest("cifar-serve.yaml"))
    predictor = isvc.spec.predictor
    (container,) = predictor.containers
    options = serve_options(container.args)
    assert options["model"] == f"/mnt/models/{MODEL_IN_REPOSITORY}"
    # KServe's storage initializer fills /mnt/models from STORAGE_URI: the same repository
    # as the Triton manifest's.
    env = {e.name: e.value for e in container.env}
    assert env["STORAGE_URI"] == manifest("triton.yaml")["spec"]["predictor"]["model"]["storageUri"]
    # The one declared port is gRPC, named h2c, and is the one cifar-serve listens on.
    assert [(p.name, p.container_port) for p in container.ports] == [("h2c", options["grpc_port"])]
    assert options["host"] == "0.0.0.0"
    probes = {"ready": container.readiness_probe, "live": container.liveness_probe}
    for kind, probe in probes.items():
        assert probe.http_get.path == f"/v2/health/{kind}"
        assert probe.http_get.port == options["port"]  # the HTTP port, not the gRPC one
    assert options["threads"] == int(container.resources.limits["cpu"])
    scrape = isvc.metadata.annotations
    assert scrape["prometheus.kserve.io/port"] == str(options["port"])
    assert scrape["prometheus.kserve.io/path"] == "/metrics"
    assert predictor.scale_metric == "concurrency" and predictor.scale_target > 0
    assert container.security_context.run_as_non_root is True
    assert container.security_context.allow_privilege_escalation is False


def test_a_misspelled_or_mistyped_field_is_refused() -> None:
    """The check can fail: what the API server would reject, these models reject too."""
    typo = manifest("cifar-serve.yaml")
    container = typo["spec"]["predictor"]["containers"][0]
    container["readinesProbe"] = container.pop("readinessProbe")
    with pytest.raises(ManifestError, match=r"has no field\(s\) \['readinesProbe'\]"):
        inference_service(typo)
    mistyped = manifest("triton.yaml")
    mistyped["spec"]["predictor"]["minReplicas"] = "one"
    with pytest.raises(ManifestError, match="minReplicas: expected int"):
        inference_service(mistyped)
    nameless = manifest("cifar-serve.yaml")
    del nameless["spec"]["predictor"]["containers"][0]["ports"][0]["containerPort"]
    with pytest.raises(ManifestError, match="containerPort"):
        inference_service(nameless)


def _instructions(text: str) -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n", " ", text)
    lines = [line.strip() for line in joined.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1])
        for line in lines
        if line and not line.startswith("#")
    ]


def test_the_containerfile_is_slim_runtime_only_and_non_root() -> None:
    text = (DEPLOY / "Containerfile").read_text()
    steps = _instructions(text)
    bases = [arg for op, arg in steps if op == "FROM"]
    assert bases and all(re.match(r"python:3\.11-slim\b", b) for b in bases), bases
    commands = " ".join(arg for _, arg in steps).lower()
    assert "tensorflow" not in commands and "keras" not in commands
    final = steps[max(i for i, (op, _) in enumerate(steps) if op == "FROM") :]
    installs = [arg for op, arg in final if op == "RUN" and "pip install" in arg]
    assert len(installs) == 1 and "cifar10_runtime-*.whl)[serve]" in installs[0]
    copies = [arg for op, arg in final if op == "COPY"]
    assert copies == ["--from=wheel /wheels/ /tmp/wheels/"]  # the wheel, nothing else
    users = [arg for op, arg in final if op == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    entry = [arg for op, arg in final if op == "ENTRYPOINT"]
    assert entry == ['["cifar-serve"]']
    cmd = [arg for op, arg in final if op == "CMD"][-1]
    options = serve_options(yaml.safe_load(cmd))  # a JSON list: the exec form
    assert options["model"] == f"/mnt/models/{MODEL_IN_REPOSITORY}"
