"""Optimisation passes over an exported ONNX graph (`onnx_graph.Graph`):
explicit Pad nodes and BatchNormalization folded into the convolutions,
and pooled 1x1 convolution heads turned into Gemm."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np

from mobilenetv3.export.onnx_graph import Graph
from mobilenetv3.runtime.batch_norm_folding import batch_norm_affine


def _consumers(nodes: list[Any]) -> Counter:
    return Counter(name for node in nodes for name in node.input)


def _producers(nodes: list[Any]) -> dict[str, Any]:
    return {out: node for node in nodes for out in node.output}


def _attr(node: Any, name: str) -> Any:
    from onnx import helper

    for attribute in node.attribute:
        if attribute.name == name:
            return helper.get_attribute_value(attribute)
    return None


def _set_attr(node: Any, name: str, value: Any) -> None:
    from onnx import helper

    kept = [a for a in node.attribute if a.name != name]
    del node.attribute[:]
    node.attribute.extend(kept + [helper.make_attribute(name, value)])


def fold_pads(graph: Graph, protected: set[str]) -> None:
    """Pad -> Conv with explicit pads: add the padding to the conv's pads."""
    consumers, removed = _consumers(graph.nodes), set()
    for pad in [n for n in graph.nodes if n.op_type == "Pad"]:
        users = [n for n in graph.nodes if pad.output[0] in n.input]
        if consumers[pad.output[0]] != 1 or pad.output[0] in protected or users[0].op_type != "Conv":
            continue
        conv = users[0]
        if _attr(conv, "auto_pad") not in (None, b"NOTSET", "NOTSET"):
            continue
        extra = graph.initializers[pad.input[1]]
        pads = list(_attr(conv, "pads") or [0, 0, 0, 0])
        _set_attr(conv, "pads", [pads[0] + int(extra[2]), pads[1] + int(extra[3]),
                                 pads[2] + int(extra[6]), pads[3] + int(extra[7])])
        conv.input[0] = pad.input[0]
        removed.add(id(pad))
    graph.nodes = [n for n in graph.nodes if id(n) not in removed]


def fold_batch_norms(graph: Graph, protected: set[str]) -> None:
    """BatchNormalization after a Conv (sole consumer) -> new conv weights;
    any other BatchNormalization -> Mul + Add."""
    consumers, producers = _consumers(graph.nodes), _producers(graph.nodes)
    result = []
    for node in graph.nodes:
        if node.op_type != "BatchNormalization":
            result.append(node)
            continue
        parameters = (graph.initializers[n].astype(np.float64) for n in node.input[1:])
        scale, shift = batch_norm_affine(*parameters, _attr(node, "epsilon"))
        conv = producers.get(node.input[0])
        foldable = conv is not None and conv.op_type == "Conv" and consumers[node.input[0]] == 1
        if foldable and node.input[0] not in protected:
            _fold_into_conv(graph, conv, scale, shift)
            conv.output[0] = node.output[0]
        else:
            shape = (-1, 1, 1) if graph.batch_norm_ranks[node.output[0]] == 4 else (-1,)
            mul = graph.helper.make_node("Mul", [node.input[0], graph.const(f"{node.name}/scale", scale.reshape(shape))],
                                         [graph.unique(f"{node.name}/scaled")], name=graph.unique(f"{node.name}/Mul"))
            add = graph.helper.make_node("Add", [mul.output[0], graph.const(f"{node.name}/shift", shift.reshape(shape))],
                                         [node.output[0]], name=graph.unique(f"{node.name}/Add"))
            result += [mul, add]
    graph.nodes = result
    used = {name for n in graph.nodes for name in n.input}
    graph.initializers = {k: v for k, v in graph.initializers.items() if k in used}


def _fold_into_conv(graph: Graph, conv: Any, scale: np.ndarray, shift: np.ndarray) -> None:
    weight = graph.initializers[conv.input[1]].astype(np.float64)
    bias = graph.initializers[conv.input[2]].astype(np.float64) if len(conv.input) > 2 else 0.0
    graph.initializers[conv.input[1]] = (weight * scale[:, None, None, None]).astype(np.float32)
    new_bias = graph.const(f"{conv.name}/folded_bias", bias * scale + shift)
    if len(conv.input) > 2:
        conv.input[2] = new_bias
    else:
        conv.input.append(new_bias)


