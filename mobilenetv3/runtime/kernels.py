"""Backend fast paths of the package's convolution and BatchNormalization
layers: the runtime half of `mobilenetv3.nets.layers`, whose `call` asks
here first (`conv2d`, `depthwise_conv2d`, `batch_norm` return None where no
fast path applies, and the layer runs Keras' own op).

- PyTorch: convolutions on a channels-last view without Keras' two layout
  copies per call (`torch_conv`), 1x1 convs of 1x1 maps as one matrix
  product, and BatchNormalization as one fused PyTorch batch norm (training
  too, with Keras' moving-statistics update).
- JAX: depthwise convolutions as a sum of shifted slices, which XLA on CPU
  fuses (`shifted_depthwise_conv`).

Every path computes what Keras' op computes (tests/test_torch_fast_paths.py).
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from mobilenetv3.core.architectures import same_padding


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


# The PyTorch fast paths of the package's Conv2D, DepthwiseConv2D and BatchNormalization (set
# False to run Keras' own ops, e.g. for an A/B comparison).
TORCH_FAST_PATHS = True


def torch_fast_path(layer: Any) -> bool:
    """Whether a conv layer can run as one `torch.nn.functional.conv2d` on a channels-last view."""
    return TORCH_FAST_PATHS and layer.data_format == "channels_last" and getattr(layer, "depth_multiplier", 1) == 1


def variable_value(variable: Any) -> Any:
    return variable.value if hasattr(variable, "value") else variable


def torch_conv_padding(layer: Any, inputs: Any) -> tuple[tuple[int, int], tuple[int, int, int, int]] | None:
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

    kernel = variable_value(layer.kernel)
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
    if not torch_fast_path(layer) or (not depthwise and layer.groups != 1):
        return None
    padding = torch_conv_padding(layer, inputs)
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
        bias = variable_value(layer.bias).to(x.dtype) if layer.use_bias else None
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
    kernel = variable_value(layer.kernel)
    matrix = kernel.reshape(kernel.shape[2], kernel.shape[3]).to(inputs.dtype)
    bias = variable_value(layer.bias).to(inputs.dtype) if layer.use_bias else None
    return pointwise_product(inputs, matrix, bias)


def conv2d(layer: Any, inputs: Any) -> Any:
    """The package's Conv2D forward pass on a fast path, or None."""
    return torch_conv(layer, inputs) if keras.backend.backend() == "torch" else None


def depthwise_conv2d(layer: Any, inputs: Any) -> Any:
    """The package's DepthwiseConv2D forward pass on a fast path, or None."""
    backend = keras.backend.backend()
    if backend == "torch":
        return torch_conv(layer, inputs, depthwise=True)
    if (backend != "jax" or layer.data_format != "channels_last" or layer.depth_multiplier != 1
            or None in tuple(inputs.shape[1:3])):
        return None
    outputs = shifted_depthwise_conv(inputs, layer.kernel, layer.strides, layer.padding, layer.dilation_rate)
    if layer.use_bias:
        outputs = outputs + layer.bias
    return layer.activation(outputs) if layer.activation is not None else outputs


def batch_norm(layer: Any, inputs: Any, training: bool | None, mask: Any) -> Any:
    """The package's BatchNormalization on PyTorch as one fused batch norm on a
    channels-last view (inference: the moving statistics; training: the batch
    statistics through `torch.native_batch_norm`, whose gradient is Keras',
    with Keras' moving-average update of the biased variance), or None."""
    if (keras.backend.backend() != "torch" or not TORCH_FAST_PATHS or mask is not None or len(inputs.shape) != 4
            or layer.axis not in (-1, 3) or str(inputs.dtype) != "torch.float32"
            or layer.moving_mean.dtype != "float32"):
        return None
    if training and layer.trainable:
        return None if layer.renorm or layer.synchronized else _torch_batch_norm_train(layer, inputs)
    import torch.nn.functional as functional

    outputs = functional.batch_norm(
        inputs.permute(0, 3, 1, 2), variable_value(layer.moving_mean), variable_value(layer.moving_variance),
        variable_value(layer.gamma) if layer.scale else None, variable_value(layer.beta) if layer.center else None,
        False, 0.0, layer.epsilon)
    return outputs.permute(0, 2, 3, 1)


def _torch_batch_norm_train(layer: Any, inputs: Any) -> Any:
    import torch

    outputs, mean, inverse_std = torch.native_batch_norm(
        inputs.permute(0, 3, 1, 2), variable_value(layer.gamma) if layer.scale else None,
        variable_value(layer.beta) if layer.center else None, None, None, True, 0.0, layer.epsilon)
    with torch.no_grad():
        variance = (inverse_std.double().reciprocal().square() - layer.epsilon).clamp_min(0.0).float()
        layer.moving_mean.assign(layer.moving_mean.value * layer.momentum + mean.detach() * (1.0 - layer.momentum))
        layer.moving_variance.assign(layer.moving_variance.value * layer.momentum + variance * (1.0 - layer.momentum))
    return outputs.permute(0, 2, 3, 1)
