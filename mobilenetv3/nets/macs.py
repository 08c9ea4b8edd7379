"""Static analysis of built models: multiply-accumulate counts."""

from __future__ import annotations

from collections.abc import Iterator

import keras
import numpy as np

from mobilenetv3.nets.layers import SqueezeAndExcite2D


def _layer_macs(layer: keras.layers.Layer) -> int:
    out_shape = layer.output.shape
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        k = np.prod(layer.kernel_size)
        return int(np.prod(out_shape[1:]) * k)
    if isinstance(layer, keras.layers.Conv2D):
        k = np.prod(layer.kernel_size)
        return int(np.prod(out_shape[1:]) * k * layer.input.shape[-1])
    if isinstance(layer, keras.layers.Dense):
        return int(layer.input.shape[-1] * layer.units)
    if isinstance(layer, SqueezeAndExcite2D):
        return 2 * layer.filters * layer.bottleneck_filters
    return 0


def count_macs(model: keras.Model, size: int = 224) -> int:
    """Multiply-accumulates of one `size`x`size` image through `model`.

    For a classifier, its head is included. Counts convolutions, depthwise convolutions, squeeze-and-excite and dense
    layers (element-wise ops are not counted, as in the papers).

    Example:

    ```python
    count_macs(mobilenetv3.MobileNetV3LargeBackbone(), 224)  # about 214e6
    ```
    """
    if hasattr(model, "backbone"):  # a classifier: its head sees 1x1 maps
        head = (layer for layer in model.layers if not isinstance(layer, keras.Model))
        return count_macs(model.backbone, size) + sum(_layer_macs(layer) for layer in head)
    config = model.get_config()
    config["input_shape"] = (size, size, model.input_shape[-1])
    static = type(model).from_config(config)
    return sum(_layer_macs(layer) for layer in _all_layers(static))


def _all_layers(model: keras.Model) -> Iterator[keras.layers.Layer]:
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)
        else:
            yield layer
