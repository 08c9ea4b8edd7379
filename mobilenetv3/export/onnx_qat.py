"""ONNX QDQ export of a quantization-aware twin (`quantize_aware`): the
converters of its layers for `onnx_export`, and the passes that finish the
graph for onnxruntime's int8 kernels.

Each `FakeQuant` becomes `QuantizeLinear` -> `DequantizeLinear` with the
twin's nudged scale and zero point (uint8 codes: the twin's int8 zero point
+ 128, the same grid). Each `QuantConv` is a `Conv` (or `Gemm`) reading its
folded weights per output channel through `DequantizeLinear` (axis 0): the
twin's symmetric int8 codes, written as uint8 with zero point 128 for
onnxruntime (its u8 x u8 kernels are exact on every CPU; its u8 x i8 kernels
add pairs of products in saturating int16 on x86 CPUs without VNNI) or as
int8 for OpenVINO (`WEIGHT_TYPES`, `onnx_int8.int8_weights_as_uint8`); its bias as int32 on the accumulator's scale (input scale x weight
scale, so that onnxruntime fuses DQ -> Conv -> Q into one `QLinearConv`),
and its fused activation (`Relu` / `Clip`, which onnxruntime folds into the
quantization after it). Hard-sigmoid is `relu6(x + 3)` with the `+ 3`
folded into the conv bias before it, quantized, and read back with the
scale / 6; hard-swish is float between a dequantize and a quantize (no
onnxruntime int8 kernel), as the twin computes it, or, in a twin made with
`hard_swish="add_mul"` (`QuantHardSwish`), `x + 3` quantized on the fixed
[0, 6] grid, read back with scale 1/255 and multiplied by `x`: onnxruntime's
QLinearAdd and QLinearMul. The model input is quantized first; a `Rescaling`
after it runs in float on the dequantized input, so the first convolution
reads float (the rescaled grid has no integer zero point: 0..255 to [-1, 1]
puts zero at code 127.5), unless the twin quantizes the rescaled input
(`quantize_after_rescaling`): then the file rescales its float input and
the first convolution is a QLinearConv.
"""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import keras
import numpy as np

from mobilenetv3.export import onnx_passes
from mobilenetv3.export.onnx_graph import Graph, Value, apply_activation, conv_pads
from mobilenetv3.quantization.layers import (
    HARD_SIGMOID_GRID,
    QMAX,
    QMIN,
    WEIGHT_QMAX,
    FakeQuant,
    QuantConv,
    QuantHardSigmoid,
    QuantHardSwish,
    QuantSqueezeExcite,
    quantization_grid,
)

UINT8_OFFSET = 128  # uint8 code = int8 code + 128 (same grid)
ACTIVATION_TYPES = ("uint8", "int8")
# Weight codes: the twin's symmetric int8 codes as uint8 with zero point 128
# (the same grid; onnxruntime then runs u8u8 kernels, exact on every CPU:
# its u8s8 kernels sum pairs of products in int16 on x86 CPUs without VNNI,
# measured up to 122 output steps off on AVX2), or as int8 (OpenVINO, whose
# int8 convolutions need int8 weights).
WEIGHT_TYPES = ("uint8", "int8")


# -- activations: FakeQuant -> QuantizeLinear + DequantizeLinear --------------------

def fake_quant_grid(layer: FakeQuant) -> tuple[np.float32, int]:
    """`(scale, int8 zero point)` of a calibrated `FakeQuant`, computed as
    the twin computes them (float32 `quantization_grid`)."""
    if float(keras.ops.convert_to_numpy(layer.initialized)) <= 0:
        raise ValueError(f"FakeQuant {layer.name!r} has no range yet: calibrate the twin (`calibrate_ranges`) "
                         "or train it before exporting it to int8.")
    scale, low, _ = (keras.ops.convert_to_numpy(v) for v in quantization_grid(
        keras.ops.convert_to_tensor(layer.range_min), keras.ops.convert_to_tensor(layer.range_max)))
    return np.float32(scale), int(np.round(QMIN - low / scale))


