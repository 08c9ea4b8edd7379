"""The layers of a quantization-aware twin (see `quantize_aware`): fake
quantization of activations (`FakeQuant`), convolutions and dense layers with
their BatchNorm folded in and int8 weights (`QuantConv`), the squeeze-excite
gate with the int8 runtimes' quantization points (`QuantSqueezeExcite`) and
the hard-sigmoid as the runtimes fuse it (`QuantHardSigmoid`) and hard-swish
as integer add and multiply (`QuantHardSwish`).

Everything is `keras.ops`: the twin trains and runs on TensorFlow, JAX and
PyTorch alike. Rounding is `keras.ops.round` (half to even); TFLite rounds
half away from zero, which differs only on exact ties.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import keras
import numpy as np
from keras import ops

# int8 activations: [-128, 127] (TFLite's asymmetric int8; the same grid as
# uint8 [0, 255] shifted by 128). int8 weights: symmetric narrow range [-127, 127].
QMIN, QMAX = -128, 127
WEIGHT_QMAX = 127
# Activations fused into the conv (or dense) before them by the int8
# runtimes: the conv's output tensor is the activation's output.
FUSED_ACTIVATIONS = ("relu", "relu6", "linear")


@dataclasses.dataclass(frozen=True)
class ExportQuantizers:
    """What an exporter puts in place of the twin's fake quantization at
    inference while it traces a twin (see `export_quantizers`).

    Attributes:
        activations: `activations(layer, inputs)`, the output of `FakeQuant`
            `layer` (its range in `layer.range_min` / `range_max`, set when
            `layer.initialized` is 1) for `inputs`.
        convolution: `convolution(layer, inputs, kernel, axes)`, the output
            of `QuantConv` `layer` before its bias: `inputs` through the
            layer's folded `kernel` quantized per output channel (the
            maximum over `axes`).
    """

    activations: Callable[[Any, Any], Any]
    convolution: Callable[[Any, Any, Any, tuple[int, ...]], Any]


_EXPORT_QUANTIZERS: list[ExportQuantizers] = []


@contextlib.contextmanager
def export_quantizers(quantizers: ExportQuantizers) -> Iterator[None]:
    """Within the block, a twin's inference calls quantize with `quantizers`
    instead of `keras.ops` (training and calibration calls are unchanged): the
    hook through which an exporter traces the twin into its runtime's own
    quantization ops (the LiteRT export: TensorFlow's fake-quant ops, which
    the TFLite converter turns into int8 tensors with the same grid).

    Example:

    ```python
    # not run: needs a twin and a TensorFlow trace
    with export_quantizers(ExportQuantizers(activations=fq_activations, convolution=fq_convolution)):
        graph = tf.function(twin).get_concrete_function(spec)
    ```
    """
    if not isinstance(quantizers, ExportQuantizers):
        raise TypeError(f"`quantizers` must be an ExportQuantizers; got {type(quantizers).__name__}.")
    _EXPORT_QUANTIZERS.append(quantizers)
    try:
        yield
    finally:
        _EXPORT_QUANTIZERS.remove(quantizers)


def activation_name(activation: Any) -> str:
    """The name of a Keras activation (a name or a function): "relu", ..."""
    if activation is None:
        return "linear"
    if isinstance(activation, str):
        return activation
    return keras.activations.serialize(activation) if not hasattr(activation, "__name__") else activation.__name__


def quantization_grid(low: Any, high: Any) -> tuple[Any, Any, Any]:
    """`(scale, nudged_low, nudged_high)` of the 8-bit grid for the range
    `[low, high]`, the way TensorFlow's `fake_quant_with_min_max_vars` and
    the TFLite converter make it: the range is widened to hold 0, and
    nudged so that 0 is exactly representable (an integer zero point).

    Example:

    ```python
    scale, low, high = quantization_grid(-1.0, 3.0)  # scale 4/255
    ```
    """
    low = ops.minimum(low, 0.0)
    high = ops.maximum(high, 0.0)
    scale = ops.maximum((high - low) / float(QMAX - QMIN), 1e-12)
    zero_point = ops.clip(ops.round(QMIN - low / scale), QMIN, QMAX)
    return scale, (QMIN - zero_point) * scale, (QMAX - zero_point) * scale


def fake_quantize(x: Any, low: Any, high: Any) -> Any:
    """`x` rounded to the 8-bit grid of `[low, high]` (see
    `quantization_grid`), with the clipped straight-through gradient: 1
    inside the range, 0 outside.

    Example:

    ```python
    fake_quantize(np.array([0.1, 5.0], "float32"), -1.0, 3.0)  # [0.0941, 2.9961]
    ```
    """
    scale, low, high = quantization_grid(ops.cast(low, x.dtype), ops.cast(high, x.dtype))
    clipped = ops.clip(x, low, high)
    rounded = ops.round((clipped - low) / scale) * scale + low
    return clipped + ops.stop_gradient(rounded - clipped)


def fake_quantize_weights(kernel: Any, axes: tuple[int, ...]) -> Any:
    """`kernel` quantized per output channel, symmetric int8 in [-127, 127]
    (TFLite's per-channel weights): each channel's scale is its largest
    magnitude / 127, the reduction over `axes`. Straight-through gradient.

    Example:

    ```python
    fake_quantize_weights(kernel, axes=(0, 1, 2))  # a Conv2D kernel, channels last
    ```
    """
    scale = ops.max(ops.abs(kernel), axis=axes, keepdims=True) / float(WEIGHT_QMAX)
    scale = ops.stop_gradient(ops.where(scale > 0, scale, ops.ones_like(scale)))
    rounded = ops.round(kernel / scale) * scale
    return kernel + ops.stop_gradient(rounded - kernel)


@keras.saving.register_keras_serializable(package="mobilenetv3")
class FakeQuant(keras.layers.Layer):
    """Per-tensor 8-bit fake quantization of activations with a tracked range.

    The range `[range_min, range_max]` (non-trainable weights, saved with the
    model) follows an exponential moving average of the batch minimum and
    maximum in training (`range * momentum + batch * (1 - momentum)`; the
    first batch sets it), as TF's `MovingAverageQuantizer` and PyTorch's
    `MovingAverageMinMaxObserver` do. At inference it is fixed. Until a range
    has been seen (`calibrate_ranges` or a training step) the layer passes its
    input through (an uncalibrated twin has float activations, int8
    weights). Calibration (`calibrate_ranges`) tracks the overall minimum and
    maximum of float activations, as post-training calibration does. The
    gradient is the clipped straight-through estimator.

    Args:
        momentum: the moving average's momentum, in [0, 1]; 1 keeps the
            range where calibration (or the first training batch) set it.
        fixed_range: `(low, high)`: the range, known beforehand (the raw
            pixels' `(0, 255)`); neither training nor calibration moves it.

    Example:

    ```python
    layer = FakeQuant()
    layer(np.array([[0.0, 1.0, 2.0]], "float32"), training=True)  # range [0, 2]
    ```
    """

    def __init__(self, momentum: float = 0.99, fixed_range: Sequence[float] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if isinstance(momentum, bool) or not isinstance(momentum, (int, float)) or not 0 <= momentum <= 1:
            raise ValueError(f"`momentum` must be a number in [0, 1]; got {momentum!r}.")
        self.momentum = float(momentum)
        self.fixed_range = check_range("fixed_range", fixed_range)
        self.observing = False  # set by `calibrate_ranges`: inference calls track min/max

    def build(self, input_shape: tuple) -> None:
        low, high = self.fixed_range or (0.0, 0.0)

        def scalar(name: str, value: float) -> Any:
            return self.add_weight(shape=(), initializer=keras.initializers.Constant(value), trainable=False,
                                   name=name, dtype="float32")

        self.range_min = scalar("range_min", low)
        self.range_max = scalar("range_max", high)
        self.initialized = scalar("initialized", float(self.fixed_range is not None))

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        if _EXPORT_QUANTIZERS and not (training or self.observing):
            return _EXPORT_QUANTIZERS[-1].activations(self, inputs)
        low, high, seen = (ops.convert_to_tensor(v) for v in (self.range_min, self.range_max, self.initialized))
        if self.fixed_range is not None:
            return inputs if self.observing and not training else fake_quantize(inputs, low, high)
        if training or self.observing:
            batch_min = ops.stop_gradient(ops.cast(ops.min(inputs), "float32"))
            batch_max = ops.stop_gradient(ops.cast(ops.max(inputs), "float32"))
            if training:
                m = self.momentum
                low = ops.where(seen > 0, low * m + batch_min * (1 - m), batch_min)
                high = ops.where(seen > 0, high * m + batch_max * (1 - m), batch_max)
            else:  # calibration: the range of everything seen, as the TFLite calibrator takes it
                low = ops.where(seen > 0, ops.minimum(low, batch_min), batch_min)
                high = ops.where(seen > 0, ops.maximum(high, batch_max), batch_max)
            self.range_min.assign(low)
            self.range_max.assign(high)
            self.initialized.assign(ops.ones((), "float32"))
            if not training:  # calibration sees float activations, as post-training calibration does
                return inputs
            return fake_quantize(inputs, low, high)
        return ops.where(seen > 0, fake_quantize(inputs, low, high), inputs)

    def reset(self) -> None:
        """Forget the range (the next batch sets it); a fixed range stays."""
        if self.fixed_range is None:
            for variable in (self.range_min, self.range_max, self.initialized):
                variable.assign(ops.zeros((), "float32"))

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return input_shape

    def get_config(self) -> dict:
        fixed = None if self.fixed_range is None else list(self.fixed_range)
        return {**super().get_config(), "momentum": self.momentum, "fixed_range": fixed}


def check_range(name: str, value: Any) -> tuple[float, float] | None:
    """`value` as a `(low, high)` pair of finite floats with low < high and
    low <= 0 <= high (an 8-bit grid holds 0 exactly), or None; a ValueError
    naming `name` otherwise."""
    if value is None:
        return None
    try:
        low, high = (float(v) for v in value)
        valid = all(np.isfinite((low, high))) and low < high and low <= 0 <= high
    except (TypeError, ValueError):
        valid = False
    if not valid or any(isinstance(v, (bool, str)) for v in value):
        raise ValueError(f"`{name}` must be None or a pair (low, high) of finite numbers with low <= 0 <= high "
                         f"and low < high, such as (0, 255); got {value!r}.")
    return low, high


def _depthwise(layer: Any) -> bool:
    return isinstance(layer, keras.layers.DepthwiseConv2D)


@keras.saving.register_keras_serializable(package="mobilenetv3")
class QuantConv(keras.layers.Layer):
    """A `Conv2D`, `DepthwiseConv2D` or `Dense` with the `BatchNormalization`
    after it folded in and its folded weights fake-quantized per output
    channel (symmetric int8, [-127, 127]), as int8 runtimes run it.

    BatchNorm folding in training follows PyTorch's QAT `ConvBnReLU2d`
    (`torch.ao.nn.intrinsic.qat._ConvBnNd`, the "approximate" forward), which
    is the correction scheme of Krishnamoorthi 2018 ("Quantizing deep
    convolutional networks for efficient inference", 3.2) refining Jacob et
    al. 2018 ("Quantization and training of neural networks for efficient
    integer-arithmetic-only inference", fig. C.8) and TF's `_FoldedBatchNorm`:
    the weights are always folded with the moving statistics,
    `w * gamma / sqrt(moving_variance + eps)`, then quantized; in training the
    conv output is divided back by that scale and normalized with the batch
    statistics (which update the moving statistics as Keras' BatchNorm does),
    so training sees batch normalization and the quantized weights do not
    jitter with each batch. After `freeze_batchnorm_after` training steps (or
    when the layer is frozen, or at inference) the output is the folded conv:
    `conv(x, q(w * scale)) + beta + (bias - moving_mean) * scale`.

    The conv (and BatchNorm) are kept as sub-layers holding the weights, with
    their own configs; the layer applies the conv's activation at the end.

    Args:
        conv: a Keras `Conv2D`, `DepthwiseConv2D` or `Dense` (or its
            serialized form).
        batch_norm: the `BatchNormalization` after it, or None.
        freeze_batchnorm_after: training steps after which the batch
            statistics are no longer used nor tracked (None: never; 0: always
            the moving statistics).

    Example:

    ```python
    layer = QuantConv(keras.layers.Conv2D(8, 3, use_bias=False), keras.layers.BatchNormalization())
    y = layer(np.ones((1, 9, 9, 4), "float32"))  # (1, 7, 7, 8)
    ```
    """

    def __init__(self, conv: Any, batch_norm: Any = None, freeze_batchnorm_after: int | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if isinstance(conv, dict):
            conv = keras.saving.deserialize_keras_object(conv)
        if isinstance(batch_norm, dict):
            batch_norm = keras.saving.deserialize_keras_object(batch_norm)
        if not isinstance(conv, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)):
            raise TypeError(f"`conv` must be a Conv2D, DepthwiseConv2D or Dense layer; got {type(conv).__name__}.")
        if isinstance(conv, keras.layers.Conv2D) and conv.groups != 1:
            raise ValueError(f"`conv` {conv.name!r} has groups={conv.groups}; only groups=1 is supported.")
        if getattr(conv, "data_format", "channels_last") != "channels_last":
            raise ValueError(f"`conv` {conv.name!r} must be channels_last.")
        if freeze_batchnorm_after is not None and (
                isinstance(freeze_batchnorm_after, bool) or not isinstance(freeze_batchnorm_after, int)
                or freeze_batchnorm_after < 0):
            raise ValueError(f"`freeze_batchnorm_after` must be None or an integer >= 0; "
                             f"got {freeze_batchnorm_after!r}.")
        self.conv = conv
        self.batch_norm = batch_norm
        self.freeze_batchnorm_after = freeze_batchnorm_after

    def build(self, input_shape: tuple) -> None:
        if not self.conv.built:
            self.conv.build(input_shape)
        if self.batch_norm is not None and not self.batch_norm.built:
            self.batch_norm.build(self.conv.compute_output_shape(input_shape))
        self.step = self.add_weight(shape=(), initializer="zeros", trainable=False, name="step", dtype="float32")

    def _kernel_axes(self) -> tuple[int, ...]:
        if isinstance(self.conv, keras.layers.Dense):
            return (0,)
        return (0, 1) if _depthwise(self.conv) else (0, 1, 2)

    def _apply(self, inputs: Any, kernel: Any) -> Any:
        conv = self.conv
        if isinstance(conv, keras.layers.Dense):
            return ops.matmul(inputs, kernel)
        op = ops.depthwise_conv if _depthwise(conv) else ops.conv
        return op(inputs, kernel, strides=conv.strides, padding=conv.padding, data_format="channels_last",
                  dilation_rate=conv.dilation_rate)

    def folding_scale(self) -> Any:
        """`gamma / sqrt(moving_variance + epsilon)` per output channel (None
        without BatchNorm): what the folded kernel is multiplied by."""
        bn = self.batch_norm
        if bn is None:
            return None
        gamma = bn.gamma if bn.scale else ops.ones(bn.moving_mean.shape)
        return gamma / ops.sqrt(bn.moving_variance + bn.epsilon)

    def folded_kernel_and_bias(self) -> tuple[Any, Any]:
        """The folded float kernel (before quantization) and bias, as int8
        runtimes fold them (inference BatchNorm)."""
        conv, bn = self.conv, self.batch_norm
        kernel = conv.kernel
        bias = conv.bias if conv.use_bias else ops.zeros((kernel.shape[-1] * (
            kernel.shape[-2] if _depthwise(conv) else 1),), kernel.dtype)
        if bn is None:
            return kernel, bias
        scale = self.folding_scale()
        beta = bn.beta if bn.center else ops.zeros(bn.moving_mean.shape)
        return kernel * self._per_kernel(scale), beta + (bias - bn.moving_mean) * scale

    def _per_kernel(self, per_channel: Any) -> Any:
        if _depthwise(self.conv):
            return ops.reshape(per_channel, tuple(self.conv.kernel.shape[2:]))
        return per_channel

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        conv, bn = self.conv, self.batch_norm
        activation = conv.activation
        kernel, bias = self.folded_kernel_and_bias()
        if _EXPORT_QUANTIZERS and not training:
            outputs = _EXPORT_QUANTIZERS[-1].convolution(self, inputs, kernel, self._kernel_axes())
        else:
            outputs = self._apply(inputs, fake_quantize_weights(kernel, self._kernel_axes()))
        folded = outputs + bias
        train_bn = bool(training) and bn is not None and bn.trainable and self.trainable
        if not train_bn or self.freeze_batchnorm_after == 0:
            return activation(folded)
        scale = self.folding_scale()
        safe_scale = ops.where(ops.equal(scale, 0.0), ops.ones_like(scale), scale)
        unscaled = outputs / safe_scale + (conv.bias if conv.use_bias else 0.0)  # conv with unfolded weights
        axes = tuple(range(len(unscaled.shape) - 1))
        mean = ops.mean(unscaled, axis=axes)
        variance = ops.var(unscaled, axis=axes)
        gamma = bn.gamma if bn.scale else ops.ones_like(mean)
        beta = bn.beta if bn.center else ops.zeros_like(mean)
        normalized = gamma * (unscaled - mean) / ops.sqrt(variance + bn.epsilon) + beta
        m = bn.momentum
        moving_mean, moving_variance = ops.convert_to_tensor(bn.moving_mean), ops.convert_to_tensor(bn.moving_variance)
        new_mean = moving_mean * m + ops.stop_gradient(mean) * (1 - m)
        new_variance = moving_variance * m + ops.stop_gradient(variance) * (1 - m)
        if self.freeze_batchnorm_after is not None:
            frozen = ops.convert_to_tensor(self.step) >= float(self.freeze_batchnorm_after)
            normalized = ops.where(frozen, folded, normalized)
            new_mean = ops.where(frozen, moving_mean, new_mean)
            new_variance = ops.where(frozen, moving_variance, new_variance)
        bn.moving_mean.assign(new_mean)
        bn.moving_variance.assign(new_variance)
        self.step.assign(self.step + 1.0)
        return activation(normalized)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return self.conv.compute_output_shape(input_shape)

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "conv": keras.saving.serialize_keras_object(self.conv),
            "batch_norm": None if self.batch_norm is None else keras.saving.serialize_keras_object(self.batch_norm),
            "freeze_batchnorm_after": self.freeze_batchnorm_after,
        }


@keras.saving.register_keras_serializable(package="mobilenetv3")
class QuantHardSigmoid(keras.layers.Layer):
    """Hard-sigmoid as int8 runtimes run it, `relu6(x + 3) / 6` in two
    quantized steps: the converter folds `+ 3` into the conv before it and
    fuses `relu6` (one quantized tensor), then multiplies by 1/6 (the
    output, quantized by whoever consumes it).

    Args:
        momentum: the moving-average momentum of the inner range.

    Example:

    ```python
    layer = QuantHardSigmoid()
    layer(np.array([[-4.0, 0.0, 4.0]], "float32"))  # [0.0, 0.5, 1.0] (float until a range is seen)
    ```
    """

    def __init__(self, momentum: float = 0.99, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.momentum = momentum
        self.inner_quant = FakeQuant(momentum, name="inner_quant")

    def build(self, input_shape: tuple) -> None:
        self.inner_quant.build(input_shape)

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        return self.inner_quant(ops.relu6(inputs + 3.0), training=training) / 6.0

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "momentum": self.momentum}


# The fixed grid of hard-swish's inner `relu6(x + 3)` in the int8 runtimes' add-and-multiply
# form (onnxruntime's QLinearAdd: scale 6/255, the uint8 zero point 0; read back with 1/255).
HARD_SIGMOID_GRID = (0.0, 6.0)


@keras.saving.register_keras_serializable(package="mobilenetv3")
class QuantHardSwish(keras.layers.Layer):
    """Hard-swish as int8 runtimes run it with integer ops only:
    `x * q(relu6(x + 3)) / 6`, where `q` rounds to the fixed 8-bit grid of
    [0, 6] (onnxruntime's QLinearAdd of `x + 3`, saturating to [0, 6], whose
    codes read with scale 1/255 are the hard-sigmoid; then QLinearMul by
    `x`). `x` is the quantized input; the product is quantized by the
    tensor's next `FakeQuant`. Straight-through gradient (see
    `fake_quantize`). The post-training ONNX export makes the same ops
    (`mobilenetv3.export.onnx_int8.hard_sigmoid_as_add`).

    Example:

    ```python
    layer = QuantHardSwish()
    layer(np.array([[-4.0, 1.0, 4.0]], "float32"))  # [0.0, 0.6667, 4.0]
    ```
    """

    def call(self, inputs: Any) -> Any:
        return inputs * fake_quantize(ops.relu6(inputs + 3.0), *HARD_SIGMOID_GRID) / 6.0

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return input_shape


def activation_needs_input_quant(name: str) -> bool:
    """Whether int8 runtimes quantize the tensor before activation `name`
    (not fused into the op before it, as relu, relu6 and hard-sigmoid's
    relu6 are)."""
    return name not in (*FUSED_ACTIVATIONS, "hard_sigmoid")


@keras.saving.register_keras_serializable(package="mobilenetv3")
class QuantSqueezeExcite(keras.layers.Layer):
    """`SqueezeAndExcite2D` with the int8 runtimes' quantization points:
    the pooled mean, the squeeze conv's (fused) activation, the excite
    conv, the gate (hard-sigmoid in two steps, see `QuantHardSigmoid`) and
    the product `inputs * gate`, each quantized per tensor; both convs are
    `QuantConv`s (int8 per-channel weights, float bias).

    Args:
        squeeze_conv: the squeeze 1x1 conv (a layer or its config), without activation.
        excite_conv: the excite 1x1 conv, without activation.
        squeeze_activation: the squeeze conv's activation.
        excite_activation: the gate's activation.
        momentum: the moving-average momentum of the ranges.

    Example:

    ```python
    se = SqueezeAndExcite2D(filters=16, bottleneck_filters=8)
    se.build((1, 7, 7, 16))
    layer = QuantSqueezeExcite.from_layer(se)
    ```
    """

    def __init__(self, squeeze_conv: Any, excite_conv: Any, squeeze_activation: str = "relu",
                 excite_activation: str = "hard_sigmoid", momentum: float = 0.99, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.squeeze_activation = squeeze_activation
        self.excite_activation = excite_activation
        self.momentum = momentum
        self.squeeze = QuantConv(squeeze_conv, name="squeeze")
        self.excite = QuantConv(excite_conv, name="excite")
        quant = {"momentum": momentum}
        self.pool_quant = FakeQuant(name="pool_quant", **quant)
        self.squeeze_pre_quant = (FakeQuant(name="squeeze_pre_quant", **quant)
                                  if activation_needs_input_quant(squeeze_activation) else None)
        self.squeeze_quant = FakeQuant(name="squeeze_quant", **quant)
        self.excite_pre_quant = (FakeQuant(name="excite_pre_quant", **quant)
                                 if activation_needs_input_quant(excite_activation) else None)
        self.gate_activation = (QuantHardSigmoid(momentum, name="gate_activation")
                                if excite_activation == "hard_sigmoid" else None)
        self.gate_quant = FakeQuant(name="gate_quant", **quant)
        self.output_quant = FakeQuant(name="output_quant", **quant)

    @classmethod
    def from_layer(cls, layer: Any, momentum: float = 0.99, name: str | None = None) -> QuantSqueezeExcite:
        """The twin of a `SqueezeAndExcite2D` (unbuilt; copy the conv weights once built)."""
        squeeze = type(layer.squeeze_conv).from_config({**layer.squeeze_conv.get_config(), "activation": None})
        excite = type(layer.excite_conv).from_config({**layer.excite_conv.get_config(), "activation": None})
        return cls(squeeze, excite, layer.squeeze_activation, layer.excite_activation, momentum,
                   name=name or layer.name, dtype=layer.dtype_policy)

    def build(self, input_shape: tuple) -> None:
        pooled = (input_shape[0], 1, 1, input_shape[-1])
        self.squeeze.build(pooled)
        squeezed = self.squeeze.compute_output_shape(pooled)
        self.excite.build(squeezed)
        gate = self.excite.compute_output_shape(squeezed)
        for quant, shape in ((self.pool_quant, pooled), (self.squeeze_pre_quant, squeezed),
                             (self.squeeze_quant, squeezed), (self.excite_pre_quant, gate),
                             (self.gate_activation, gate), (self.gate_quant, gate), (self.output_quant, input_shape)):
            if quant is not None:
                quant.build(shape)

    def _activate(self, x: Any, name: str, pre_quant: Any, training: Any) -> Any:
        if pre_quant is not None:
            x = pre_quant(x, training=training)
        if name == "hard_sigmoid" and self.gate_activation is not None and pre_quant is None:
            return self.gate_activation(x, training=training)
        return keras.activations.get(name)(x)

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        pooled = self.pool_quant(ops.mean(inputs, axis=(1, 2), keepdims=True), training=training)
        squeezed = self._activate(self.squeeze(pooled, training=training), self.squeeze_activation,
                                  self.squeeze_pre_quant, training)
        squeezed = self.squeeze_quant(squeezed, training=training)
        gate = self._activate(self.excite(squeezed, training=training), self.excite_activation,
                              self.excite_pre_quant, training)
        gate = self.gate_quant(gate, training=training)
        return self.output_quant(inputs * gate, training=training)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return input_shape

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "squeeze_conv": keras.saving.serialize_keras_object(self.squeeze.conv),
            "excite_conv": keras.saving.serialize_keras_object(self.excite.conv),
            "squeeze_activation": self.squeeze_activation,
            "excite_activation": self.excite_activation,
            "momentum": self.momentum,
        }
