"""A per-layer roofline: FLOPs and bytes of a Keras model, and this machine's limits.

Part of the peer-comparison benchmark (`benchmarks/harness.py` reports each
row's fraction of this limit); it lives beside the harness, not in the
installed package.

`layer_costs` walks a built functional Keras model (nested models included)
and gives each layer's arithmetic (FLOPs, 2 per multiply-add) and the bytes
it must move at least (weights, its input and its output once). Every
deployment path folds BatchNorm into the convolutions and fuses activations
into the op before them, so those cost nothing here; squeeze-and-excite
reads its input twice (pool, then scale) and writes it once.

`measure_machine` measures the sustained sgemm rate (the arithmetic peak:
sgemm runs at the FMA units' limit, and no kernel, depthwise included, does
more FLOP/s), the in-cache copy bandwidth and, for reference, the DRAM
bandwidth, with numpy. `lower_bound_seconds` adds up, layer by layer, the
larger of compute time (at the sgemm rate) and memory time (every byte at
the in-cache bandwidth: a runtime may keep activations and weights in cache
between layers, and the fastest ones do). No fp32 path can run a model
faster on this machine, so `images_per_second * lower_bound` is the
fraction of the limit a path reaches (int8 and bf16 paths do cheaper
arithmetic and move fewer bytes, so they may exceed 1).

Example (from the checkout's `benchmarks/` folder, or with it on `sys.path`):

```python
import mobilenetv3
import roofline
model = mobilenetv3.MobileNetV3LargeBackbone(input_shape=(224, 224, 3))
costs = roofline.layer_costs(model)
print(roofline.total_macs(costs) / 1e6)  # ~217 with a 1000-class head
rates = roofline.measure_machine(seconds=0.5)
print(1 / roofline.lower_bound_seconds(costs, rates, batch=32), "images/s at most")
```
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

KINDS = ("gemm", "vector")


@dataclass(frozen=True)
class LayerCost:
    """One layer's work per image: FLOPs, weight bytes and activation bytes moved."""

    name: str
    kind: str  # "gemm" (convolution, dense) or "vector" (depthwise, elementwise, pooling)
    flops: float
    weight_bytes: float
    activation_bytes: float
    macs: float = 0.0


@dataclass(frozen=True)
class MachineRates:
    """Sustained rates: sgemm FLOP/s (the arithmetic peak), in-cache and DRAM bytes/s."""

    gemm_flops: float
    bandwidth: float  # in-cache copy: what the bound uses
    dram_bandwidth: float = math.nan  # for reference


def _size(shape: Any) -> int:
    """Elements per image of a (batch, ...) shape."""
    return int(math.prod(int(d) for d in shape[1:]))


def _calls(layer: Any) -> list[tuple[Any, Any]]:
    """(input shape, output shape) of each call of a layer in a built model."""
    out = []
    for node in getattr(layer, "_inbound_nodes", []):
        if node.input_tensors and node.output_tensors:
            out.append((tuple(node.input_tensors[0].shape), tuple(node.output_tensors[0].shape)))
    return out


def _activation_flops(activation: Any) -> int:
    name = getattr(activation, "__name__", str(activation))
    return {"linear": 0, "relu": 1, "hard_sigmoid": 3, "hard_swish": 4, "hard_silu": 4}.get(name, 4)


def _conv_cost(layer: Any, shapes: tuple, element: int) -> LayerCost:
    import keras

    (in_shape, out_shape) = shapes
    kernel = layer.kernel.shape  # (kh, kw, in / groups, out) or (kh, kw, in, multiplier)
    outputs = _size(out_shape)
    depthwise = isinstance(layer, keras.layers.DepthwiseConv2D)
    taps = kernel[0] * kernel[1] * (1 if depthwise else kernel[2])
    macs = outputs * taps
    flops = 2 * macs + outputs * (_activation_flops(layer.activation) + bool(layer.use_bias))
    weights = int(np.prod(kernel)) + (int(layer.bias.shape[0]) if layer.use_bias else 0)
    moved = (_size(in_shape) + outputs) * element
    return LayerCost(layer.name, "vector" if depthwise else "gemm", flops, weights * 4, moved, macs)