def _activation_codes(graph: Graph, name: str, int8_codes: Any) -> str:
    """A constant of activation codes given as int8, in the graph's activation type."""
    uint8 = graph.activation_type == "uint8"
    return graph.const(name, np.asarray(int8_codes) + (UINT8_OFFSET if uint8 else 0), np.uint8 if uint8 else np.int8)


def _quantize(graph: Graph, x: Value, scale: Any, zero_point: int, name: str, read_scale: Any = None) -> Value:
    """x -> QuantizeLinear(scale, zero point) -> DequantizeLinear(read_scale or scale)."""
    zero = _activation_codes(graph, f"{name}/zero_point", zero_point)
    codes = graph.add("QuantizeLinear", [x.name, graph.const(f"{name}/scale", scale), zero], name)
    read = graph.const(f"{name}/read_scale", scale if read_scale is None else read_scale)
    return Value(graph.add("DequantizeLinear", [codes, read, zero], name), x.rank)


def _fake_quant(graph: Graph, layer: FakeQuant, node: Any, xs: list[Value]) -> list[Value]:
    scale, zero_point = fake_quant_grid(layer)
    return [_quantize(graph, xs[0], scale, zero_point, layer.name)]


# -- convolutions with int8 per-channel weights --------------------------------------

def quantized_kernel(layer: QuantConv) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`(int8 codes, per-output-channel scale, float bias)` of a `QuantConv`'s
    folded kernel in the Keras layout, as `fake_quantize_weights` rounds it."""
    kernel, bias = (keras.ops.convert_to_numpy(v).astype(np.float32) for v in layer.folded_kernel_and_bias())
    scale = np.max(np.abs(kernel), axis=layer._kernel_axes(), keepdims=True) / np.float32(WEIGHT_QMAX)
    scale = np.where(scale > 0, scale, np.float32(1)).astype(np.float32)
    codes = np.round(kernel / scale).astype(np.int8)
    return codes, scale.reshape(-1), bias


def _weights(graph: Graph, name: str, codes: np.ndarray, scale: np.ndarray, axis: int) -> str:
    zero = graph.const(f"{name}/kernel_zero_point", np.zeros(scale.shape, np.int8), np.int8)
    return graph.add("DequantizeLinear", [graph.const(f"{name}/kernel_int8", codes, np.int8),
                                          graph.const(f"{name}/kernel_scale", scale), zero],
                     f"{name}/kernel", axis=axis)


def _quant_conv(graph: Graph, layer: QuantConv, node: Any, xs: list[Value]) -> list[Value]:
    conv, x = layer.conv, xs[0]
    codes, scale, bias = quantized_kernel(layer)
    if isinstance(conv, keras.layers.Dense) and x.rank == 2:
        inputs = [x.name, _weights(graph, layer.name, codes, scale, axis=1), graph.const(f"{layer.name}/bias", bias)]
        out = Value(graph.add("Gemm", inputs, layer.name), 2)
        return [apply_activation(graph, conv.activation, out, f"{layer.name}/activation")]
    if isinstance(conv, keras.layers.Dense):
        if x.rank != 4:
            raise NotImplementedError(f"export_onnx: Dense layer {layer.name!r} on a rank-{x.rank} input.")
        weight, group, kernel, pads = codes.T[:, :, None, None], 1, (1, 1), {"pads": [0, 0, 0, 0]}
        strides = dilations = (1, 1)
    else:
        if isinstance(conv, keras.layers.DepthwiseConv2D):
            kh, kw, channels, multiplier = codes.shape
            weight, group = codes.reshape(kh, kw, channels * multiplier).transpose(2, 0, 1)[:, None], channels
        else:
            weight, group = codes.transpose(3, 2, 0, 1), 1
        kernel, strides, dilations = tuple(weight.shape[2:]), conv.strides, conv.dilation_rate
        pads = conv_pads(conv, node.input_tensors[0].shape, kernel)
    inputs = [x.name, _weights(graph, layer.name, weight, scale, axis=0), graph.const(f"{layer.name}/bias", bias)]
    out = graph.add("Conv", inputs, layer.name, kernel_shape=list(kernel), strides=list(strides),
                    dilations=list(dilations), group=group, **pads)
    return [apply_activation(graph, conv.activation, Value(out, 4), f"{layer.name}/activation")]


# -- hard-sigmoid and squeeze-excite --------------------------------------------------

def _hard_sigmoid(graph: Graph, inner: FakeQuant, x: Value, name: str) -> Value:
    """`inner_quant(relu6(x + 3)) / 6`; the `/ 6` is the dequantize's scale."""
    plus_three = graph.add("Add", [x.name, graph.const(f"{name}/three", 3.0)], name)
    relu6 = graph.add("Clip", [plus_three, graph.const(f"{name}/min", 0.0), graph.const(f"{name}/max", 6.0)], name)
    scale, zero_point = fake_quant_grid(inner)
    return _quantize(graph, Value(relu6, x.rank), scale, zero_point, inner.name, read_scale=scale / np.float32(6))


