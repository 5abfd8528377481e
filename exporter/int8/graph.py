"""Graph rewrites around INT8 quantization: which nodes stay float, and two exact rewrites
that remove float work the quantized graph would otherwise pay for.

- `fold_post_relu_scale` (before quantizing): a BatchNorm after a ReLU (the trainer's
  layout) is `relu(z) * a + b`. With every a > 0, `relu(z) * a == relu(a * z)`, so a goes
  into the Conv's weights and bias; `maxpool(y + b) == maxpool(y) + b`, so the Add moves
  behind the MaxPool, on 4x fewer values. Left in place, the float Mul between two
  quantized Convs cost a DequantizeLinear, the Mul and a QuantizeLinear per block.
- `feed_uint8_image` (after quantizing): the uint8 image already is the quantized form of
  x * s (s = 1/255, or 1 for models taking raw pixels), so the first Conv reads it directly
  through DequantizeLinear(scale s, zero point 0): bit-exact to the float x * s, and the
  Cast, the float Mul and a lossy QuantizeLinear disappear.
"""

from __future__ import annotations

import numpy as np

from cifar10_runtime.contract import INPUT_NAME


def _consumers(graph) -> dict[str, list]:
    out: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            out.setdefault(name, []).append(node)
    return out


def _initializer(graph, name: str):
    for t in graph.initializer:
        if t.name == name:
            return t
    return None


def _array(graph, name: str) -> np.ndarray | None:
    from onnx import numpy_helper

    t = _initializer(graph, name)
    return None if t is None else numpy_helper.to_array(t)


def _image_source(graph) -> str:
    """The uint8 tensor the float conversion starts from: the image, or under `--tta flip`
    the Concat of the images and their mirror images."""
    concat = [n for n in graph.node if n.op_type == "Concat" and INPUT_NAME in n.input]
    return concat[0].output[0] if len(concat) == 1 else INPUT_NAME


def _input_chain(graph) -> list:
    """`image -> Cast [-> Mul(const)]`: the nodes that turn the uint8 image into floats."""
    consumers = _consumers(graph)

    def only(value: str, op: str):
        nodes = consumers.get(value, [])
        return nodes[0] if len(nodes) == 1 and nodes[0].op_type == op else None

    cast = only(_image_source(graph), "Cast")
    if cast is None:
        return []
    mul = only(cast.output[0], "Mul")
    if mul is not None and _array(graph, mul.input[1]) is not None:
        return [cast, mul]
    return [cast]


def float_nodes(model, first_conv: bool, head: bool) -> list[str]:
    """Nodes kept in float: the image's Cast/Mul (`feed_uint8_image` replaces them) and the
    Softmax always; the first Conv with `first_conv`; with `head` the classifier head (the
    MatMul/Gemm feeding the Softmax, through a bias Add), so the logits are never rounded to
    256 levels (that flips every answer whose top-2 margin is below a step: 96.4% instead
    of 98.0% agreement on a 40%-accurate model), for almost no compute."""
    nodes = list(model.graph.node)
    producer = {out: n for n in nodes for out in n.output}
    keep = [n.name for n in _input_chain(model.graph)]
    keep += [n.name for n in nodes if n.op_type == "Conv"][:1] if first_conv else []
    for node in nodes:
        if node.op_type != "Softmax":
            continue
        keep.append(node.name)
        layer = producer.get(node.input[0])
        while head and layer is not None and layer.op_type in ("Add", "Identity", "Reshape"):
            keep.append(layer.name)
            layer = producer.get(layer.input[0])
        if head and layer is not None and layer.op_type in ("MatMul", "Gemm"):
            keep.append(layer.name)
    return keep + _after_softmax(model.graph)


def _after_softmax(graph) -> list[str]:
    """Every node fed (directly or not) by a Softmax: the `--tta flip` averaging of two
    probability vectors, which 256 levels would round into ties."""
    consumers = _consumers(graph)
    seen: dict[str, None] = {}
    todo = [out for n in graph.node if n.op_type == "Softmax" for out in n.output]
    while todo:
        for node in consumers.get(todo.pop(), []):
            if node.name not in seen:
                seen[node.name] = None
                todo.extend(node.output)
    return list(seen)


def _channel_const(graph, name: str, channels: int) -> np.ndarray | None:
    """A per-channel constant broadcasting along axis 1 of NCHW ([C,1,1] or [1,C,1,1])."""
    value = _array(graph, name)
    if value is None or value.size != channels or value.ndim < 3:
        return None
    if value.shape[-3:] != (channels, 1, 1):
        return None
    return value.reshape(channels)


