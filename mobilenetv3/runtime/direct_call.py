"""Inference on the PyTorch backend without Keras' per-layer call machinery.

Eager Keras runs every layer through `Layer.__call__` (input conversion, call
spec, name scope, masks, autocast scope, call context), 60-160 us of Python
per layer on the benchmark machine (`benchmarks/keras_torch_call_overhead_repro.py`):
for MobileNetV3-Large's ~250 layers that is as long as the arithmetic at
batch 1. The package's models (`MobileNetV3Backbone`, the task models and
`fold_batch_norm`'s model, each through `mobilenetv3.runtime.accelerate`) run their functional graph at
inference by calling each known layer's `call` directly instead, when that
is exactly what `__call__` would compute: PyTorch backend, not training, no
mask, eager float32 tensors, float32 layers (not quantized, no LoRA) without
activity regularizers, no distribution, autocast or stateless scope, not
under `torch.compile`. Anything else (and any layer class not listed here)
takes Keras' own path, unchanged.

Outside autograd (`predict`, `torch.no_grad`, `torch.inference_mode`) the run
also fuses: each conv -> BatchNormalization -> activation is one conv with
the BatchNorm folded into a cached kernel and bias (recomputed when any of
the variables changes, by their version counters) followed by an in-place
activation, and residual adds and squeeze-excite scaling write into the
conv output they consume when nothing else reads it. New 100 MB activation
buffers (page faults) are what costs at batch 32, so every pass and buffer
saved counts. With autograd on, layers run unfused (same ops as `call`).

`mobilenetv3.runtime.kernels.TORCH_FAST_PATHS = False` turns this off with the other
PyTorch fast paths. `mobilenetv3.runtime.accelerate` applies it to a model.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from mobilenetv3.core import keras_internals as internals
from mobilenetv3.nets import layers
from mobilenetv3.runtime import kernels

# Layers whose `call` is the whole of what `__call__` computes for eager float32 inference.
_DIRECT_LAYERS = (
    layers.Conv2D, layers.DepthwiseConv2D, layers.BatchNormalization, layers.SqueezeAndExcite2D,
    layers.StochasticDepth, keras.layers.Activation, keras.layers.Add, keras.layers.Multiply,
    keras.layers.ZeroPadding2D, keras.layers.Rescaling, keras.layers.GlobalAveragePooling2D,
    keras.layers.GlobalMaxPooling2D, keras.layers.Flatten, keras.layers.Dropout, keras.layers.Dense,
    keras.layers.ReLU, keras.layers.Identity, keras.layers.Softmax, keras.layers.Concatenate,
    keras.layers.Reshape,
)


def _eligible_layer(layer: Any) -> bool:
    """float32 (not mixed, not quantized), no LoRA, no activity regularizer."""
    policy = layer.dtype_policy
    return (policy.name == "float32" and policy.compute_dtype == "float32" and policy.variable_dtype == "float32"
            and getattr(layer, "activity_regularizer", None) is None and not getattr(layer, "lora_enabled", False))


def _eligible(model: keras.Model, inputs: Any, training: Any, mask: Any, kwargs: dict) -> bool:
    if keras.backend.backend() != "torch" or not kernels.TORCH_FAST_PATHS or training or mask is not None or kwargs:
        return False
    import torch

    flat = keras.tree.flatten(inputs)
    if (torch.compiler.is_compiling() or not flat
            or not all(isinstance(x, torch.Tensor) and x.dtype == torch.float32 for x in flat)
            or any(getattr(x, "_keras_mask", None) is not None for x in flat)):
        return False
    if (keras.distribution.distribution() is not None or internals.autocast_scope() is not None
            or internals.in_stateless_scope()):
        return False
    all_layers = model.__dict__.get("_direct_layers")
    if all_layers is None:
        all_layers = internals.all_layers(model, include_self=True)
        model.__dict__["_direct_layers"] = all_layers  # a built functional model's layers do not change
    key = tuple((id(layer.dtype_policy), getattr(layer, "lora_enabled", False),
                 getattr(layer, "activity_regularizer", None) is None) for layer in all_layers)
    cached = model.__dict__.get("_direct_eligible")
    if cached is None or cached[0] != key:
        cached = (key, all(_eligible_layer(layer) for layer in all_layers), [layer.dtype_policy for layer in all_layers])
        model.__dict__["_direct_eligible"] = cached
    return cached[1]


def _keras_conv(layer: keras.layers.Conv2D) -> Any:
    """Keras' own Conv2D (a head's 1x1 convs) through the package's PyTorch conv."""

    def run(inputs: Any) -> Any:
        outputs = kernels.torch_conv(layer, inputs)
        return layer.call(inputs) if outputs is None else outputs

    return run