def _quant_hard_sigmoid(graph: Graph, layer: QuantHardSigmoid, node: Any, xs: list[Value]) -> list[Value]:
    return [_hard_sigmoid(graph, layer.inner_quant, xs[0], layer.name)]


def _quant_hard_swish(graph: Graph, layer: QuantHardSwish, node: Any, xs: list[Value]) -> list[Value]:
    """`x * q(x + 3) / 6`: `q` saturates to the fixed [0, 6] grid (zero point
    at code 0 of uint8) and is read back with scale 1/255 (the `/ 6`);
    onnxruntime fuses the add and the multiply of dequantized tensors, each
    quantized after, into QLinearAdd and QLinearMul."""
    x, name = xs[0], layer.name
    low, high = HARD_SIGMOID_GRID
    step = np.float32((high - low) / (QMAX - QMIN))
    three = graph.add("DequantizeLinear", [  # 3 exactly: the top code on [0, 3]
        _activation_codes(graph, f"{name}/three_codes", QMAX), graph.const(f"{name}/three_scale", np.float32(3 / 255)),
        _activation_codes(graph, f"{name}/three_zero_point", QMIN)], f"{name}/three")
    plus_three = Value(graph.add("Add", [x.name, three], name), x.rank)
    gate = _quantize(graph, plus_three, step, QMIN, f"{name}/hard_sigmoid", read_scale=step / np.float32(high))
    return [Value(graph.add("Mul", [x.name, gate.name], name), x.rank)]


def _activate(graph: Graph, layer: QuantSqueezeExcite, x: Value, activation: str, pre_quant: Any,
              name: str) -> Value:
    if pre_quant is not None:
        x = _fake_quant(graph, pre_quant, None, [x])[0]
    if activation == "hard_sigmoid" and layer.gate_activation is not None and pre_quant is None:
        return _hard_sigmoid(graph, layer.gate_activation.inner_quant, x, f"{name}/hard_sigmoid")
    return apply_activation(graph, keras.activations.get(activation), x, f"{name}/activation")


def _quant_squeeze_excite(graph: Graph, layer: QuantSqueezeExcite, node: Any, xs: list[Value]) -> list[Value]:
    x, pooled_node = xs[0], _Pooled()
    pooled = _fake_quant(graph, layer.pool_quant, None, [Value(graph.add("GlobalAveragePool", [x.name],
                                                                          layer.name), 4)])[0]
    squeezed = _quant_conv(graph, layer.squeeze, pooled_node, [pooled])[0]
    squeezed = _activate(graph, layer, squeezed, layer.squeeze_activation, layer.squeeze_pre_quant,
                         f"{layer.name}/squeeze")
    squeezed = _fake_quant(graph, layer.squeeze_quant, None, [squeezed])[0]
    gate = _quant_conv(graph, layer.excite, pooled_node, [squeezed])[0]
    gate = _activate(graph, layer, gate, layer.excite_activation, layer.excite_pre_quant, f"{layer.name}/excite")
    gate = _fake_quant(graph, layer.gate_quant, None, [gate])[0]
    product = Value(graph.add("Mul", [x.name, gate.name], layer.name), 4)
    return [_fake_quant(graph, layer.output_quant, None, [product])[0]]


