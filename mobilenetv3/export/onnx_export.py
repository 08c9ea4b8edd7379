"""Export a Keras functional model to ONNX by walking its layers.

The graph (`onnx_graph.Graph`) is written directly with the `onnx` helper
API from each layer's type and weights by the converters below, then tidied
by `onnx_passes`, so it is the same on every Keras backend and contains
exactly the operations a MobileNetV3 needs: native `HardSwish` and
`HardSigmoid` (opset 14+), BatchNorm folded into the preceding convolution,
explicit zero padding folded into the convolution's `pads`, and NCHW inside
with one transpose at the input and at 4-D outputs (none with
`channels_first=True`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np

from mobilenetv3.core import keras_internals as internals
from mobilenetv3.core.utils import atomic_path
from mobilenetv3.export import onnx_passes
from mobilenetv3.export.onnx_graph import Graph, Value, apply_activation, conv_pads
from mobilenetv3.nets.layers import (
    BatchNormalization,
    Conv2D,
    DepthwiseConv2D,
    SqueezeAndExcite2D,
)
from mobilenetv3.runtime.batch_norm_folding import batch_norm_parameters
from mobilenetv3.tasks.detector import ResizeImages
from mobilenetv3.tasks.segmenter import ResizeLike

OPSET = 17
IR_VERSION = 9
INPUT_NAME = "images"
_TO_NCHW, _TO_NHWC = (0, 3, 1, 2), (0, 2, 3, 1)
# Keras axis of a channels-last rank-4 tensor -> ONNX axis of NCHW.
_AXIS_4D = {-1: 1, 3: 1, 1: 2, 2: 3, -3: 2, -2: 3, 0: 0}


# -- convolutions --------------------------------------------------------------

def _emit_conv(graph: Graph, layer: Any, x: Value, in_shape: tuple, weight: np.ndarray, group: int) -> Value:
    if getattr(layer, "data_format", "channels_last") != "channels_last":
        raise NotImplementedError(f"export_onnx: layer {layer.name!r} must use data_format='channels_last'.")
    inputs = [x.name, graph.const(f"{layer.name}/kernel", weight)]
    if getattr(layer, "use_bias", False):
        inputs.append(graph.const(f"{layer.name}/bias", keras.ops.convert_to_numpy(layer.bias)))
    kernel = tuple(weight.shape[2:])
    out = graph.add(
        "Conv",
        inputs,
        layer.name,
        kernel_shape=list(kernel),
        strides=list(layer.strides),
        dilations=list(layer.dilation_rate),
        group=group,
        **conv_pads(layer, in_shape, kernel),
    )
    return apply_activation(graph, layer.activation, Value(out, 4), f"{layer.name}/activation")


def _conv2d(graph: Graph, layer: Any, node: Any, xs: list[Value]) -> list[Value]:
    kernel = keras.ops.convert_to_numpy(layer.kernel)  # (kh, kw, cin/groups, cout)
    weight = kernel.transpose(3, 2, 0, 1)
    return [_emit_conv(graph, layer, xs[0], node.input_tensors[0].shape, weight, getattr(layer, "groups", 1))]


def _depthwise_conv2d(graph: Graph, layer: Any, node: Any, xs: list[Value]) -> list[Value]:
    kernel = keras.ops.convert_to_numpy(layer.kernel)  # (kh, kw, c, multiplier)
    kh, kw, channels, multiplier = kernel.shape
    weight = kernel.reshape(kh, kw, channels * multiplier).transpose(2, 0, 1)[:, None]
    return [_emit_conv(graph, layer, xs[0], node.input_tensors[0].shape, weight, channels)]


def _dense(graph: Graph, layer: Any, node: Any, xs: list[Value]) -> list[Value]:
    kernel = keras.ops.convert_to_numpy(layer.kernel)  # (in, out)
    x = xs[0]
    if x.rank == 4:  # applied to channels: a 1x1 convolution
        out = Value(graph.add("Conv", [x.name, graph.const(f"{layer.name}/kernel", kernel.T[:, :, None, None])]
                               + ([graph.const(f"{layer.name}/bias", keras.ops.convert_to_numpy(layer.bias))]
                                  if layer.use_bias else []), layer.name, kernel_shape=[1, 1]), 4)
    elif x.rank == 2:
        bias = keras.ops.convert_to_numpy(layer.bias) if layer.use_bias else np.zeros(kernel.shape[1])
        inputs = [x.name, graph.const(f"{layer.name}/kernel", kernel), graph.const(f"{layer.name}/bias", bias)]
        out = Value(graph.add("Gemm", inputs, layer.name), 2)
    else:
        raise NotImplementedError(f"export_onnx: Dense layer {layer.name!r} on a rank-{x.rank} input.")
    return [apply_activation(graph, layer.activation, out, f"{layer.name}/activation")]


# -- normalization, scaling, padding ---------------------------------------------

def _batch_norm(graph: Graph, layer: Any, node: Any, xs: list[Value]) -> list[Value]:
    x = xs[0]
    if layer.axis not in (-1, x.rank - 1):
        raise NotImplementedError(f"export_onnx: BatchNormalization {layer.name!r} must normalize the last axis.")
    params = batch_norm_parameters(layer)
    names = [graph.const(f"{layer.name}/{p}", v) for p, v in zip(("gamma", "beta", "mean", "var"), params, strict=False)]
    out = graph.add("BatchNormalization", [x.name, *names], layer.name, epsilon=float(layer.epsilon))
    graph.batch_norm_ranks[out] = x.rank
    return [Value(out, x.rank)]


def _channel_constant(value: Any, rank: int) -> np.ndarray:
    array = np.asarray(value, dtype=np.float32)
    if array.ndim == 0 or rank != 4:
        return array
    return array.reshape(-1, 1, 1)


def _rescaling(graph: Graph, layer: Any, node: Any, xs: list[Value]) -> list[Value]:
    x = xs[0]
    scaled = graph.add("Mul", [x.name, graph.const(f"{layer.name}/scale", _channel_constant(layer.scale, x.rank))],
                       layer.name)
    if np.all(np.asarray(layer.offset) == 0):
        return [Value(scaled, x.rank)]
    offset = graph.const(f"{layer.name}/offset", _channel_constant(layer.offset, x.rank))
    return [Value(graph.add("Add", [scaled, offset], layer.name), x.rank)]


def _zero_padding(graph: Graph, layer: Any, node: Any, xs: list[Value]) -> list[Value]:
    if getattr(layer, "data_format", "channels_last") != "channels_last":
        raise NotImplementedError(f"export_onnx: layer {layer.name!r} must use data_format='channels_last'.")
    (top, bottom), (left, right) = layer.padding
    pads = graph.const(f"{layer.name}/pads", [0, 0, top, left, 0, 0, bottom, right], np.int64)
    return [Value(graph.add("Pad", [xs[0].name, pads], layer.name), 4)]


# -- everything else ---------------------------------------------------------------

def _activation_layer(graph: Graph, layer: Any, node: Any, xs: list[Value]) -> list[Value]:
    return [apply_activation(graph, layer.activation, xs[0], layer.name)]


def _relu_layer(graph: Graph, layer: Any, node: Any, xs: list[Value]) -> list[Value]:
    if layer.negative_slope or layer.threshold:
        raise NotImplementedError(f"export_onnx: ReLU {layer.name!r} with negative_slope/threshold.")
    kind = "relu" if layer.max_value is None else "relu6" if float(layer.max_value) == 6 else None
    if kind is None:
        raise NotImplementedError(f"export_onnx: ReLU {layer.name!r} with max_value={layer.max_value}.")
    return [apply_activation(graph, kind, xs[0], layer.name)]


def _softmax_layer(graph: Graph, layer: Any, node: Any, xs: list[Value]) -> list[Value]:
    x = xs[0]
    axis = _AXIS_4D[layer.axis] if x.rank == 4 else layer.axis
    return [Value(graph.add("Softmax", [x.name], layer.name, axis=axis), x.rank)]


def _elementwise(op_type: str) -> Callable:
    def convert(graph: Graph, layer: Any, node: Any, xs: list[Value]) -> list[Value]:
        out = xs[0].name
        for other in xs[1:]:
            out = graph.add(op_type, [out, other.name], layer.name)
        return [Value(out, xs[0].rank)]

    return convert


def _concatenate(graph: Graph, layer: Any, node: Any, xs: list[Value]) -> list[Value]:
    rank = xs[0].rank
    axis = _AXIS_4D[layer.axis] if rank == 4 else layer.axis
    return [Value(graph.add("Concat", [x.name for x in xs], layer.name, axis=axis), rank)]


def _global_pool(op_type: str) -> Callable:
    def convert(graph: Graph, layer: Any, node: Any, xs: list[Value]) -> list[Value]:
        if getattr(layer, "data_format", "channels_last") != "channels_last":
            raise NotImplementedError(f"export_onnx: layer {layer.name!r} must use data_format='channels_last'.")
        pooled = graph.add(op_type, [xs[0].name], layer.name)
        if layer.keepdims:
            return [Value(pooled, 4)]
        return [Value(graph.add("Flatten", [pooled], layer.name, axis=1), 2)]

    return convert


def _flatten(graph: Graph, layer: Any, node: Any, xs: list[Value]) -> list[Value]:
    x = xs[0]
    if x.rank == 4 and tuple(node.input_tensors[0].shape[1:3]) != (1, 1):
        x = Value(graph.add("Transpose", [x.name], layer.name, perm=list(_TO_NHWC)), 4)
    return [Value(graph.add("Flatten", [x.name], layer.name, axis=1), 2)]


def _squeeze_excite(graph: Graph, layer: Any, node: Any, xs: list[Value]) -> list[Value]:
    x = xs[0]
    gate = Value(graph.add("GlobalAveragePool", [x.name], layer.name), 4)
    pooled_shape = (None, 1, 1, None)
    for conv in (layer.squeeze_conv, layer.excite_conv):
        weight = keras.ops.convert_to_numpy(conv.kernel).transpose(3, 2, 0, 1)
        gate = _emit_conv(graph, conv, gate, pooled_shape, weight, 1)
    return [Value(graph.add("Mul", [x.name, gate.name], layer.name), 4)]


def _resize_like(graph: Graph, layer: Any, node: Any, xs: list[Value]) -> list[Value]:
    """Bilinear, half-pixel centres, no antialias: ONNX `Resize` "linear"."""
    images, reference = xs
    int64 = np.int64
    batch_channels = graph.add("Slice", [graph.add("Shape", [images.name], layer.name),
                                         graph.const(f"{layer.name}/zero", [0], int64),
                                         graph.const(f"{layer.name}/two", [2], int64)], layer.name)
    spatial = graph.add("Slice", [graph.add("Shape", [reference.name], layer.name),
                                  graph.const(f"{layer.name}/two", [2], int64),
                                  graph.const(f"{layer.name}/four", [4], int64)], layer.name)
    sizes = graph.add("Concat", [batch_channels, spatial], layer.name, axis=0)
    out = graph.add("Resize", [images.name, "", "", sizes], layer.name, mode="linear",
                    coordinate_transformation_mode="half_pixel")
    return [Value(out, 4)]


def _resize_images(graph: Graph, layer: Any, node: Any, xs: list[Value]) -> list[Value]:
    """The detector's fixed-size bilinear resize (half-pixel, no antialias);
    none when the input already has that size (exactly the identity)."""
    if graph.input_sizes.get(xs[0].name, tuple(node.input_tensors[0].shape[1:3])) == tuple(layer.size):
        return xs
    int64 = np.int64
    batch_channels = graph.add("Slice", [graph.add("Shape", [xs[0].name], layer.name),
                                         graph.const(f"{layer.name}/zero", [0], int64),
                                         graph.const(f"{layer.name}/two", [2], int64)], layer.name)
    sizes = graph.add("Concat", [batch_channels, graph.const(f"{layer.name}/size", layer.size, int64)],
                      layer.name, axis=0)
    out = graph.add("Resize", [xs[0].name, "", "", sizes], layer.name, mode="linear",
                    coordinate_transformation_mode="half_pixel")
    return [Value(out, 4)]


def _reshape(graph: Graph, layer: Any, node: Any, xs: list[Value]) -> list[Value]:
    """Keras `Reshape` (row-major over channels-last); rank-4 outputs are not supported."""
    x = xs[0]
    target = [int(s) for s in layer.target_shape]
    if len(target) == 3:
        raise NotImplementedError(f"export_onnx: Reshape {layer.name!r} to a rank-4 output.")
    if x.rank == 4:  # back to the Keras (NHWC) element order
        x = Value(graph.add("Transpose", [x.name], layer.name, perm=list(_TO_NHWC)), 4)
    shape = graph.const(f"{layer.name}/shape", [0, *target], np.int64)
    return [Value(graph.add("Reshape", [x.name, shape], layer.name), 1 + len(target))]


def _identity(graph: Graph, layer: Any, node: Any, xs: list[Value]) -> list[Value]:
    return xs


CONVERTERS: dict[type, Callable] = {
    keras.layers.Conv2D: _conv2d,
    Conv2D: _conv2d,
    keras.layers.DepthwiseConv2D: _depthwise_conv2d,
    DepthwiseConv2D: _depthwise_conv2d,
    keras.layers.Dense: _dense,
    keras.layers.BatchNormalization: _batch_norm,
    BatchNormalization: _batch_norm,
    keras.layers.Rescaling: _rescaling,
    keras.layers.ZeroPadding2D: _zero_padding,
    keras.layers.Activation: _activation_layer,
    keras.layers.ReLU: _relu_layer,
    keras.layers.Softmax: _softmax_layer,
    keras.layers.Add: _elementwise("Add"),
    keras.layers.Multiply: _elementwise("Mul"),
    keras.layers.Subtract: _elementwise("Sub"),
    keras.layers.Concatenate: _concatenate,
    keras.layers.GlobalAveragePooling2D: _global_pool("GlobalAveragePool"),
    keras.layers.GlobalMaxPooling2D: _global_pool("GlobalMaxPool"),
    keras.layers.Flatten: _flatten,
    keras.layers.Dropout: _identity,
    keras.layers.SpatialDropout2D: _identity,
    keras.layers.Identity: _identity,
    SqueezeAndExcite2D: _squeeze_excite,
    ResizeLike: _resize_like,
    ResizeImages: _resize_images,
    keras.layers.Reshape: _reshape,
}
"""Layer type -> converter `(graph, layer, node, inputs) -> outputs`.