def _operation_fn(operation: Any) -> Any:
    if internals.is_functional(operation) and _runs_graph(operation):
        def run(*args: Any, **kwargs: Any) -> Any:
            if set(kwargs) <= {"training", "mask"} and not kwargs.get("training") and kwargs.get("mask") is None:
                return _run(operation, *args)  # eligible with its parent: no __call__ of its own
            return operation(*args, **kwargs)

        return run
    if type(operation) is keras.layers.Conv2D:
        return _keras_conv(operation)
    if type(operation) is layers.SqueezeAndExcite2D:
        return lambda inputs: inputs * operation.gate(inputs, _call_directly)
    if type(operation) in _DIRECT_LAYERS:
        if internals.call_has_training_arg(operation):
            return lambda *args, **kwargs: operation.call(*args, **{**kwargs, "training": False})
        return operation.call
    return operation  # Keras' own __call__


def _call_directly(layer: Any, inputs: Any) -> Any:
    """A sublayer's `call`, as `_operation_fn` runs every layer it knows."""
    return _operation_fn(layer)(inputs)


def _runs_graph(model: Any) -> bool:
    """Whether calling `model` is running its functional graph (no custom `call`)."""
    call = type(model).call
    return internals.is_functional_call(call) or getattr(call, "_direct_graph", False)


def _run(model: Any, inputs: Any) -> Any:
    import torch

    if torch.is_grad_enabled():  # autograd records the graph: no in-place ops, no cached weights
        return internals.run_graph(model, inputs, _operation_fn)
    return _run_plan(model, internals.standardize_inputs(model, inputs))


# In-place PyTorch versions of the activations a fused conv step may end with.
def _inplace_activations() -> dict:
    import torch
    import torch.nn.functional as functional

    return {
        keras.activations.relu: torch.relu_,
        keras.activations.hard_swish: lambda x: functional.hardswish(x, inplace=True),
        keras.activations.hard_sigmoid: lambda x: functional.hardsigmoid(x, inplace=True),
        keras.activations.linear: lambda x: x,
    }


