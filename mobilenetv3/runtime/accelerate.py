"""The runtime applied to a built model by composition: `accelerate(model)`.

The model classes are plain Keras functional models; this gives one
instance the runtime's inference paths without changing its class, its
config or what it computes:

- its `call` (what Keras' `Layer.__call__` runs) becomes the JAX compiled
  program for an eager top-level inference call (`compiled_call`), the
  PyTorch direct / fused run where eligible (`direct_call`), and Keras' own
  `Functional.call` otherwise (TensorFlow, training, symbolic inputs, ...);
- its `predict_on_batch` takes the PyTorch direct run for float32 arrays.

`MobileNetV3Backbone`, every task and `fold_batch_norm`'s model apply it
when built; `plain(model)` takes it off again (Keras' own paths only).
"""

from __future__ import annotations

import types
from typing import Any

import keras

from mobilenetv3.runtime import compiled_call, direct_call


def accelerate(model: keras.Model) -> keras.Model:
    """Give a functional `model` the runtime's inference paths (see the
    module docstring) and return it. Idempotent.

    Example:

    ```python
    inputs = keras.Input((32, 32, 3))
    model = accelerate(keras.Model(inputs, keras.layers.Conv2D(4, 3)(inputs)))
    ```
    """
    model.__dict__["call"] = types.MethodType(_call, model)
    model.__dict__["predict_on_batch"] = types.MethodType(direct_call.predict_on_batch, model)
    return model


def plain(model: keras.Model) -> keras.Model:
    """Take `accelerate` off `model`: Keras' own call and predict paths."""
    model.__dict__.pop("call", None)
    model.__dict__.pop("predict_on_batch", None)
    return model


def is_accelerated(model: Any) -> bool:
    """Whether `accelerate` was applied to `model`."""
    return "call" in getattr(model, "__dict__", {})


def _call(model: keras.Model, inputs: Any, training: Any = None, mask: Any = None, **kwargs: Any) -> Any:
    if mask is None and compiled_call.applies(model, inputs, training, kwargs):
        return compiled_call.run(model, inputs)
    return direct_call.call(model, inputs, training, mask, **kwargs)