Exact types only: a subclass may change `call`, so it must be registered
itself (add an entry here to support a new layer)."""


def _qat_converters() -> dict[type, Callable]:
    """The quantization-aware twin's layers (`onnx_qat`, imported on first use: it builds on this module)."""
    from mobilenetv3.export.onnx_qat import QAT_CONVERTERS

    return QAT_CONVERTERS


# -- graph walking -------------------------------------------------------------------

def _convert_layer(graph: Graph, layer: Any, node: Any, xs: list[Value]) -> list[Value]:
    if internals.is_functional(layer):
        return _convert_functional(graph, layer, xs)
    converter = CONVERTERS.get(type(layer)) or _qat_converters().get(type(layer))
    if converter is None:
        supported = sorted(t.__name__ for t in (*CONVERTERS, *_qat_converters()))
        raise NotImplementedError(
            f"export_onnx: layer {layer.name!r} of type {type(layer).__name__} is not supported. "
            f"Supported layer types: {', '.join(supported)} and nested functional models; "
            "register a converter in `mobilenetv3.export.onnx_export.CONVERTERS` to add one."
        )
    return converter(graph, layer, node, xs)


def _convert_functional(graph: Graph, model: Any, inputs: list[Value]) -> list[Value]:
    values = {id(t): v for t, v in zip(model.inputs, inputs, strict=False)}
    for node in internals.graph_nodes(model):
        if node.is_input or not node.operation:
            continue
        if any(id(t) not in values for t in node.input_tensors):
            continue
        outputs = _convert_layer(graph, node.operation, node, [values[id(t)] for t in node.input_tensors])
        values.update({id(t): v for t, v in zip(node.outputs, outputs, strict=False)})
    return [values[id(t)] for t in model.outputs]