def _dense_cost(layer: Any, shapes: tuple, element: int) -> LayerCost:
    (in_shape, out_shape) = shapes
    macs = _size(in_shape) * int(out_shape[-1])
    flops = 2 * macs + _size(out_shape) * (_activation_flops(layer.activation) + bool(layer.use_bias))
    weights = int(np.prod(layer.kernel.shape)) + (int(layer.bias.shape[0]) if layer.use_bias else 0)
    return LayerCost(layer.name, "gemm", flops, weights * 4, (_size(in_shape) + _size(out_shape)) * element, macs)


def _squeeze_excite_cost(layer: Any, shapes: tuple, element: int) -> LayerCost:
    (in_shape, _) = shapes
    size, channels, bottleneck = _size(in_shape), int(in_shape[-1]), layer.bottleneck_filters
    macs = 2 * channels * bottleneck
    flops = 2 * size + 2 * macs + 4 * (channels + bottleneck)  # pool, two 1x1 convs, scale
    weights = 2 * channels * bottleneck + channels + bottleneck
    return LayerCost(layer.name, "vector", flops, weights * 4, 3 * size * element, macs)


def _elementwise_cost(layer: Any, shapes: tuple, element: int, flops_per: int, reads: int) -> LayerCost:
    (in_shape, out_shape) = shapes
    size = max(_size(in_shape), _size(out_shape))
    return LayerCost(layer.name, "vector", flops_per * size, 0, (reads * _size(in_shape) + _size(out_shape)) * element)


def _layer_cost(layer: Any, shapes: tuple, element: int) -> LayerCost | None:
    import keras

    from mobilenetv3.nets.layers import SqueezeAndExcite2D

    if isinstance(layer, keras.layers.Conv2D | keras.layers.DepthwiseConv2D):
        return _conv_cost(layer, shapes, element)
    if isinstance(layer, keras.layers.Dense):
        return _dense_cost(layer, shapes, element)
    if isinstance(layer, SqueezeAndExcite2D):
        return _squeeze_excite_cost(layer, shapes, element)
    if isinstance(layer, keras.layers.Add | keras.layers.Multiply):
        return _elementwise_cost(layer, shapes, element, 1, 2)
    if isinstance(layer, keras.layers.GlobalAveragePooling2D | keras.layers.AveragePooling2D):
        return _elementwise_cost(layer, shapes, element, 1, 1)
    if isinstance(layer, keras.layers.Rescaling):
        return _elementwise_cost(layer, shapes, element, 2, 1)
    if isinstance(layer, keras.layers.Resizing | keras.layers.UpSampling2D):
        return _elementwise_cost(layer, shapes, element, 8, 0)
    if isinstance(layer, keras.layers.Activation | keras.layers.ReLU):  # fused: arithmetic only
        size = _size(shapes[1])
        return LayerCost(layer.name, "vector", size * _activation_flops(getattr(layer, "activation", "relu")), 0, 0)
    # BatchNorm folds into the convolution before it; padding, dropout and reshapes
    # fuse into their neighbours in every deployment path.
    return None


def _leaf_layers(model: Any) -> list[Any]:
    import keras

    leaves = []
    for layer in model.layers:
        if isinstance(layer, keras.Model) and hasattr(layer, "layers") and layer.layers:
            leaves += _leaf_layers(layer)
        else:
            leaves.append(layer)
    return leaves


def layer_costs(model: Any, element_bytes: int = 4) -> list[LayerCost]:
    """Per-layer FLOPs and bytes moved for one image.

    Args:
        model: a built functional Keras model with a fixed input size
            (nested functional models are walked, so a classifier includes
            its backbone).
        element_bytes: bytes per activation value (4 float32, 2 bf16, 1 int8);
            weights are counted as float32.

    Returns:
        A `LayerCost` per layer that does work at inference.

    Example:

    ```python
    costs = layer_costs(mobilenetv3.MobileNetV3SmallBackbone(input_shape=(224, 224, 3)))
    ```
    """
    if element_bytes not in (1, 2, 4):
        raise ValueError(f"`element_bytes` must be 1, 2 or 4; got {element_bytes!r}.")
    shape = tuple(model.inputs[0].shape)
    if any(d is None for d in shape[1:]):
        raise ValueError(f"`model` needs a fixed input size for a roofline; got input shape {shape}.")
    costs = []
    for layer in _leaf_layers(model):
        for shapes in _calls(layer):
            cost = _layer_cost(layer, shapes, element_bytes)
            if cost is not None:
                costs.append(cost)
    return costs


