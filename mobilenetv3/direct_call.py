"""Inference on the PyTorch backend without Keras' per-layer call machinery.

Eager Keras runs every layer through `Layer.__call__` (input conversion, call
spec, name scope, masks, autocast scope, call context), about 60-80 us of
Python per layer on the benchmark machine: for MobileNetV3-Large's ~250
layers that is as long as the arithmetic at batch 1. The package's models
(`MobileNetV3Backbone` and the task models) run their functional graph at
inference by calling each known layer's `call` directly instead, when that
is exactly what `__call__` would compute: PyTorch backend, not training, no
mask, eager float32 tensors, float32 layers without activity regularizers,
no distribution, no autocast scope, not under `torch.compile`. Anything else
(and any layer class not listed here) takes Keras' own path, unchanged.

`mobilenetv3.layers.TORCH_FAST_PATHS = False` turns this off with the other
PyTorch fast paths.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import keras
from keras.src.backend import get_autocast_scope
from keras.src.models.functional import Functional, unpack_singleton

from mobilenetv3 import layers

# Layers whose `call` is the whole of what `__call__` computes for eager float32 inference.
_DIRECT_LAYERS = (
    layers.Conv2D, layers.DepthwiseConv2D, layers.BatchNormalization, layers.SqueezeAndExcite2D,
    layers.StochasticDepth, keras.layers.Activation, keras.layers.Add, keras.layers.Multiply,
    keras.layers.ZeroPadding2D, keras.layers.Rescaling, keras.layers.GlobalAveragePooling2D,
    keras.layers.GlobalMaxPooling2D, keras.layers.Flatten, keras.layers.Dropout, keras.layers.Dense,
    keras.layers.ReLU, keras.layers.Identity, keras.layers.Softmax, keras.layers.Concatenate,
    keras.layers.Reshape,
)


@contextlib.contextmanager
def _direct() -> Iterator[None]:
    previous = layers.direct_run()
    layers._direct.active = True
    try:
        yield
    finally:
        layers._direct.active = previous


def _eligible_layer(layer: Any) -> bool:
    policy = layer.dtype_policy
    return (policy.compute_dtype == "float32" and policy.variable_dtype == "float32"
            and getattr(layer, "activity_regularizer", None) is None)


def _eligible(model: keras.Model, inputs: Any, training: Any, mask: Any, kwargs: dict) -> bool:
    if keras.backend.backend() != "torch" or not layers.TORCH_FAST_PATHS or training or mask is not None or kwargs:
        return False
    import torch

    flat = keras.tree.flatten(inputs)
    if (torch.compiler.is_compiling() or not flat
            or not all(isinstance(x, torch.Tensor) and x.dtype == torch.float32 for x in flat)
            or any(getattr(x, "_keras_mask", None) is not None for x in flat)):
        return False
    if keras.distribution.distribution() is not None or get_autocast_scope() is not None:
        return False
    return all(_eligible_layer(layer) for layer in model._flatten_layers(include_self=True, recursive=True))


def _keras_conv(layer: keras.layers.Conv2D) -> Any:
    """Keras' own Conv2D (a head's 1x1 convs) through the package's PyTorch conv."""

    def run(inputs: Any) -> Any:
        outputs = layers.torch_conv(layer, inputs)
        return layer.call(inputs) if outputs is None else outputs

    return run


def _operation_fn(operation: Any) -> Any:
    if isinstance(operation, Functional) and _runs_graph(operation):
        return lambda *args, **kwargs: operation(*args, **kwargs) if kwargs else _run(operation, *args)
    if type(operation) is keras.layers.Conv2D:
        return _keras_conv(operation)
    if type(operation) in _DIRECT_LAYERS:
        if operation._call_has_training_arg:
            return lambda *args, **kwargs: operation.call(*args, **{**kwargs, "training": False})
        return operation.call
    return operation  # Keras' own __call__


def _runs_graph(model: Any) -> bool:
    """Whether calling `model` is running its functional graph (no custom `call`)."""
    call = type(model).call
    return call is Functional.call or getattr(call, "_direct_graph", False)


def _run(model: Any, inputs: Any) -> Any:
    outputs = model._run_through_graph(model._standardize_inputs(inputs), operation_fn=_operation_fn)
    return unpack_singleton(outputs)


def call(model: keras.Model, inputs: Any, training: Any = None, mask: Any = None, **kwargs: Any) -> Any:
    """`model.call(...)` of a functional model: its graph run layer by layer with each layer's
    `call` when that is safe (see the module docstring), else Keras' `Functional.call`.

    Example:

    ```python
    class Model(keras.Model):
        def call(self, inputs, training=None, mask=None, **kwargs):
            return direct_call.call(self, inputs, training, mask, **kwargs)
    ```
    """
    if not _eligible(model, inputs, training, mask, kwargs):
        return Functional.call(model, inputs, training=training, mask=mask, **kwargs)
    with _direct():
        return _run(model, inputs)


call._direct_graph = True  # type: ignore[attr-defined]


class DirectCall:
    """Mixin (before `keras.Model`) of a functional model whose `call` is `direct_call.call`."""

    def call(self, inputs: Any, training: Any = None, mask: Any = None, **kwargs: Any) -> Any:
        return call(self, inputs, training, mask, **kwargs)

    call._direct_graph = True  # type: ignore[attr-defined]
