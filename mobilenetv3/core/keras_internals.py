"""Every use of Keras' private API, in one place.

The package reaches below Keras' public API only where no public one does
the job: walking a functional model's graph (BatchNorm folding, the PyTorch
fused run and ONNX export share `graph_nodes`), running it with another
per-layer function, reading a variable's raw value without the autocast /
stateless-scope lookups of `.value`, and a few scope checks. Checked on the
Keras version in `CHECKED_ON`; `tests/test_keras_internals.py` fails when an
installed Keras no longer has one of them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras

CHECKED_ON = "3.15.1"


def is_functional(model: Any) -> bool:
    """Whether `model` is a functional Keras model (a graph of nodes)."""
    return isinstance(model, keras.Model) and hasattr(model, "_nodes_by_depth")


def check_single_input_functional(model: Any) -> None:
    """Raise a TypeError unless `model` is a functional Keras model, a
    ValueError unless it has one input (what graph rewrites such as BatchNorm
    folding and the QAT twin take)."""
    if not is_functional(model):
        raise TypeError(f"`model` must be a functional Keras model (backbone, classifier, ...); "
                        f"got {type(model).__name__}.")
    if len(model.inputs) != 1:
        raise ValueError(f"`model` must have one input; got {len(model.inputs)}.")


def graph_nodes(model: keras.Model) -> list[Any]:
    """The nodes of a functional model's graph, inputs first, each after
    the nodes it reads from (the one graph walk of the package).

    Example:

    ```python
    [node.operation.name for node in graph_nodes(model) if not node.is_input][:2]  # ['rescaling', 'Conv']
    ```
    """
    by_depth = model._nodes_by_depth
    return [node for depth in sorted(by_depth, reverse=True) for node in by_depth[depth]]


def outputs_structure(model: keras.Model) -> Any:
    """The structure (tensor, list or dict) of a functional model's outputs."""
    return model._outputs_struct


def producer_name(tensor: Any) -> str:
    """The name of the layer whose output the Keras tensor is."""
    return tensor._keras_history.operation.name


def inbound_node_count(layer: Any) -> int:
    """How many times the layer is called in the graphs it belongs to."""
    return len(layer._inbound_nodes)


def all_layers(model: Any, include_self: bool = False) -> list[Any]:
    """Every layer inside `model`, nested models' layers included."""
    return list(model._flatten_layers(include_self=include_self, recursive=True))


def call_has_training_arg(layer: Any) -> bool:
    """Whether the layer's `call` takes `training`."""
    return layer._call_has_training_arg


def standardize_inputs(model: keras.Model, inputs: Any) -> list[Any]:
    """The model's inputs as the flat list its graph takes (Keras' own conversion)."""
    return model._standardize_inputs(inputs)


def run_graph(model: keras.Model, inputs: Any, operation_fn: Callable[[Any], Callable]) -> Any:
    """Run a functional model's graph on `inputs`, calling each node's
    operation through `operation_fn(operation)` (Keras' own graph run)."""
    from keras.src.models.functional import unpack_singleton

    return unpack_singleton(model._run_through_graph(standardize_inputs(model, inputs), operation_fn=operation_fn))


def functional_call(model: keras.Model, inputs: Any, **kwargs: Any) -> Any:
    """Keras' own `Functional.call` of `model` (its `call` overridden or not)."""
    from keras.src.models.functional import Functional

    return Functional.call(model, inputs, **kwargs)


def is_functional_call(call: Any) -> bool:
    """Whether `call` (a class's `call`) is Keras' `Functional.call`."""
    from keras.src.models.functional import Functional

    return call is Functional.call


def resize_images(images: Any, size: Any, **kwargs: Any) -> Any:
    """Keras' backend image resize (`keras.ops.image.resize`'s numbers)
    without the op's Python checks of `size`, which a size read from a
    tensor at run time fails in a TensorFlow graph traced without AutoGraph
    (a SavedModel / TFLite export of a dynamic-size model)."""
    from keras.src.backend import image as backend_image

    return backend_image.resize(images, size, **kwargs)


def raw_value(variable: Any) -> Any:
    """A variable's backend tensor, read without the autocast and stateless
    scope lookups of `variable.value` (callers have ruled those scopes out)."""
    return variable._value


def raw_values(variables: list[Any]) -> list[Any]:
    """`raw_value` of each variable (one call for a hot loop)."""
    return [variable._value for variable in variables]


def in_stateless_scope() -> bool:
    from keras.src.backend.common.stateless_scope import in_stateless_scope as active

    return active()


def autocast_scope() -> Any:
    from keras.src.backend import get_autocast_scope

    return get_autocast_scope()


def current_call_context() -> Any:
    """The call context of the layer call under way, or None at top level."""
    from keras.src.backend.common.global_state import get_global_attribute

    return get_global_attribute("current_call_ctx")


def is_outermost_call(layer: Any) -> bool:
    """Whether the call of `layer` under way is a top-level call (not from
    inside another layer's call, whose `training` it would inherit)."""
    context = current_call_context()
    return context is not None and context.entry_layer is layer


def mark_called(layer: Any) -> None:
    """Record that the layer has been called, as `Layer.__call__` does."""
    layer._called = True


def assert_input_compatibility(model: keras.Model, inputs: Any) -> None:
    """Keras' own input-shape check (and message) for a call of `model`."""
    model._assert_input_compatibility(inputs)


def compute_fans(shape: tuple[int, ...], **axes: Any) -> tuple[int, int]:
    """Keras' fan-in / fan-out of a kernel shape (what its initializers use;
    `axes`: an initializer's `input_axes` / `output_axes`)."""
    from keras.src.initializers.random_initializers import compute_fans as keras_fans

    return keras_fans(shape, **axes)


class _BytesSink:
    """Stands in for the zip archive `H5IOStore` writes into: keeps the bytes."""

    data = b""

    def writestr(self, name: str, data: bytes) -> None:
        self.data = data


def weights_h5_bytes(model: keras.Model) -> bytes:
    """The `.weights.h5` file `model.save_weights` writes, built in memory.

    HDF5 never touches the disk here: on a full disk an HDF5 file that fails
    mid-write cannot be closed cleanly (h5py's `__dealloc__` errors, then the
    interpreter segfaults when the file object is collected), so callers
    write these bytes with plain Python I/O instead, which fails with an
    ordinary `OSError`.

    Example:

    ```python
    Path("model.weights.h5").write_bytes(weights_h5_bytes(model))
    ```
    """
    from keras.src.saving import saving_lib

    if not model.built:
        raise ValueError(f"Cannot save the weights of {model.name!r}: the model is not built.")
    sink = _BytesSink()
    store = saving_lib.H5IOStore("model.weights.h5", archive=sink, mode="w")
    try:
        saving_lib._save_state(model, weights_store=store, assets_store=None, inner_path="", visited_saveables=set())
    finally:
        store.close()
    return sink.data