_UNARY = {"Relu", "HardSwish", "HardSigmoid", "Sigmoid", "Tanh", "Clip"}


def _is_pointwise_conv(graph: Graph, node: Any) -> bool:
    weight = graph.initializers.get(node.input[1]) if node.op_type == "Conv" else None
    return (weight is not None and weight.shape[2:] == (1, 1) and (_attr(node, "group") or 1) == 1
            and not any(_attr(node, "pads") or []) and set(_attr(node, "strides") or [1]) == {1})


def pooled_chain(graph: Graph, pool: Any, protected: set[str], accepts: Callable[[Any, str], bool],
                 branch: Callable[[dict, str], list[Any] | None] | None = None) -> list[Any] | None:
    """The single-reader chain of nodes from a global pool's output to a
    `Flatten` (axis 1), the `Flatten` last, each node before it one that
    `accepts(node, its input tensor)`; None where the chain branches, meets
    a `protected` tensor or a node it does not accept. Where a tensor has
    several readers, `branch(readers by tensor, tensor)` may give the nodes
    (in graph order) of a branching that joins again in its last node."""
    users: dict[str, list[Any]] = {}
    for node in graph.nodes:
        for name in node.input:
            users.setdefault(name, []).append(node)
    chain, tensor = [], pool.output[0]
    while True:
        following = users.get(tensor, [])
        joined = branch(users, tensor) if branch is not None and len(following) > 1 else None
        if joined and tensor not in protected:
            chain += joined
            tensor = joined[-1].output[0]
            continue
        if len(following) != 1 or tensor in protected:
            return None
        node = following[0]
        if node.op_type == "Flatten" and (_attr(node, "axis") or 1) == 1:
            return [*chain, node]
        if not accepts(node, tensor):
            return None
        chain.append(node)
        tensor = node.output[0]


def _pooled_head_chain(graph: Graph, pool: Any, protected: set[str]) -> list[Any] | None:
    """The 1x1 convs and activations between a global pool and a Flatten, or None."""
    chain = pooled_chain(graph, pool, protected,
                         lambda node, _: node.op_type in _UNARY or _is_pointwise_conv(graph, node))
    return chain if chain and any(n.op_type == "Conv" for n in chain) else None


def pooled_heads_to_gemm(graph: Graph, protected: set[str]) -> None:
    """Global pool -> 1x1 convs -> Flatten becomes Flatten -> Gemm: on a 1x1
    map a convolution is a matrix product, and runtimes batch Gemm far better
    than per-image 1x1 convolutions (the classifier head)."""
    for pool in [n for n in graph.nodes if n.op_type in ("GlobalAveragePool", "GlobalMaxPool")]:
        chain = _pooled_head_chain(graph, pool, protected)
        if chain is None:
            continue
        *body, flatten = chain
        flat = graph.unique(f"{pool.name}/flat")
        graph.nodes.insert(graph.nodes.index(pool) + 1, graph.helper.make_node(
            "Flatten", [pool.output[0]], [flat], name=graph.unique(f"{pool.name}/Flatten"), axis=1))
        body[0].input[0] = flat
        for index, node in enumerate(body):
            if node.op_type == "Conv":
                weight = graph.initializers[node.input[1]]
                bias = graph.initializers[node.input[2]] if len(node.input) > 2 else np.zeros(weight.shape[0], np.float32)
                gemm = graph.helper.make_node(
                    "Gemm", [node.input[0], graph.const(f"{node.name}/matrix", weight[:, :, 0, 0]),
                             graph.const(f"{node.name}/gemm_bias", bias)],
                    list(node.output), name=node.name, transB=1)
                graph.nodes[graph.nodes.index(node)] = gemm
                body[index] = gemm
        body[-1].output[0] = flatten.output[0]
        graph.nodes.remove(flatten)
    used = {name for n in graph.nodes for name in n.input}
    graph.initializers = {k: v for k, v in graph.initializers.items() if k in used}
