"""On JAX, `model(x)` at inference runs as one compiled program, as `predict` does.

A Keras functional model called eagerly on JAX runs op by op, and XLA
compiles each op for its shapes: the first `backbone(x)` of a
MobileNetV3-Small compiled about 300 small programs (12 s on 2 loaded CPU cores,
each later call 0.14 s). `run` runs such a call instead
as one `jax.jit` of `stateless_call(..., training=False)` over the
variables' current values (what Keras' `predict` compiles): one compilation
per input shape (2.8 s), later calls in milliseconds. `run` does this from inside the
model's `call` (installed by `mobilenetv3.runtime.accelerate`), after Keras'
`__call__` has checked and converted the inputs. Calls it does not cover
(another backend, `training=True`, symbolic or traced inputs, a call from
inside another layer's call, a stateless scope, a Keras distribution, other
keyword arguments) run op by op as Keras does. Set `COMPILED_CALL = False`
to run every call op by op.
"""

from __future__ import annotations

import weakref
from typing import Any

import keras
import numpy as np

from mobilenetv3.core import keras_internals as internals

COMPILED_CALL = True

_COMPILED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def applies(model: keras.Model, inputs: Any, training: Any, kwargs: dict) -> bool:
    """Whether the call of `model` under way (its `call` is running) is an eager,
    top-level JAX inference call on concrete arrays, which `run` may compile."""
    if not COMPILED_CALL or keras.backend.backend() != "jax" or kwargs:
        return False
    if not (training is None or training is False):
        return False
    if internals.in_stateless_scope() or keras.distribution.distribution() is not None:
        return False
    if not internals.is_outermost_call(model):  # inside another layer's call, whose `training` it inherits
        return False
    import jax

    leaves = jax.tree_util.tree_leaves(inputs)
    return bool(leaves) and all(
        isinstance(leaf, (np.ndarray, jax.Array)) and not isinstance(leaf, jax.core.Tracer) for leaf in leaves
    )


def run(model: keras.Model, inputs: Any) -> Any:
    """The model's inference on `inputs` as one jitted program over the
    variables' current values (compiled once per input shape).

    Example:

    ```python
    if compiled_call.applies(model, images, None, {}):
        outputs = compiled_call.run(model, images)
    ```
    """
    trainable = [variable.value for variable in model.trainable_variables]
    non_trainable = [variable.value for variable in model.non_trainable_variables]
    return _compiled(model)(trainable, non_trainable, inputs)


def _compiled(model: keras.Model) -> Any:
    """The model's jitted inference function (held weakly: it does not keep the model alive)."""
    function = _COMPILED.get(model)
    if function is None:
        import jax

        reference = weakref.ref(model)

        def infer(trainable: list, non_trainable: list, inputs: Any) -> Any:
            return reference().stateless_call(trainable, non_trainable, inputs, training=False)[0]

        function = _COMPILED[model] = jax.jit(infer)
    return function
