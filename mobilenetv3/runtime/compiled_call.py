"""On JAX, `model(x)` at inference runs as one compiled program, as `predict` does.

A Keras functional model called eagerly on JAX runs op by op, and XLA
compiles each op for its shapes: the first `backbone(x)` of a
MobileNetV3-Small compiled about 300 small programs (12 s on 2 loaded CPU cores,
each later call 0.14 s). `CompiledInferenceCall` runs such a call instead
as one `jax.jit` of `stateless_call(..., training=False)` over the
variables' current values (what Keras' `predict` compiles): one compilation
per input shape (2.8 s), later calls in milliseconds. Calls it does not
cover (another backend, `training=True`, symbolic or traced inputs, a
call from inside another layer's call, a stateless scope, a Keras
distribution, other keyword arguments) run Keras' own `__call__`. Set `COMPILED_CALL = False` to run every call op by op.
"""

from __future__ import annotations

import weakref
from typing import Any

import keras
import numpy as np

from mobilenetv3.core import keras_internals as internals

COMPILED_CALL = True

_COMPILED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _compilable(args: tuple, kwargs: dict) -> bool:
    """Whether `model(*args, **kwargs)` is an eager JAX inference call on concrete arrays."""
    if not COMPILED_CALL or keras.backend.backend() != "jax" or len(args) != 1:
        return False
    training = kwargs.get("training")
    if set(kwargs) - {"training"} or not (training is None or training is False):
        return False
    if internals.in_stateless_scope() or keras.distribution.distribution() is not None:
        return False
    if internals.current_call_context() is not None:  # inside another layer's call,
        return False  # whose `training` the model inherits
    import jax

    leaves = jax.tree_util.tree_leaves(args[0])
    return bool(leaves) and all(
        isinstance(leaf, (np.ndarray, jax.Array)) and not isinstance(leaf, jax.core.Tracer) for leaf in leaves
    )


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


class CompiledInferenceCall:
    """`keras.Model` mixin: on JAX, an inference call on arrays is one compiled
    program (see the module's docstring); every other call is Keras' own.

    Example:

    ```python
    class Net(CompiledInferenceCall, keras.Model):
        pass

    inputs = keras.Input((4,))
    net = Net(inputs, keras.layers.Dense(2)(inputs))
    net(np.ones((1, 4), "float32"))  # on JAX: one jitted program
    ```
    """

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if not _compilable(args, kwargs):
            return super().__call__(*args, **kwargs)  # type: ignore[misc]
        internals.assert_input_compatibility(self, args[0])  # Keras' own message on bad input
        trainable = [variable.value for variable in self.trainable_variables]  # type: ignore[attr-defined]
        non_trainable = [variable.value for variable in self.non_trainable_variables]  # type: ignore[attr-defined]
        return _compiled(self)(trainable, non_trainable, args[0])  # type: ignore[arg-type]
