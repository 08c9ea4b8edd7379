"""Building blocks of MobileNetV3 that Keras does not ship."""

from __future__ import annotations

import threading
from typing import Any

import keras
from keras import ops

from mobilenetv3.runtime.initializers import HostInitializedWeights

SAME, SYMMETRIC = "same", "symmetric"
PADDINGS = (SAME, SYMMETRIC)


def check_activation(name: Any, argument: str) -> str:
    """Return `name` if Keras knows it as an activation, else raise.

    Args:
        name: an activation name such as "relu" or "hard_swish".
        argument: the argument the name came from, for the error message.
    """
    if not isinstance(name, str):
        raise TypeError(
            f"`{argument}` must be an activation name (a string such as 'relu' or "
            f"'hard_swish'); got {name!r} of type {type(name).__name__}."
        )
    try:
        keras.activations.get(name)
    except (ValueError, TypeError):
        known = sorted(
            n for n in dir(keras.activations) if not n.startswith("_") and n not in {"get", "serialize", "deserialize"}
        )
        raise ValueError(
            f"`{argument}` is {name!r}, which is not a Keras activation. "
            f"Use 'relu', 'hard_swish' or any of: {', '.join(known)}."
        ) from None
    return name


@keras.saving.register_keras_serializable(package="mobilenetv3")
class SqueezeAndExcite2D(keras.layers.Layer):
    """Squeeze-and-excite gate: pool, 1x1 conv + ReLU, 1x1 conv + hard-sigmoid.

    The class and attribute names (`squeeze_conv`, `excite_conv`) match
    keras-cv's layer so that keras-cv weight files load unchanged.

    Args:
        filters: channels of the input and of the gate.
        bottleneck_filters: channels of the squeeze convolution.
        squeeze_activation: activation after the squeeze convolution.
        excite_activation: activation producing the gate.

    Example:

    ```python
    se = SqueezeAndExcite2D(filters=16, bottleneck_filters=8)
    y = se(np.ones((1, 7, 7, 16), "float32"))  # (1, 7, 7, 16)
    ```
    """

    def __init__(
        self,
        filters: int,
        bottleneck_filters: int,
        squeeze_activation: str = "relu",
        excite_activation: str = "hard_sigmoid",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.filters = filters
        self.bottleneck_filters = bottleneck_filters
        self.squeeze_activation = squeeze_activation
        self.excite_activation = excite_activation
        conv_kwargs = {"kernel_size": 1, "use_bias": True, "dtype": self.dtype_policy}
        self.squeeze_conv = Conv2D(
            bottleneck_filters, activation=squeeze_activation, name="squeeze_conv", **conv_kwargs
        )
        self.excite_conv = Conv2D(
            filters, activation=excite_activation, name="excite_conv", **conv_kwargs
        )

    def build(self, input_shape: tuple) -> None:
        pooled = (input_shape[0], 1, 1, input_shape[-1])
        self.squeeze_conv.build(pooled)
        self.excite_conv.build(pooled[:-1] + (self.bottleneck_filters,))

    def call(self, inputs: Any) -> Any:
        return inputs * self._gate(inputs)

    def _gate(self, inputs: Any) -> Any:
        gate = ops.mean(inputs, axis=(1, 2), keepdims=True)
        return invoke(self.excite_conv, invoke(self.squeeze_conv, gate))

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return input_shape

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            filters=self.filters,
            bottleneck_filters=self.bottleneck_filters,
            squeeze_activation=self.squeeze_activation,
            excite_activation=self.excite_activation,
        )
        return config