# -- public API ------------------------------------------------------------------------

def _dim(size: Any, symbol: str) -> Any:
    return symbol if size is None else int(size)


def _check_weight_type(value: str) -> str:
    from mobilenetv3.export.onnx_qat import WEIGHT_TYPES

    if value not in WEIGHT_TYPES:
        raise ValueError(f"`qat_weight_type` must be one of {list(WEIGHT_TYPES)}; got {value!r}.")
    return value


def build_onnx_model(model: keras.Model, channels_first: bool = False, input_size: tuple | None = None,
                     qat_weight_type: str = "uint8") -> Any:
    """The `onnx.ModelProto` of a functional Keras model (see `export_onnx`)."""
    from onnx import TensorProto, helper, numpy_helper

    if not internals.is_functional(model) or len(model.inputs) != 1:
        raise ValueError("`model` must be a functional Keras model with one image input, "
                         f"such as a MobileNetV3 backbone or classifier; got {type(model).__name__}.")
    shape = tuple(model.inputs[0].shape)
    if len(shape) != 4:
        raise ValueError(f"`model` must take rank-4 images (batch, height, width, channels); got shape {shape}.")
    height, width = _check_input_size(input_size, shape)
    graph = Graph()
    _check_weight_type(qat_weight_type)
    dims = ["batch", _dim(height, "height"), _dim(width, "width"), int(shape[3])]
    if channels_first:
        dims = [dims[0], dims[3], dims[1], dims[2]]
        entry = INPUT_NAME
    else:
        entry = graph.add("Transpose", [INPUT_NAME], "input", perm=list(_TO_NCHW))
    if height is not None:  # trace with the fixed size so strided "same" convs get explicit pads
        graph.input_sizes[entry] = (height, width)
        model = _with_input_size(model, height, width)
    names = _output_names(model)
    for name in names:  # reserve the output names
        graph.unique(name)
    outputs = _convert_functional(graph, model, [Value(entry, 4)])
    graph_outputs = []
    for value, name in zip(outputs, names, strict=False):
        if value.rank == 4 and not channels_first:
            graph.add("Transpose", [value.name], name, output=name, perm=list(_TO_NHWC))
        else:
            graph.add("Identity", [value.name], name, output=name)
        graph_outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, [None] * value.rank))
    protected = set(names)
    onnx_passes.fold_pads(graph, protected)
    onnx_passes.fold_batch_norms(graph, protected)
    onnx_passes.pooled_heads_to_gemm(graph, protected)
    if any(node.op_type == "QuantizeLinear" for node in graph.nodes):  # a quantization-aware twin
        from mobilenetv3.export import onnx_qat

        onnx_qat.finish(graph, protected)
    proto_graph = helper.make_graph(
        graph.nodes,
        model.name,
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, dims)],
        graph_outputs,
        initializer=[numpy_helper.from_array(v, k) for k, v in graph.initializers.items()],
    )
    proto = helper.make_model(proto_graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="mobilenetv3")
    proto.ir_version = IR_VERSION
    if qat_weight_type == "uint8":  # a twin's int8 weights as onnxruntime's exact u8 x u8 (no-op for float models)
        from mobilenetv3.export.onnx_int8 import int8_weights_as_uint8

        int8_weights_as_uint8(proto)
    return proto