def total_macs(costs: list[LayerCost]) -> float:
    """Multiply-adds of convolutions, dense and squeeze-and-excite layers (the usual "MACs")."""
    return float(sum(c.macs for c in costs))


def lower_bound_seconds(costs: list[LayerCost], rates: MachineRates, batch: int = 1) -> float:
    """The least time per image: each layer at the larger of its compute and memory time.

    Weights are read once per batch of `batch` images.
    """
    return sum(breakdown(costs, rates, batch).values())


def model_lower_bound(model: Any, rates: MachineRates, batch: int = 1, element_bytes: int = 4) -> float:
    """`lower_bound_seconds` of a Keras model (see `layer_costs`): seconds per image.

    Example:

    ```python
    model = mobilenetv3.MobileNetV3SmallBackbone(input_shape=(224, 224, 3))
    bound = model_lower_bound(model, measure_machine(0.5), batch=32)
    ```
    """
    return lower_bound_seconds(layer_costs(model, element_bytes), rates, batch)


def breakdown(costs: list[LayerCost], rates: MachineRates, batch: int = 1) -> dict[str, float]:
    """Seconds per image of the lower bound by what limits each layer:
    "gemm", "vector" (compute-bound layers of that kind; every kind at the
    sgemm rate) and "memory"."""
    if batch < 1:
        raise ValueError(f"`batch` must be at least 1; got {batch!r}.")
    out = {"gemm": 0.0, "vector": 0.0, "memory": 0.0}
    for cost in costs:
        compute = cost.flops / rates.gemm_flops
        memory = (cost.activation_bytes + cost.weight_bytes / batch) / rates.bandwidth
        out[cost.kind if compute >= memory else "memory"] += max(compute, memory)
    return out


def roofline_fraction(images_per_second: float, bound_seconds: float) -> float:
    """The fraction of the roofline limit a measured speed reaches (1.0 = at the limit)."""
    return images_per_second * bound_seconds


def _best_rate(work: float, run: Any, seconds: float) -> float:
    run()  # warm up
    best, spent = math.inf, 0.0
    while spent < seconds:
        start = time.perf_counter()
        run()
        elapsed = time.perf_counter() - start
        best, spent = min(best, elapsed), spent + elapsed
    return work / best


def measure_machine(seconds: float = 1.0) -> MachineRates:
    """Measure sustained sgemm FLOP/s and the in-cache and DRAM copy bandwidth (numpy).

    - gemm: float32 1024x1024 matrix products (numpy's BLAS, its threads).
    - bandwidth: a 256 KiB float32 copy (read + write) that stays in L2.
    - dram_bandwidth: a 256 MiB float32 copy, one stream.

    Args:
        seconds: time spent on each measurement (the best run counts).

    Returns:
        `MachineRates`.

    Example:

    ```python
    rates = measure_machine(seconds=0.5)
    print(rates.gemm_flops / 1e9, "GFLOP/s sgemm")
    ```
    """
    rng = np.random.default_rng(0)
    n = 1024
    a, b = rng.standard_normal((n, n), np.float32), rng.standard_normal((n, n), np.float32)
    gemm = _best_rate(2 * n**3, lambda: a @ b, seconds)
    return MachineRates(gemm, _copy_rate(256 * 2**10, 256, seconds), _copy_rate(256 * 2**20, 1, seconds))


def _copy_rate(nbytes: int, repeats: int, seconds: float) -> float:
    source = np.ones(nbytes // 4, np.float32)
    target = np.empty_like(source)

    def copy() -> None:
        for _ in range(repeats):
            np.copyto(target, source)

    return _best_rate(2 * nbytes * repeats, copy, seconds)