def same_padding(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int, int]:
    """TF "SAME": (pad before, pad after, output size) along one axis."""
    effective = (kernel - 1) * dilation + 1
    out = -(-size // stride)
    total = max((out - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2, out


def shifted_depthwise_conv(inputs: Any, kernel: Any, strides: tuple, padding: str, dilation_rate: tuple) -> Any:
    """Depthwise convolution (channels-last, multiplier 1) as a sum of
    `kh * kw` shifted, strided slices times per-channel weights.

    XLA on CPU lowers a grouped convolution to a slow generic loop (12-40x
    slower than this on the benchmark machine); a sum of slices fuses into
    one elementwise loop. Needs static spatial sizes, as under `jax.jit`.

    Example:

    ```python
    x, kernel = np.ones((1, 8, 8, 4), "float32"), np.ones((3, 3, 4, 1), "float32")
    y = shifted_depthwise_conv(x, kernel, (2, 2), "same", (1, 1))  # (1, 4, 4, 4)
    ```
    """
    kh, kw = kernel.shape[0], kernel.shape[1]
    axes = []
    for size, k, stride, dilation in zip(inputs.shape[1:3], (kh, kw), strides, dilation_rate, strict=True):
        if padding == "same":
            axes.append(same_padding(size, k, stride, dilation))
        else:
            axes.append((0, 0, (size - (k - 1) * dilation - 1) // stride + 1))
    (top, bottom, out_h), (left, right, out_w) = axes
    padded = ops.pad(inputs, ((0, 0), (top, bottom), (left, right), (0, 0)))
    (sh, sw), (dh, dw) = strides, dilation_rate
    total = None
    for i in range(kh):
        for j in range(kw):
            window = padded[:, i * dh : i * dh + (out_h - 1) * sh + 1 : sh, j * dw : j * dw + (out_w - 1) * sw + 1 : sw]
            term = window * kernel[i, j, :, 0]
            total = term if total is None else total + term
    return total


_direct = threading.local()


def direct_run() -> bool:
    """Whether this thread is inside `mobilenetv3.runtime.direct_call`'s layer-by-layer inference run."""
    return getattr(_direct, "active", False)


def invoke(layer: keras.layers.Layer, *args: Any) -> Any:
    """`layer(*args)`, or `layer.call(*args)` inside a direct inference run (a layer's sublayers)."""
    return layer.call(*args) if direct_run() else layer(*args)


# The PyTorch fast paths of Conv2D, DepthwiseConv2D and BatchNormalization below (set
# False to run Keras' own ops, e.g. for an A/B comparison).
TORCH_FAST_PATHS = True


def _torch_fast_path(layer: Any) -> bool:
    """Whether a conv layer can run as one `torch.nn.functional.conv2d` on a channels-last view."""
    return TORCH_FAST_PATHS and layer.data_format == "channels_last" and getattr(layer, "depth_multiplier", 1) == 1


def _variable_value(variable: Any) -> Any:
    return variable.value if hasattr(variable, "value") else variable


def _torch_conv_padding(layer: Any, inputs: Any) -> tuple[tuple[int, int], tuple[int, int, int, int]] | None:
    """The conv's padding for `torch.nn.functional.conv2d`: (symmetric padding, extra
    asymmetric (left, right, top, bottom) padding for `torch.nn.functional.pad`), or
    None when the spatial sizes are not plain ints (symbolic under torch.compile).

    TF "SAME" pads `total // 2` before and the rest after; with a stride the total can be odd,
    which conv2d's own (symmetric) padding cannot express: the odd pixel goes to `pad`.
    """
    if layer.padding == "valid":
        return (0, 0), (0, 0, 0, 0)
    sizes = tuple(inputs.shape[1:3])
    if any(s != 1 for s in layer.strides) and not all(isinstance(size, int) for size in sizes):
        return None  # with a stride, TF "SAME" padding depends on the size
    axes = [same_padding(size if isinstance(size, int) else k, k, s, d)[:2]
            for size, k, s, d in zip(sizes, layer.kernel_size, layer.strides, layer.dilation_rate, strict=True)]
    (top, bottom), (left, right) = axes
    symmetric = (min(top, bottom), min(left, right))
    extra = (left - symmetric[1], right - symmetric[1], top - symmetric[0], bottom - symmetric[0])
    return symmetric, extra


def _torch_kernel(layer: Any, permutation: tuple[int, ...], dtype: Any) -> Any:
    """The layer's kernel in PyTorch's layout. Outside autograd (inference under `no_grad` /
    `inference_mode`) it is kept between calls, keyed on the variable's tensor and its version
    counter (bumped by every in-place assignment), instead of conv2d re-laying it out every call."""
    import torch

    kernel = _variable_value(layer.kernel)
    if torch.is_grad_enabled() or torch.compiler.is_compiling():
        return kernel.permute(*permutation).to(dtype)
    cache = layer.__dict__.get("_torch_kernel_cache")
    if cache is None or cache[0] is not kernel or cache[1] != kernel._version or cache[2].dtype != dtype:
        laid_out = kernel.permute(*permutation).to(dtype).contiguous(memory_format=torch.channels_last)
        cache = (kernel, kernel._version, laid_out)
        layer.__dict__["_torch_kernel_cache"] = cache  # untracked: no Keras / nn.Module bookkeeping
    return cache[2]


def kernel_shift(layer: Any, extra: tuple[int, int, int, int]) -> tuple[int, int] | None:
    """(rows, columns) of zeros to put before the kernel instead of padding the input, or None.

    TF "SAME" with a stride pads one pixel more after than before (`extra` = (0, 1, 0, 1)); a
    k-tap window starting at `i` is the (k+1)-tap window, with a leading zero tap, starting at
    `i - 1`, so a kernel with a zero first row/column and symmetric padding one larger gives the
    same sums without copying the input into a padded buffer (2x faster for the strided depthwise
    layers at batch 32, measured; not for dense convs, where the extra taps cost more than the copy).
    """
    left, right, top, bottom = extra
    if left or top or right > 1 or bottom > 1 or not (right or bottom) or tuple(layer.dilation_rate) != (1, 1):
        return None
    return bottom, right


def torch_kernel_permutation(depthwise: bool) -> tuple[int, ...]:
    """The permutation from a Keras conv kernel (kh, kw, in, out) / depthwise kernel
    (kh, kw, channels, 1) to PyTorch's (out, in / groups, kh, kw)."""
    return (2, 3, 0, 1) if depthwise else (3, 2, 0, 1)


def torch_conv(layer: Any, inputs: Any, depthwise: bool = False, weights: tuple | None = None,
               activate: bool = True) -> Any:
    """A channels-last Keras conv layer's forward pass on the PyTorch backend without Keras'
    layout copies, or None where it does not apply (then Keras' op must run).

    Keras runs a channels-last conv on PyTorch as permute -> `.contiguous()`
    (an NCHW copy) -> `.contiguous(channels_last)` (a second copy, back to
    the original memory order) -> conv -> permute, so every conv copies its
    input twice (30% of Large's time at batch 32). An NHWC tensor permuted to
    NCHW already *is* a channels-last tensor: convolving that view directly
    gives the same result with no copy (oneDNN's channels-last kernels).
    TF "SAME" padding with a stride (asymmetric when the total is odd) is
    conv2d's symmetric padding plus one `torch.nn.functional.pad` of the
    odd row/column, which keeps the channels-last layout.

    `weights`: optional (kernel in PyTorch's layout, bias) to use instead of the
    layer's (a BatchNorm folded in at inference, see `mobilenetv3.runtime.direct_call`);
    `activate=False` leaves out the layer's activation.
    """
    if not _torch_fast_path(layer) or (not depthwise and layer.groups != 1):
        return None
    padding = _torch_conv_padding(layer, inputs)
    if padding is None:
        return None
    import torch
    import torch.nn.functional as functional

    if weights is None and _pooled_pointwise(layer, inputs, depthwise):
        y = _pointwise_matmul(layer, inputs)
        return layer.activation(y) if activate and layer.activation is not None else y
    symmetric, extra = padding
    # the zero-tap kernel saves the padded copy at inference; under autograd the larger kernel's
    # backward costs more than the copy (Small, batch 32: 14 ms of a 300 ms step, measured)
    shift = kernel_shift(layer, extra) if depthwise and not torch.is_grad_enabled() else None
    x = inputs.permute(0, 3, 1, 2)  # a view: NCHW with channels-last strides
    if shift is not None:
        symmetric = (symmetric[0] + shift[0], symmetric[1] + shift[1])
    elif any(extra):
        x = functional.pad(x, extra)
    # depthwise groups from the kernel's static shape: under torch.compile the input's shape is symbolic
    groups = int(layer.kernel.shape[2]) if depthwise else 1
    if weights is None:
        kernel = _torch_kernel(layer, torch_kernel_permutation(depthwise), x.dtype)
        bias = _variable_value(layer.bias).to(x.dtype) if layer.use_bias else None
    else:
        kernel, bias = weights
    if shift is not None and weights is None:
        kernel = functional.pad(kernel, (shift[1], 0, shift[0], 0))
    y = functional.conv2d(x, kernel, bias, layer.strides, symmetric, layer.dilation_rate, groups)
    y = y.permute(0, 2, 3, 1)
    return layer.activation(y) if activate and layer.activation is not None else y


def is_pointwise(layer: Any, depthwise: bool = False) -> bool:
    """A dense 1x1 conv with stride 1: one matrix product over the pixels (`pointwise_product`)."""
    return not depthwise and tuple(layer.kernel_size) == (1, 1) and tuple(layer.strides) == (1, 1)


def pointwise_product(inputs: Any, matrix: Any, bias: Any = None) -> Any:
    """A 1x1 conv of an NHWC PyTorch tensor as one matrix product: (pixels, in) x `matrix` (in,
    out) [+ `bias`], back in NHWC."""
    import torch

    rows = inputs.reshape(-1, inputs.shape[-1])
    outputs = torch.mm(rows, matrix) if bias is None else torch.addmm(bias, rows, matrix)
    return outputs.view(*inputs.shape[:-1], matrix.shape[1])


def _pooled_pointwise(layer: Any, inputs: Any, depthwise: bool) -> bool:
    """A 1x1 conv (stride 1) of a 1x1 map: squeeze-excite and classifier-head convs."""
    return is_pointwise(layer, depthwise) and tuple(inputs.shape[1:3]) == (1, 1)


def _pointwise_matmul(layer: Any, inputs: Any) -> Any:
    """`_pooled_pointwise` as one matrix product with the Keras kernel as it is stored, (1, 1, in,
    out) viewed as (in, out): no kernel re-layout, and a matrix-product backward, where PyTorch's
    conv (and its backward) on a 1x1 map costs 2-4x more (classifier head, batch 32, measured)."""
    kernel = _variable_value(layer.kernel)
    matrix = kernel.reshape(kernel.shape[2], kernel.shape[3]).to(inputs.dtype)
    bias = _variable_value(layer.bias).to(inputs.dtype) if layer.use_bias else None
    return pointwise_product(inputs, matrix, bias)


@keras.saving.register_keras_serializable(package="mobilenetv3")
class Conv2D(HostInitializedWeights, keras.layers.Conv2D):
    """`keras.layers.Conv2D`, same weights, config and weight-file keys, whose
    PyTorch forward pass avoids Keras' two layout copies per call (see
    `torch_conv`). Other backends use Keras' own op.

    Example:

    ```python
    layer = Conv2D(8, 3, padding="same")
    y = layer(np.ones((1, 9, 9, 4), "float32"))  # (1, 9, 9, 8)
    ```
    """

    def call(self, inputs: Any) -> Any:
        outputs = torch_conv(self, inputs) if keras.backend.backend() == "torch" else None
        return super().call(inputs) if outputs is None else outputs


@keras.saving.register_keras_serializable(package="mobilenetv3")
class BatchNormalization(HostInitializedWeights, keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization`, same weights, config and weight-file
    keys, whose PyTorch pass is one fused PyTorch batch norm on a
    channels-last view instead of Keras' separate moments, subtract, multiply
    and add passes (and their separate backward passes): at inference
    `torch.nn.functional.batch_norm` on the moving statistics; in training
    `torch.native_batch_norm` on the batch statistics, whose gradient is the
    same as Keras' (through the batch mean and variance too), and whose batch
    mean and biased variance (from its saved inverse standard deviation)
    update the moving statistics exactly as Keras does
    (`moving * momentum + batch * (1 - momentum)`, biased variance, where
    PyTorch's own running variance would be unbiased). Masks, renorm,
    synchronized statistics, other layouts and dtypes, and other backends use
    Keras' own op.

    Example:

    ```python
    layer = BatchNormalization()
    y = layer(np.ones((1, 4, 4, 8), "float32"), training=False)  # (1, 4, 4, 8)
    ```
    """

    def call(self, inputs: Any, training: bool | None = None, mask: Any = None) -> Any:
        if (keras.backend.backend() != "torch" or not TORCH_FAST_PATHS or mask is not None or len(inputs.shape) != 4
                or self.axis not in (-1, 3) or str(inputs.dtype) != "torch.float32"
                or self.moving_mean.dtype != "float32"):
            return super().call(inputs, training=training, mask=mask)
        if training and self.trainable:
            if self.renorm or self.synchronized:
                return super().call(inputs, training=training, mask=mask)
            return self._torch_train(inputs)
        import torch.nn.functional as functional

        outputs = functional.batch_norm(
            inputs.permute(0, 3, 1, 2), _variable_value(self.moving_mean), _variable_value(self.moving_variance),
            _variable_value(self.gamma) if self.scale else None, _variable_value(self.beta) if self.center else None,
            False, 0.0, self.epsilon)
        return outputs.permute(0, 2, 3, 1)

    def _torch_train(self, inputs: Any) -> Any:
        import torch

        outputs, mean, inverse_std = torch.native_batch_norm(
            inputs.permute(0, 3, 1, 2), _variable_value(self.gamma) if self.scale else None,
            _variable_value(self.beta) if self.center else None, None, None, True, 0.0, self.epsilon)
        with torch.no_grad():
            variance = (inverse_std.double().reciprocal().square() - self.epsilon).clamp_min(0.0).float()
            self.moving_mean.assign(self.moving_mean.value * self.momentum + mean.detach() * (1.0 - self.momentum))
            self.moving_variance.assign(self.moving_variance.value * self.momentum + variance * (1.0 - self.momentum))
        return outputs.permute(0, 2, 3, 1)


@keras.saving.register_keras_serializable(package="mobilenetv3")
class DepthwiseConv2D(HostInitializedWeights, keras.layers.DepthwiseConv2D):
    """`keras.layers.DepthwiseConv2D`, same weights and config, whose JAX
    forward pass is `shifted_depthwise_conv` (MobileNetV3's depthwise layers
    dominate its time under XLA on CPU) and whose PyTorch forward pass skips
    Keras' layout copies (see `torch_conv`). TensorFlow uses Keras' op.

    Example:

    ```python
    layer = DepthwiseConv2D(3, strides=2, padding="same")
    y = layer(np.ones((1, 9, 9, 4), "float32"))  # (1, 5, 5, 4)
    ```
    """

    def call(self, inputs: Any) -> Any:
        if keras.backend.backend() == "torch":
            outputs = torch_conv(self, inputs, depthwise=True)
            return super().call(inputs) if outputs is None else outputs
        if (keras.backend.backend() != "jax" or self.data_format != "channels_last" or self.depth_multiplier != 1
                or None in tuple(inputs.shape[1:3])):
            return super().call(inputs)
        outputs = shifted_depthwise_conv(inputs, self.kernel, self.strides, self.padding, self.dilation_rate)
        if self.use_bias:
            outputs = outputs + self.bias
        return self.activation(outputs) if self.activation is not None else outputs


def conv_padding(kernel_size: int, stride: int, dilation: int, padding: str) -> tuple[int, str]:
    """Explicit symmetric padding and the conv's own padding mode.

    TF "SAME" is the conv's native `padding="same"`, which every Keras backend
    implements as TF does (pad `total // 2` before, the rest after) for any
    input size, known or not. Symmetric padding (PyTorch's convention) pads
    `(k - 1) // 2 * dilation` on every side before a "valid" conv.
    """
    if padding == SAME or stride == 1:
        return 0, "same"
    return (kernel_size - 1) // 2 * dilation, "valid"


@keras.saving.register_keras_serializable(package="mobilenetv3")
class StochasticDepth(keras.layers.Layer):
    """Drops a residual branch per example during training (drop path).

    In training, each example's branch is zeroed with probability `rate` and
    otherwise scaled by `1 / (1 - rate)`, so its expectation is unchanged; at
    inference the layer is the identity. Put it on the residual branch just
    before the shortcut is added back.

    Args:
        rate: probability of dropping the branch, in [0, 1).
        seed: optional seed of the layer's random draws.

    Example:

    ```python
    layer = StochasticDepth(0.5, seed=1)
    x = np.ones((4, 2, 2, 3), "float32")
    layer(x, training=True)[:, 0, 0, 0]  # e.g. [2., 0., 2., 0.]
    ```
    """

    def __init__(self, rate: float, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate < 1:
            raise ValueError(f"`rate` must be a number in [0, 1); got {rate!r}.")
        self.rate = float(rate)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        if not training or self.rate == 0:
            return inputs
        keep = 1.0 - self.rate
        shape = (ops.shape(inputs)[0],) + (1,) * (len(inputs.shape) - 1)
        draw = keras.random.uniform(shape, seed=self.seed_generator)
        mask = ops.cast(draw < keep, inputs.dtype)
        return inputs * mask / ops.cast(keep, inputs.dtype)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return input_shape

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(rate=self.rate, seed=self.seed)
        return config