def fold_post_relu_scale(model) -> int:
    """Fold `Conv -> Relu -> Mul(a > 0) [-> Add(b)] -> MaxPool` (see the module doc);
    returns how many Muls were folded. Anything else is left untouched."""
    from onnx import numpy_helper

    graph = model.graph
    folded = 0
    for conv in [n for n in graph.node if n.op_type == "Conv"]:
        consumers = _consumers(graph)
        after = consumers.get(conv.output[0], [])
        relu = after[0] if len(after) == 1 and after[0].op_type == "Relu" else None
        after = consumers.get(relu.output[0], []) if relu is not None else []
        mul = after[0] if len(after) == 1 and after[0].op_type == "Mul" else None
        weight = _array(graph, conv.input[1]) if mul is not None else None
        if weight is None:
            continue
        scale = _channel_const(graph, mul.input[1], weight.shape[0])
        if scale is None or not np.all(scale > 0) or len(consumers.get(conv.input[1], [])) > 1:
            continue
        has_bias = len(conv.input) > 2 and bool(conv.input[2])
        bias = _array(graph, conv.input[2]) if has_bias else None
        if has_bias and (bias is None or len(consumers.get(conv.input[2], [])) > 1):
            continue
        shape = (-1,) + (1,) * (weight.ndim - 1)
        _replace(graph, conv.input[1], (weight * scale.reshape(shape)).astype(weight.dtype))
        if has_bias:
            _replace(graph, conv.input[2], (bias * scale).astype(bias.dtype))
        else:
            name = conv.output[0] + "_folded_bias"
            zeros = np.zeros(weight.shape[0], weight.dtype)
            graph.initializer.append(numpy_helper.from_array(zeros, name))
            conv.input.append(name)
        for node in consumers.get(mul.output[0], []):
            node.input[:] = [relu.output[0] if n == mul.output[0] else n for n in node.input]
        graph.node.remove(mul)
        if not any(mul.input[1] in n.input for n in graph.node):
            graph.initializer.remove(_initializer(graph, mul.input[1]))
        _move_add_after_pool(graph, relu)
        folded += 1
    return folded


def _move_add_after_pool(graph, relu) -> None:
    consumers = _consumers(graph)
    after = consumers.get(relu.output[0], [])
    add = after[0] if len(after) == 1 and after[0].op_type == "Add" else None
    after = consumers.get(add.output[0], []) if add is not None else []
    pool = after[0] if len(after) == 1 and after[0].op_type == "MaxPool" else None
    if pool is None or _array(graph, add.input[1]) is None:
        return
    pooled, out = add.output[0], pool.output[0]
    pool.input[0], pool.output[0] = relu.output[0], pooled
    add.input[0], add.output[0] = pooled, out
    nodes = list(graph.node)
    i, j = nodes.index(add), nodes.index(pool)
    nodes[i], nodes[j] = pool, add
    del graph.node[:]
    graph.node.extend(nodes)
    stale = [v for v in graph.value_info if v.name == pooled]
    for v in stale:  # its shape changed (pooled now); shape inference redoes it
        graph.value_info.remove(v)


def _replace(graph, name: str, value: np.ndarray) -> None:
    from onnx import numpy_helper

    t = _initializer(graph, name)
    t.CopyFrom(numpy_helper.from_array(value, name))


def feed_uint8_image(proto) -> bool:
    """`image -> Cast [-> Mul(s)] [-> Transpose] -> QuantizeLinear -> DequantizeLinear...`
    becomes `image [-> Transpose] -> DequantizeLinear(s, 0)...` (see the module doc).
    Returns False, graph untouched, when the graph does not start that way."""
    from onnx import TensorProto, helper

    graph = proto.graph
    consumers = _consumers(graph)
    chain = _input_chain(graph)
    scale = np.float32(1.0)
    if len(chain) == 2:
        value = _array(graph, chain[1].input[1])
        if value.size != 1 or not float(value.reshape(())) > 0:
            return False
        scale = np.float32(value.reshape(()))
    if not chain:
        return False
    after = consumers.get(chain[-1].output[0], [])
    transpose = after[0] if len(after) == 1 and after[0].op_type == "Transpose" else None
    last = transpose or chain[-1]
    after = consumers.get(last.output[0], [])
    quant = after[0] if len(after) == 1 and after[0].op_type == "QuantizeLinear" else None
    dequant = consumers.get(quant.output[0], []) if quant is not None else []
    if not dequant or any(n.op_type != "DequantizeLinear" for n in dequant):
        return False
    old = {*quant.input[1:], *(n for d in dequant for n in d.input[1:])}
    old |= {chain[1].input[1]} if len(chain) == 2 else set()
    scale_name, zero_name = "image_scale", "image_zero_point"
    graph.initializer.extend(
        [
            helper.make_tensor(scale_name, TensorProto.FLOAT, [], [float(scale)]),
            helper.make_tensor(zero_name, TensorProto.UINT8, [], [0]),
        ]
    )
    source = _image_source(graph)
    if transpose is not None:  # a Transpose of the uint8 image moves 4x fewer bytes
        transpose.input[0] = source
        source = transpose.output[0]
        for value in graph.value_info:
            if value.name == source:
                value.type.tensor_type.elem_type = TensorProto.UINT8
    for node in dequant:
        node.input[:] = [source, scale_name, zero_name]
    for node in [*chain, quant]:
        graph.node.remove(node)
    used = {n for node in graph.node for n in node.input}
    for t in [t for t in graph.initializer if t.name in old and t.name not in used]:
        graph.initializer.remove(t)
    return True