def _check_input_size(input_size: Any, shape: tuple) -> tuple:
    if input_size is None:
        return shape[1], shape[2]
    if isinstance(input_size, int):
        input_size = (input_size, input_size)
    if (not isinstance(input_size, (tuple, list)) or len(input_size) != 2
            or not all(isinstance(s, int) and s >= 32 for s in input_size)):
        raise ValueError(f"`input_size` must be None, an int or (height, width), each >= 32; got {input_size!r}.")
    for axis, fixed, wanted in zip(("height", "width"), shape[1:3], input_size, strict=False):
        if fixed is not None and fixed != wanted:
            raise ValueError(f"`input_size` {axis} {wanted} differs from the model's fixed {axis} {fixed}.")
    return tuple(input_size)


def _with_input_size(model: keras.Model, height: int, width: int) -> keras.Model:
    """The same layers called on a fixed-size input, so shapes are known."""
    if tuple(model.inputs[0].shape[1:3]) == (height, width):
        return model
    inputs = keras.Input((height, width, model.inputs[0].shape[-1]), name=INPUT_NAME)
    return keras.Model(inputs, model(inputs), name=model.name)


def _output_names(model: keras.Model) -> list[str]:
    struct = internals.outputs_structure(model)
    if isinstance(struct, dict):
        return [str(key) for key in struct]
    names = []
    for tensor in model.outputs:
        base = internals.producer_name(tensor)
        names.append(base if base not in names else f"{base}_{len(names)}")
    return names


