"""The ONNX graph an export writes: named values, nodes and float32
initializers (`Graph`), shared by the layer converters (`onnx_export`) and
the optimisation passes (`onnx_passes`), with the activation and padding
nodes every converter writes (`apply_activation`, `conv_pads`)."""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any

import numpy as np

from mobilenetv3.core.architectures import same_padding


@dataclasses.dataclass(frozen=True)
class Value:
    """The ONNX tensor standing for one Keras tensor (rank-4 ones are NCHW)."""

    name: str
    rank: int


class Graph:
    """Nodes and float32 initializers of the graph being written."""

    def __init__(self) -> None:
        from onnx import helper

        self.helper = helper
        self.nodes: list[Any] = []
        self.initializers: dict[str, np.ndarray] = {}
        self._names: Counter = Counter()
        self.batch_norm_ranks: dict[str, int] = {}
        self.input_sizes: dict[str, tuple] = {}  # the graph input's fixed (height, width), by value name
        self.activation_type = "uint8"  # the codes of a quantization-aware twin's activations (`onnx_qat`)

    def unique(self, base: str) -> str:
        self._names[base] += 1
        count = self._names[base]
        return base if count == 1 else f"{base}_{count - 1}"

    def const(self, base: str, array: Any, dtype: Any = np.float32) -> str:
        name = self.unique(base)
        self.initializers[name] = np.asarray(array, dtype=dtype)
        return name

    def add(self, op_type: str, inputs: list[str], name: str, output: str | None = None, **attrs: Any) -> str:
        output = output or self.unique(name)
        self.nodes.append(self.helper.make_node(op_type, inputs, [output], name=self.unique(f"{name}/{op_type}"), **attrs))
        return output


def _activation_name(activation: Any) -> str:
    if activation is None:
        return "linear"
    name = getattr(activation, "__name__", None) or str(activation)
    return {"hard_silu": "hard_swish", "silu": "swish"}.get(name, name)


def apply_activation(graph: Graph, activation: Any, x: Value, name: str) -> Value:
    """`activation` (a Keras activation or its name) applied to `x` as ONNX nodes."""
    kind = _activation_name(activation)
    if kind == "linear":
        return x
    simple = {"relu": "Relu", "hard_swish": "HardSwish", "sigmoid": "Sigmoid", "tanh": "Tanh"}
    if kind in simple:
        return Value(graph.add(simple[kind], [x.name], name), x.rank)
    if kind == "hard_sigmoid":  # Keras 3: relu6(x + 3) / 6
        return Value(graph.add("HardSigmoid", [x.name], name, alpha=1 / 6, beta=0.5), x.rank)
    if kind == "relu6":
        low, high = graph.const(f"{name}/min", 0.0), graph.const(f"{name}/max", 6.0)
        return Value(graph.add("Clip", [x.name, low, high], name), x.rank)
    if kind == "softmax":
        return Value(graph.add("Softmax", [x.name], name, axis=1 if x.rank == 4 else -1), x.rank)
    if kind == "swish":
        gate = graph.add("Sigmoid", [x.name], name)
        return Value(graph.add("Mul", [x.name, gate], name), x.rank)
    raise NotImplementedError(
        f"export_onnx: activation {kind!r} of layer {name!r} is not supported; supported: "
        "linear, relu, relu6, hard_swish, hard_sigmoid, sigmoid, swish, tanh, softmax."
    )


def conv_pads(layer: Any, in_shape: tuple, kernel: tuple) -> dict:
    """ONNX `pads`/`auto_pad` of a Keras conv `layer` reproducing "valid"/"same" (TF SAME)."""
    if layer.padding == "valid":
        return {"pads": [0, 0, 0, 0]}
    if layer.padding != "same":
        raise NotImplementedError(f"export_onnx: padding {layer.padding!r} of layer {layer.name!r} is not supported.")
    before, after = [], []
    for size, k, s, d in zip(in_shape[1:3], kernel, layer.strides, layer.dilation_rate, strict=False):
        if size is None:
            if s > 1:
                return {"auto_pad": "SAME_UPPER"}
            size = d * (k - 1) + 1  # stride 1: the padding does not depend on the size
        top, bottom, _ = same_padding(size, k, s, d)
        before.append(top)
        after.append(bottom)
    return {"pads": before + after}