class _FusedConv:
    """conv -> [BatchNormalization] -> [activation] as one conv (the BatchNorm folded into its
    kernel and bias, kept between calls while the variables are unchanged) and an in-place
    activation on the conv's fresh output. Used outside autograd only (variables read as
    `_value`: `_eligible` ruled out the autocast and stateless scopes `.value` would consult)."""

    def __init__(self, conv: Any, norm: Any = None, activation: Any = None) -> None:
        self.conv, self.norm = conv, norm
        self.depthwise = isinstance(conv, keras.layers.DepthwiseConv2D)
        activation = conv.activation if activation is None else activation
        self.activation = _inplace_activations()[activation]
        variables = [conv.kernel] + ([conv.bias] if conv.use_bias else [])
        if norm is not None:
            variables += [norm.moving_mean, norm.moving_variance] + [norm.gamma] * norm.scale + [norm.beta] * norm.center
        self.variables = variables
        self.strides, self.dilation = tuple(conv.strides), tuple(conv.dilation_rate)
        self.groups = int(conv.kernel.shape[2]) if self.depthwise else 1
        self.pointwise = kernels.is_pointwise(conv, self.depthwise)
        self._cache: tuple = ((), None)
        self._size: tuple = ()
        self._shift: tuple | None = None
        self._padding: tuple | None = None

    def weights(self, dtype: Any) -> tuple:
        import torch

        values = internals.raw_values(self.variables)
        key = [(id(v), v._version) for v in values] + [dtype, self._shift]
        if self._cache[0] == key:
            return self._cache[1]
        conv, norm = self.conv, self.norm
        kernel = values[0].permute(*kernels.torch_kernel_permutation(self.depthwise)).to(dtype)
        bias = values[1].to(dtype) if conv.use_bias else None
        if norm is not None:
            scale = torch.rsqrt(internals.raw_value(norm.moving_variance) + norm.epsilon)
            if norm.scale:
                scale = scale * internals.raw_value(norm.gamma)
            shift = -internals.raw_value(norm.moving_mean) * scale
            if bias is not None:
                shift = shift + bias * scale
            if norm.center:
                shift = shift + internals.raw_value(norm.beta)
            kernel, bias = kernel * scale.to(dtype).reshape(-1, 1, 1, 1), shift.to(dtype)
        if self._shift is not None:
            kernel = torch.nn.functional.pad(kernel, (self._shift[1], 0, self._shift[0], 0))
        matrix = kernel.reshape(kernel.shape[0], -1).t().contiguous() if self.pointwise else None
        weights = (kernel.contiguous(memory_format=torch.channels_last), bias, matrix)
        self._cache = (key, weights, values)  # the values held: their ids cannot be reused
        return weights

    def __call__(self, inputs: Any) -> Any:
        import torch

        size = tuple(inputs.shape[1:3])
        if size != self._size:
            padding = kernels.torch_conv_padding(self.conv, inputs)
            if padding is None:
                raise RuntimeError(f"{self.conv.name}: no PyTorch conv for this input ({inputs.shape}).")
            self._shift = kernels.kernel_shift(self.conv, padding[1]) if self.depthwise else None
            if self._shift is not None:  # zeros before the kernel instead of a padded input copy
                padding = ((padding[0][0] + self._shift[0], padding[0][1] + self._shift[1]), padding[1])
            self._padding, self._size = padding, size
        if self.pointwise and inputs.is_contiguous() and (inputs.shape[0] == 1 or size == (1, 1)):
            return self.activation(self._matmul(inputs))
        symmetric, extra = self._padding
        x = inputs.permute(0, 3, 1, 2)  # channels-last view, see `kernels.torch_conv`
        if self._shift is None and any(extra):
            x = torch.nn.functional.pad(x, extra)
        kernel, bias, _ = self.weights(x.dtype)
        outputs = torch.conv2d(x, kernel, bias, self.strides, symmetric, self.dilation, self.groups)
        return self.activation(outputs.permute(0, 2, 3, 1))

    def _matmul(self, inputs: Any) -> Any:
        """The 1x1 conv as one matrix product (`kernels.pointwise_product`): at batch 1 and on
        pooled 1x1 maps, PyTorch's conv re-lays out the kernel or takes its slow im2col path
        every call, 1.5-4x the matrix product's time (measured)."""
        _, bias, matrix = self.weights(inputs.dtype)
        return kernels.pointwise_product(inputs, matrix, bias)


def _fusable_conv(layer: Any) -> bool:
    return (type(layer) in (layers.Conv2D, layers.DepthwiseConv2D, keras.layers.Conv2D)
            and layer.activation in _inplace_activations() and kernels.torch_fast_path(layer)
            and (isinstance(layer, keras.layers.DepthwiseConv2D) or layer.groups == 1))


def _fusable_norm(layer: Any) -> bool:
    return type(layer) is layers.BatchNormalization and layer.axis in (-1, 3)


def _fusable_activation(layer: Any) -> bool:
    return type(layer) is keras.layers.Activation and layer.activation in _inplace_activations()


def _plan(model: Any) -> list:
    """Steps of `model`'s graph for no-autograd inference: (fused callable or None, node(s))."""
    plan = model.__dict__.get("_direct_plan")
    if plan is not None:
        return plan
    nodes = [node for node in internals.graph_nodes(model) if node.operation is not None and not node.is_input]
    consumers: dict[int, list] = {}
    for node in nodes:
        for tensor in node.input_tensors:
            consumers.setdefault(id(tensor), []).append(node)
    for tensor in model.outputs:
        consumers.setdefault(id(tensor), []).append(None)

    def only_consumer(node: Any, accept: Any) -> Any:
        """The single node consuming `node`'s single output, if `accept`s it."""
        if len(node.outputs) != 1:
            return None
        users = consumers.get(id(node.outputs[0]), [])
        return users[0] if len(users) == 1 and users[0] is not None and accept(users[0].operation) else None

    plan, fused, fresh = [], set(), set()
    for node in nodes:
        if id(node) in fused:
            continue
        if _fusable_conv(node.operation) and len(node.input_tensors) == 1:
            group, norm, activation = [node], None, None
            if node.operation.activation is keras.activations.linear:
                norm = only_consumer(node, _fusable_norm)
                if norm is not None:
                    group.append(norm)
                activation = only_consumer(group[-1], _fusable_activation)
                if activation is not None:
                    group.append(activation)
            fused.update(id(n) for n in group)
            step = _FusedConv(node.operation, norm.operation if norm is not None else None,
                              activation.operation.activation if activation is not None else None)
            plan.append((step, node.input_tensors[0], group[-1].outputs[0]))
            fresh.add(id(group[-1].outputs[0]))
            continue
        operation = node.operation
        if type(operation) is keras.layers.Add and len(node.input_tensors) == 2:
            # a residual add into a fresh, otherwise unused conv output
            target = next((t for t in reversed(node.input_tensors)
                           if id(t) in fresh and len(consumers.get(id(t), [])) == 1), None)
            if target is not None:
                other = next(t for t in node.input_tensors if t is not target)
                plan.append((_inplace_add(other), target, node.outputs[0]))
                fresh.add(id(node.outputs[0]))
                continue
        if type(operation) is layers.SqueezeAndExcite2D and len(node.input_tensors) == 1:
            source = node.input_tensors[0]
            if id(source) in fresh and len(consumers.get(id(source), [])) == 1:
                plan.append((_inplace_squeeze_excite(operation), source, node.outputs[0]))
                fresh.add(id(node.outputs[0]))
                continue
        plan.append((None, node, None))
    model.__dict__["_direct_plan"] = plan  # the graph of a built functional model does not change
    return plan


