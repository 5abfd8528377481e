"""Load a Kubernetes manifest into KServe's own Python models, strictly.

The `kserve` SDK's classes (V1beta1InferenceService and the kubernetes.client classes they
nest, V1Container, V1Probe...) carry their schema: `openapi_types` (attribute -> type
name such as "V1beta1PredictorSpec", "list[V1Container]", "dict(str, str)") and
`attribute_map` (attribute -> JSON key). Walking a manifest with them rejects what the
API server would: unknown fields (a typo like `readinesProbe`), values of the wrong type,
missing required fields (the constructors check those). (Module name unique across tests/.)
"""

from __future__ import annotations

import re
from typing import Any

import kserve
import kubernetes.client

PRIMITIVES = {"str": str, "int": int, "bool": bool, "float": (int, float)}
# Free-form in the schema: quantities ("1", "512Mi", 2), IntOrString ports, raw objects.
LOOSE = {"object", "ResourceQuantity"}


class ManifestError(ValueError):
    pass


def _model_class(name: str) -> type:
    for module in (kserve.models, kubernetes.client.models, kubernetes.client):
        if hasattr(module, name):
            return getattr(module, name)
    raise ManifestError(f"no model class {name!r} in kserve or kubernetes.client")


def load(value: Any, type_name: str, where: str = "") -> Any:
    """`value` (parsed YAML) as an instance of `type_name`, or ManifestError naming the path."""
    if type_name in LOOSE:
        if isinstance(value, dict | list):
            return value
        if not isinstance(value, str | int | float):
            raise ManifestError(f"{where}: expected a quantity or string, got {value!r}")
        return value
    if type_name in PRIMITIVES:
        if isinstance(value, bool) and type_name != "bool":
            raise ManifestError(f"{where}: expected {type_name}, got {value!r}")
        if not isinstance(value, PRIMITIVES[type_name]):
            raise ManifestError(f"{where}: expected {type_name}, got {value!r}")
        return value
    # kserve's classes write list[X] and dict(str, X); kubernetes.client's List[X], Dict[str, X].
    if m := re.fullmatch(r"[lL]ist\[(.+)\]", type_name):
        if not isinstance(value, list):
            raise ManifestError(f"{where}: expected a list, got {value!r}")
        return [load(v, m.group(1), f"{where}[{i}]") for i, v in enumerate(value)]
    if m := re.fullmatch(r"dict\(str, (.+)\)|Dict\[str, (.+)\]", type_name):
        if not isinstance(value, dict):
            raise ManifestError(f"{where}: expected a mapping, got {value!r}")
        inner = m.group(1) or m.group(2)
        return {k: load(v, inner, f"{where}.{k}") for k, v in value.items()}
    cls = _model_class(type_name)
    if not isinstance(value, dict):
        raise ManifestError(f"{where}: expected a {type_name} mapping, got {value!r}")
    by_key = {key: attr for attr, key in cls.attribute_map.items()}
    unknown = sorted(set(value) - set(by_key))
    if unknown:
        raise ManifestError(f"{where}: {type_name} has no field(s) {unknown}")
    kwargs = {
        by_key[k]: load(v, cls.openapi_types[by_key[k]], f"{where}.{k}") for k, v in value.items()
    }
    try:
        return cls(**kwargs)
    except ValueError as exc:  # the generated constructors' own checks (required, enums)
        raise ManifestError(f"{where}: {type_name}: {exc}") from None


def inference_service(document: dict[str, Any]) -> Any:
    """A manifest as kserve.V1beta1InferenceService."""
    if document.get("apiVersion") != "serving.kserve.io/v1beta1":
        raise ManifestError(f"apiVersion must be serving.kserve.io/v1beta1: {document!r:.80}")
    if document.get("kind") != "InferenceService":
        raise ManifestError(f"kind must be InferenceService: {document.get('kind')!r}")
    return load(document, "V1beta1InferenceService", "InferenceService")
