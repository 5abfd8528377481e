"""FLOPs per image counted from the ONNX graph: Conv and Gemm/MatMul multiply-accumulates.

Only the layers that dominate compute are counted (activations, pooling, softmax and the
uint8 scaling are a rounding error next to them), so "share of peak" is a lower bound on
how busy the FMA units really are. FLOPs = 2 * MACs, the convention matrix-product peaks use.
"""

from __future__ import annotations

from pathlib import Path

import onnx
from onnx import numpy_helper, shape_inference


def _dims(value_info: onnx.ValueInfoProto) -> list[int | None]:
    dims = []
    for d in value_info.type.tensor_type.shape.dim:
        dims.append(d.dim_value if d.HasField("dim_value") else None)
    return dims


def _pin_batch(model: onnx.ModelProto) -> None:
    # With a symbolic batch dimension shape inference still works, but pinning it to 1
    # makes every Conv/Gemm output shape concrete, so the count is per image.
    for inp in model.graph.input:
        dims = inp.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].ClearField("dim_param")
            dims[0].dim_value = 1


def count_macs(model_path: str | Path) -> dict:
    """Return {"macs": int, "flops": int, "by_op": {op_type: macs}, "layers": [...]} per image."""
    model = onnx.load(str(model_path))
    _pin_batch(model)
    inferred = shape_inference.infer_shapes(model)
    shapes: dict[str, list[int | None]] = {}
    for vi in (
        list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output)
    ):
        shapes[vi.name] = _dims(vi)
    inits = {t.name: list(t.dims) for t in inferred.graph.initializer}

    def shape_of(name: str) -> list[int | None] | None:
        return inits.get(name) or shapes.get(name)

    layers = []
    for node in inferred.graph.node:
        macs = 0
        op = node.op_type
        if op in ("Conv", "ConvInteger", "QLinearConv"):
            w_index = 3 if op == "QLinearConv" else 1
            out_index = 0
            w = shape_of(node.input[w_index])
            out = shape_of(node.output[out_index])
            if w and out and None not in w and len(out) == 4 and None not in out[1:]:
                # Weight is [Cout, Cin/group, kh, kw]; output NCHW (tf2onnx transposes
                # around Conv, so the Conv itself always sees channels first).
                cout, cin_g, kh, kw = w
                macs = cout * cin_g * kh * kw * out[2] * out[3]
        elif op in ("Gemm", "MatMul", "MatMulInteger", "QLinearMatMul"):
            a_index, b_index = (0, 3) if op == "QLinearMatMul" else (0, 1)
            a = shape_of(node.input[a_index])
            b = shape_of(node.input[b_index])
            if a and b and None not in b:
                trans_a = trans_b = 0
                for attr in node.attribute:
                    if attr.name == "transA":
                        trans_a = attr.i
                    if attr.name == "transB":
                        trans_b = attr.i
                k, n = (b[-1], b[-2]) if trans_b else (b[-2], b[-1])
                m = a[-1] if (op == "Gemm" and trans_a) else (a[-2] if len(a) > 1 else 1)
                # Leading (batch) dims other than M were pinned to 1 above.
                lead = 1
                for d in a[:-2]:
                    lead *= d or 1
                macs = lead * (m or 1) * k * n
        if macs:
            layers.append({"name": node.name, "op": op, "macs": int(macs)})
    by_op: dict[str, int] = {}
    for layer in layers:
        by_op[layer["op"]] = by_op.get(layer["op"], 0) + layer["macs"]
    total = sum(by_op.values())
    return {"macs": total, "flops": 2 * total, "by_op": by_op, "layers": layers}


def parameter_count(model_path: str | Path) -> int:
    """Number of weights stored as initializers (float or quantized)."""
    model = onnx.load(str(model_path))
    return int(sum(numpy_helper.to_array(t).size for t in model.graph.initializer))
