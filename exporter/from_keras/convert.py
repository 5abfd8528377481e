"""Keras model -> ONNX ModelProto with tf2onnx, the contract's wrapper baked into the graph."""

from __future__ import annotations

import logging

from cifar10_exporter.wrapper import WrapperSpec, feed
from cifar10_runtime.contract import BATCH_DIM, IMAGE_SHAPE, INPUT_NAME, NUM_CLASSES, OUTPUT_NAME
from cifar10_runtime.errors import ModelError, first_line


def build_serving_function(model, spec: WrapperSpec):
    """A tf.function taking uint8 `image` [N, 32, 32, 3] and returning {"probabilities": ...}.

    It casts/scales (and for BGR models reverses the channels of) the image as `spec` says,
    so the contract's uint8 RGB input holds whatever the model takes; runs the model in
    inference mode, casts the scores to float32 and appends a softmax for logits. Under
    `spec.tta == "flip"` it averages each image's probabilities with its mirror image's.
    """
    import tensorflow as tf

    signature = (tf.TensorSpec((None, *IMAGE_SHAPE), tf.uint8, name=INPUT_NAME),)

    @tf.function(input_signature=signature)
    def serve(image):
        if spec.tta == "flip":  # one model call over [images; mirrored images]
            n = tf.shape(image)[0]
            # A strided slice becomes one ONNX Slice (step -1); tf.reverse would become
            # Transpose -> ReverseSequence -> Transpose.
            image = tf.concat([image, image[:, :, ::-1]], axis=0)
        x = feed(image, spec, tf.cast, lambda t: tf.reverse(t, axis=[-1]))
        if spec.input_dtype == "bfloat16":
            x = tf.cast(x, tf.bfloat16)
        y = tf.cast(model(x, training=False), tf.float32)
        if spec.add_softmax:
            y = tf.nn.softmax(y, axis=-1)
        if spec.tta == "flip":  # probabilities averaged, as keras_reference does
            y = (y[:n] + y[n:]) / 2.0
        return {OUTPUT_NAME: y}

    return serve


def convert_to_onnx(model, spec: WrapperSpec, opset: int, source: str = "model"):
    """Convert with tf2onnx (explicit input signature, dynamic batch); returns onnx.ModelProto."""
    import tf2onnx

    for name in ("tf2onnx", "tensorflow"):
        logging.getLogger(name).setLevel(logging.ERROR)
    serve = build_serving_function(model, spec)
    try:
        proto, _ = tf2onnx.convert.from_function(
            serve, input_signature=serve.input_signature, opset=opset
        )
    except Exception as exc:  # tf2onnx raises many types for unsupported graphs
        first = first_line(exc)
        raise ModelError(
            f"tf2onnx could not convert {source} at opset {opset}: {first}; try another --opset "
            f"or replace the unsupported layer. Received: --model={source} --opset={opset}"
        ) from exc
    _normalise_io(proto)
    proto.graph.name = "cifar10_classifier"
    shape = ",".join(str(d) for d in (BATCH_DIM, *IMAGE_SHAPE))
    proto.doc_string = (
        f"CIFAR-10 classifier: {INPUT_NAME} uint8 [{shape}] RGB NHWC -> "
        f"{OUTPUT_NAME} float32 [{BATCH_DIM},{NUM_CLASSES}]"
    )
    return proto


def _rename_value(graph, old: str, new: str) -> None:
    if old == new:
        return
    for node in graph.node:
        node.input[:] = [new if n == old else n for n in node.input]
        node.output[:] = [new if n == old else n for n in node.output]
    for value in list(graph.input) + list(graph.output) + list(graph.value_info):
        if value.name == old:
            value.name = new


def _normalise_io(proto) -> None:
    """Name the single input/output as the contract says and call the batch dimension N."""
    graph = proto.graph
    initializers = {t.name for t in graph.initializer}
    inputs = [v for v in graph.input if v.name not in initializers]
    if len(inputs) != 1 or len(graph.output) != 1:
        raise ModelError(
            f"the converted graph has {len(inputs)} inputs and {len(graph.output)} outputs; "
            "expected one of each: this is a bug in the exporter, please report it with the "
            f"model. Received: inputs={[v.name for v in inputs]}"
        )
    _rename_value(graph, inputs[0].name, INPUT_NAME)
    _rename_value(graph, graph.output[0].name, OUTPUT_NAME)
    for value in (inputs[0], graph.output[0]):
        dims = value.type.tensor_type.shape.dim
        if dims:
            dims[0].ClearField("dim_value")
            dims[0].dim_param = BATCH_DIM