class _Pooled:
    """The node stand-in of a 1x1 conv on a pooled map (its input shape)."""

    input_tensors = (SimpleNamespace(shape=(None, 1, 1, None)),)


QAT_CONVERTERS: dict[type, Callable] = {
    FakeQuant: _fake_quant,
    QuantConv: _quant_conv,
    QuantHardSigmoid: _quant_hard_sigmoid,
    QuantHardSwish: _quant_hard_swish,
    QuantSqueezeExcite: _quant_squeeze_excite,
}
"""The twin's layer types -> converters (`onnx_export.CONVERTERS` asks here next)."""


# -- finishing passes -------------------------------------------------------------------

def _producers(graph: Graph) -> dict[str, Any]:
    return {out: node for node in graph.nodes for out in node.output}


def _consumer_counts(graph: Graph) -> dict[str, int]:
    counts: dict[str, int] = {}
    for node in graph.nodes:
        for name in node.input:
            counts[name] = counts.get(name, 0) + 1
    return counts


def fold_adds_into_bias(graph: Graph, protected: set[str]) -> None:
    """Conv -> Add(scalar constant) (hard-sigmoid's `+ 3`) -> the conv's bias
    plus the constant, where the conv's output has no other reader."""
    producers, counts, removed = _producers(graph), _consumer_counts(graph), set()
    for add in [n for n in graph.nodes if n.op_type == "Add"]:
        conv = producers.get(add.input[0])
        constant = graph.initializers.get(add.input[1])
        if (conv is None or conv.op_type not in ("Conv", "Gemm") or constant is None or constant.size != 1
                or counts.get(add.input[0]) != 1 or add.input[0] in protected or len(conv.input) < 3):
            continue
        graph.initializers[conv.input[2]] = graph.initializers[conv.input[2]] + constant.reshape(())
        conv.output[0] = add.output[0]
        removed.add(id(add))
    graph.nodes = [n for n in graph.nodes if id(n) not in removed]


def _scale_of(graph: Graph, producers: dict, name: str) -> np.ndarray | None:
    node = producers.get(name)
    if node is None or node.op_type != "DequantizeLinear":
        return None
    return graph.initializers.get(node.input[1])


def int32_biases(graph: Graph) -> None:
    """A float bias of a conv (or Gemm) whose input and weights are both
    dequantized -> int32 on the accumulator's scale (input scale x weight
    scale) through a DequantizeLinear, the form onnxruntime fuses into one
    int8 convolution. The rounding is at most half an accumulator step."""
    producers, nodes = _producers(graph), list(graph.nodes)
    for conv in [n for n in nodes if n.op_type in ("Conv", "Gemm") and len(n.input) == 3]:
        in_scale, w_scale = _scale_of(graph, producers, conv.input[0]), _scale_of(graph, producers, conv.input[1])
        bias = graph.initializers.get(conv.input[2])
        if in_scale is None or w_scale is None or bias is None or in_scale.size != 1:
            continue
        scale = (in_scale.astype(np.float64) * w_scale.astype(np.float64)).astype(np.float32)
        codes = np.round(bias.astype(np.float64) / scale).astype(np.int32)
        conv.input[2] = graph.add("DequantizeLinear", [
            graph.const(f"{conv.name}/bias_int32", codes, np.int32), graph.const(f"{conv.name}/bias_scale", scale),
            graph.const(f"{conv.name}/bias_zero_point", np.zeros(scale.shape, np.int32), np.int32)],
            f"{conv.name}/bias", axis=0)
        index = next(i for i, n in enumerate(graph.nodes) if n is conv)
        graph.nodes.insert(index, graph.nodes.pop())  # before its reader


_HEAD_FLOAT_OPS = ("HardSwish", "Relu", "Clip", "HardSigmoid", "Sigmoid")


