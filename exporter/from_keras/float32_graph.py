"""A Keras model trained under a mixed dtype policy, rebuilt to compute in float32 for export.

Under `mixed_bfloat16` / `mixed_float16` the variables are float32 but each layer casts its
inputs and weights to 16 bits; converted as it is, the ONNX graph would carry those casts and
onnxruntime would compute (slowly, and less exactly) in bfloat16/float16. Keras saves the policy
with every layer, so loading the file brings it back whatever the global policy is. Here every
mixed policy in the model's config becomes `float32`, the model is rebuilt from that config and
the (float32) weights are copied over: the same function, computed in float32. Models without a
mixed policy come back untouched. Parity then compares this float32 model with its ONNX.
"""

from __future__ import annotations

from typing import Any

from cifar10_runtime.errors import ModelError, first_line

_POLICY_CLASSES = ("DTypePolicy", "FloatDTypePolicy")


def mixed_policies(node: Any) -> set[str]:
    """Names of the mixed dtype policies anywhere in a serialized Keras config."""
    found: set[str] = set()
    if isinstance(node, dict):
        name = _policy_name(node)
        if name and name.startswith("mixed_"):
            found.add(name)
        for value in node.values():
            found |= mixed_policies(value)
    elif isinstance(node, list):
        for value in node:
            found |= mixed_policies(value)
    return found


def _policy_name(node: dict[str, Any]) -> str | None:
    if node.get("class_name") in _POLICY_CLASSES and isinstance(node.get("config"), dict):
        name = node["config"].get("name")
        return name if isinstance(name, str) else None
    return None


def _to_float32(node: Any) -> Any:
    if isinstance(node, dict):
        name = _policy_name(node)
        if name and name.startswith("mixed_"):
            return {**node, "config": {**node["config"], "name": "float32"}}
        return {k: _to_float32(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_to_float32(v) for v in node]
    return node


def as_float32(model: Any, source: str = "model") -> tuple[Any, str | None]:
    """(the model computing in float32, the mixed policy it was trained under, or None)."""
    import keras

    serialized = keras.saving.serialize_keras_object(model)
    found = mixed_policies(serialized)
    if not found:
        return model, None
    serialized.pop("compile_config", None)  # inference only: no optimizer, loss or metrics
    try:
        rebuilt = keras.saving.deserialize_keras_object(_to_float32(serialized))
        rebuilt.set_weights(model.get_weights())
    except Exception as exc:  # from_config/set_weights of layers Keras cannot rebuild
        raise ModelError(
            f"cannot rebuild {source} (trained under {', '.join(sorted(found))}) in float32 "
            f"for export: {first_line(exc)}; save the model under the float32 policy and export "
            f"that file. Received: --model={source}"
        ) from exc
    not_float32 = sorted({str(w.dtype) for w in rebuilt.weights} - {"float32"})
    if not_float32:
        raise ModelError(
            f"{source} rebuilt in float32 still holds {not_float32} weights; save the model "
            f"with float32 variables and export that file. Received: --model={source}"
        )
    return rebuilt, "+".join(sorted(found))
