"""Building blocks of MobileNetV3 that Keras does not ship, and Keras'
convolution and BatchNormalization with the same weights and configs whose
forward pass takes `mobilenetv3.runtime.kernels`' backend fast path where
one applies (Keras' own op otherwise)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
from keras import ops

from mobilenetv3.runtime import kernels
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
        return inputs * self.gate(inputs)

    def gate(self, inputs: Any, run: Callable[[keras.layers.Layer, Any], Any] | None = None) -> Any:
        """The per-channel gate of `inputs`; `run(layer, x)` calls the two
        convolutions (default `layer(x)`; a graph runner may call `layer.call`)."""
        run = run or (lambda layer, x: layer(x))
        pooled = ops.mean(inputs, axis=(1, 2), keepdims=True)
        return run(self.excite_conv, run(self.squeeze_conv, pooled))

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
        outputs = kernels.conv2d(self, inputs)
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
        outputs = kernels.batch_norm(self, inputs, training, mask)
        return super().call(inputs, training=training, mask=mask) if outputs is None else outputs


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
        outputs = kernels.depthwise_conv2d(self, inputs)
        return super().call(inputs) if outputs is None else outputs


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