def _pooled_head(graph: Graph, pool: Any, protected: set[str]) -> list[Any] | None:
    """The nodes from a global pool's quantize to a Flatten: quantize /
    dequantize pairs, pointwise convs and float activations, or None."""
    def accepts(node: Any, tensor: str) -> bool:
        if node.op_type == "Conv":
            return node.input[0] == tensor and _pointwise(graph, node)
        return node.op_type in ("QuantizeLinear", "DequantizeLinear", *_HEAD_FLOAT_OPS)

    chain = onnx_passes.pooled_chain(graph, pool, protected, accepts, _add_mul_hard_swish)
    if chain and chain[0].op_type == "QuantizeLinear" and any(n.op_type == "Conv" for n in chain):
        return chain
    return None


def _add_mul_hard_swish(users: dict[str, list[Any]], tensor: str) -> list[Any] | None:
    """The Add, QuantizeLinear, DequantizeLinear and Mul of an add-and-multiply
    hard-swish (`_quant_hard_swish`) of `tensor`, or None."""
    readers = users.get(tensor, [])
    add = next((n for n in readers if n.op_type == "Add"), None)
    mul = next((n for n in readers if n.op_type == "Mul"), None)
    if len(readers) != 2 or add is None or mul is None:
        return None
    quantize = users.get(add.output[0], [None])[0]
    dequantize = users.get(quantize.output[0], [None])[0] if quantize is not None else None
    gate_readers = users.get(dequantize.output[0], []) if dequantize is not None else []
    if (quantize.op_type, dequantize.op_type) != ("QuantizeLinear", "DequantizeLinear") \
            or len(gate_readers) != 1 or gate_readers[0] is not mul:
        return None
    return [add, quantize, dequantize, mul]


def _pointwise(graph: Graph, conv: Any) -> bool:
    weight = _producers(graph).get(conv.input[1])
    codes = graph.initializers.get(weight.input[0]) if weight is not None else None
    attrs = {a.name: graph.helper.get_attribute_value(a) for a in conv.attribute}
    return (codes is not None and codes.shape[2:] == (1, 1) and attrs.get("group", 1) == 1
            and not any(attrs.get("pads", [])) and set(attrs.get("strides", [1])) == {1})


def pooled_heads_to_gemm(graph: Graph, protected: set[str]) -> None:
    """Global pool -> Q -> DQ -> 1x1 convs (and their Q/DQ, activations,
    add-and-multiply hard-swishes) -> Flatten becomes the same with the Flatten on the pool's uint8 codes
    and each conv a Gemm (int8 weights, axis 0 with `transB`), which
    onnxruntime runs as one batched QGemm and OpenVINO as FullyConnected
    (the QDQ form of `onnx_passes.pooled_heads_to_gemm`)."""
    for pool in [n for n in graph.nodes if n.op_type in ("GlobalAveragePool", "GlobalMaxPool")]:
        chain = _pooled_head(graph, pool, protected)
        if chain is None:
            continue
        quantize, *body, flatten = chain
        flat = graph.unique(f"{pool.name}/flat")
        graph.nodes.insert(next(i for i, n in enumerate(graph.nodes) if n is quantize) + 1, graph.helper.make_node(
            "Flatten", [quantize.output[0]], [flat], name=graph.unique(f"{pool.name}/Flatten"), axis=1))
        body[0].input[0] = flat
        producers = _producers(graph)
        for index, node in enumerate(body):
            if node.op_type == "Conv":
                weight = producers[node.input[1]]
                codes = graph.initializers[weight.input[0]]
                graph.initializers[weight.input[0]] = codes[:, :, 0, 0]
                gemm = graph.helper.make_node("Gemm", list(node.input), list(node.output), name=node.name, transB=1)
                graph.nodes[next(i for i, n in enumerate(graph.nodes) if n is node)] = gemm
                body[index] = gemm
        body[-1].output[0] = flatten.output[0]
        graph.nodes = [n for n in graph.nodes if n is not flatten]


def finish(graph: Graph, protected: set[str]) -> None:
    """The QDQ passes, after `onnx_passes` (see the module docstring)."""
    pooled_heads_to_gemm(graph, protected)
    fold_adds_into_bias(graph, protected)
    int32_biases(graph)
    used = {name for n in graph.nodes for name in n.input}
    graph.initializers = {k: v for k, v in graph.initializers.items() if k in used}