def _inplace_add(other: Any) -> Any:
    return lambda target, values: target.add_(values[id(other)])


def _inplace_squeeze_excite(layer: Any) -> Any:
    """The gate scaling its input in place; its 1x1 convs fused with their activations."""
    if not (_fusable_conv(layer.squeeze_conv) and _fusable_conv(layer.excite_conv)):
        return lambda inputs, values: inputs.mul_(layer.gate(inputs, _call_directly))
    squeeze, excite = _FusedConv(layer.squeeze_conv), _FusedConv(layer.excite_conv)
    return lambda inputs, values: inputs.mul_(excite(squeeze(inputs.mean((1, 2), keepdim=True))))


def _run_plan(model: Any, inputs: list) -> Any:
    values = {id(x): y for x, y in zip(model.inputs, inputs, strict=True)}
    for step, source, output in _plan(model):
        if step is None:
            node = source
            args, kwargs = node.arguments.fill_in(values)
            outputs = _operation_fn(node.operation)(*args, **kwargs)
            for x, y in zip(node.outputs, keras.tree.flatten(outputs), strict=False):
                values[id(x)] = y
        elif isinstance(step, _FusedConv):
            values[id(output)] = step(values[id(source)])
        else:
            values[id(output)] = step(values[id(source)], values)
    return keras.tree.pack_sequence_as(internals.outputs_structure(model), [values[id(x)] for x in model.outputs])


def call(model: keras.Model, inputs: Any, training: Any = None, mask: Any = None, **kwargs: Any) -> Any:
    """`model.call(...)` of a functional model: its graph run layer by layer with each layer's
    `call` when that is safe (see the module docstring), else Keras' `Functional.call`.

    Example:

    ```python
    outputs = direct_call.call(model, images)  # on PyTorch: the direct run; elsewhere Keras'
    ```
    """
    if not _eligible(model, inputs, training, mask, kwargs):
        return internals.functional_call(model, inputs, training=training, mask=mask, **kwargs)
    return _run(model, inputs)


def predict_on_batch(model: keras.Model, x: Any) -> Any:
    """Keras' `predict_on_batch`, except that on PyTorch a float32 array batch that the direct
    run takes goes straight to it under `torch.inference_mode`: the same outputs without Keras'
    predict function and the model's own `Layer.__call__` (~1 ms per call at batch 1)."""
    keras_predict_on_batch = type(model).predict_on_batch
    if (keras.backend.backend() != "torch" or type(model).predict_step is not keras.Model.predict_step
            or not isinstance(x, np.ndarray) or x.dtype != np.float32):
        return keras_predict_on_batch(model, x)
    import torch

    with torch.inference_mode():
        tensor = keras.ops.convert_to_tensor(x)
        if not (model.built and not _has_torch_hooks(model) and _eligible(model, tensor, None, None, {})):
            return keras_predict_on_batch(model, x)
        internals.mark_called(model)
        return keras.tree.map_structure(keras.ops.convert_to_numpy, _run(model, tensor))


def _has_torch_hooks(model: Any) -> bool:
    from torch.nn.modules import module

    return any((model._forward_hooks, model._forward_pre_hooks, module._global_forward_hooks,
                module._global_forward_pre_hooks))
