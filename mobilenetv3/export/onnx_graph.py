"""The ONNX graph an export writes: named values, nodes and float32
initializers (`Graph`), shared by the layer converters (`onnx_export`) and
the optimisation passes (`onnx_passes`)."""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any

import numpy as np


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