def export_onnx(
    model: keras.Model,
    path: str | os.PathLike,
    *,
    channels_first: bool = False,
    input_size: int | tuple[int, int] | None = None,
    qat_weight_type: str = "uint8",
) -> Path:
    """Write a functional Keras model (backbone, classifier, ...) as ONNX.

    The file uses opset 17 with native `HardSwish`/`HardSigmoid`, BatchNorm
    and explicit padding folded into the convolutions, and a dynamic batch
    size. Height and width stay dynamic where the model's input allows it,
    unless `input_size` fixes them (a fixed size lets every convolution use
    explicit pads, which runtimes optimize best). The input is named
    `"images"`; outputs are named after the Keras output layers (or the
    output dict's keys). The file is written atomically.

    A quantization-aware twin (`QATModel` from `quantize_aware`, calibrated
    or trained) exports as its int8 graph, QDQ (`QuantizeLinear` /
    `DequantizeLinear`), with its own learned ranges and folded int8
    weights, and takes no calibration images (see
    `mobilenetv3.export.onnx_qat`): onnxruntime runs its convolutions,
    adds, multiplies and pooling as int8 kernels (`QLinearConv`, ...) and
    hard-swish in float, as the twin computes it.

    Args:
        model: a functional Keras model with one image input.
        path: the `.onnx` file to write.
        channels_first: take `(batch, 3, height, width)` input and give
            rank-4 outputs as NCHW, removing the two layout transposes.
            Default: channels-last, like the Keras model.
        input_size: None, or an int / `(height, width)` to fix the spatial
            size in the graph.
        qat_weight_type: a twin's weight codes: "uint8" (zero point 128,
            the default: onnxruntime's u8u8 kernels, exact on every CPU;
            its u8s8 kernels saturate on x86 CPUs without VNNI) or "int8"
            (what OpenVINO's int8 convolutions take).

    Returns:
        The path written.

    Example:

    ```python
    import numpy as np, onnxruntime
    model = mobilenetv3.MobileNetV3SmallBackbone()
    export_onnx(model, "small.onnx")
    session = onnxruntime.InferenceSession("small.onnx")
    images = np.random.uniform(0, 255, (2, 224, 224, 3)).astype("float32")
    features = session.run(None, {"images": images})[0]  # (2, 7, 7, 576)
    ```
    """
    import onnx

    proto = build_onnx_model(model, channels_first=channels_first, input_size=input_size,
                             qat_weight_type=qat_weight_type)
    onnx.checker.check_model(proto)
    with atomic_path(path) as staging:
        onnx.save(proto, str(staging))
    return Path(path)
