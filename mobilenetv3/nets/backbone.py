"""`MobileNetV3Backbone`: the keras-cv backbone, built exactly, plus variants."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Iterable, Sequence
from typing import Any

import keras
import numpy as np

from mobilenetv3 import presets
from mobilenetv3.core import architectures, validation
from mobilenetv3.core import keras_internals as internals
from mobilenetv3.core.architectures import BlockSpec, make_divisible
from mobilenetv3.core.normalization import PREPROCESSING_MODES, scale_and_offset
from mobilenetv3.core.utils import classproperty
from mobilenetv3.core.validation import check_choice
from mobilenetv3.nets.layers import (
    PADDINGS,
    BatchNormalization,
    Conv2D,
    DepthwiseConv2D,
    SqueezeAndExcite2D,
    StochasticDepth,
    check_activation,
    conv_padding,
)
from mobilenetv3.presets import folders, loader
from mobilenetv3.runtime.accelerate import accelerate

STEM_FILTERS = 16
LAST_CONV_EXPANSION = 6
BN_MOMENTUM = 0.999
MIN_INPUT_SIZE = 32
OUTPUT_STRIDES = (8, 16, 32)
DILATION_STYLES = ("torchvision", "deeplab")

@dataclasses.dataclass(frozen=True)
class _Placement:
    """Where a block runs: its effective stride and dilation, its layer prefix."""

    spec: BlockSpec
    stride: int
    dilation: int
    prefix: str


def _place_blocks(
    blocks: Sequence[BlockSpec], output_stride: int, dilation_style: str
) -> list[_Placement]:
    """Turn striding into dilation once the output stride is reached."""
    placements, current_stride, rate = [], 2, 1
    for index, spec in enumerate(blocks):
        stride, dilation = spec.stride, rate
        if spec.stride > 1 and current_stride * spec.stride > output_stride:
            rate *= spec.stride
            stride = 1
            dilation = rate if dilation_style == "torchvision" else dilation
        else:
            current_stride *= spec.stride
        prefix = architectures.block_prefix(index)
        placements.append(_Placement(spec, stride, dilation, prefix))
    return placements


def _reduce_tail(blocks: Sequence[BlockSpec]) -> tuple[BlockSpec, ...]:
    """Halve the output channels of the last stage (torchvision `reduced_tail`)."""
    last_stage = max(i for i, b in enumerate(blocks) if b.stride > 1)
    return tuple(
        dataclasses.replace(b, filters=b.filters // 2) if i >= last_stage else b
        for i, b in enumerate(blocks)
    )


class _GraphBuilder:
    """Emits the layers of one backbone, in keras-cv's order and names."""

    def __init__(
        self, *, padding: str, bn_epsilon: float, dtype: Any, se_divisor: int = 8, se_activation: str = "relu"
    ) -> None:
        self.padding = padding
        self.bn_epsilon = bn_epsilon
        self.dtype = dtype
        self.se_divisor = se_divisor
        self.se_activation = se_activation

    def conv_bn_act(
        self,
        x: Any,
        filters: int,
        name: str,
        activation: str | None,
        kernel_size: int = 1,
        stride: int = 1,
        dilation: int = 1,
        depthwise: bool = False,
    ) -> Any:
        pad, mode = conv_padding(kernel_size, stride, dilation, self.padding)
        if pad:
            x = keras.layers.ZeroPadding2D(pad, name=f"{name}_pad", dtype=self.dtype)(x)
        common = dict(
            kernel_size=kernel_size,
            strides=stride,
            dilation_rate=dilation,
            padding=mode,
            use_bias=False,
            name=name,
            dtype=self.dtype,
        )
        if depthwise:
            x = DepthwiseConv2D(**common)(x)
        else:
            x = Conv2D(filters, **common)(x)
        x = BatchNormalization(
            epsilon=self.bn_epsilon, momentum=BN_MOMENTUM, name=f"{name}_BatchNorm", dtype=self.dtype
        )(x)
        if activation is not None:
            x = keras.layers.Activation(activation, name=f"{name}_activation", dtype=self.dtype)(x)
        return x

    def block(
        self, x: Any, place: _Placement, filters: int, drop_path_rate: float = 0.0, residual: bool = True
    ) -> Any:
        spec, prefix = place.spec, place.prefix
        in_channels = x.shape[-1]
        expanded = make_divisible(in_channels * spec.expansion)
        shortcut = x
        if expanded != in_channels:
            x = self.conv_bn_act(x, expanded, prefix + "expand", spec.activation)
        x = self.conv_bn_act(
            x,
            expanded,
            prefix + "depthwise",
            spec.activation,
            kernel_size=spec.kernel_size,
            stride=place.stride,
            dilation=place.dilation,
            depthwise=True,
        )
        if spec.se_ratio:
            x = SqueezeAndExcite2D(
                filters=expanded,
                bottleneck_filters=make_divisible(expanded * spec.se_ratio, self.se_divisor),
                squeeze_activation=spec.activation if self.se_activation == "block" else self.se_activation,
                name=prefix + "squeeze_excite",
                dtype=self.dtype,
            )(x)
        x = self.conv_bn_act(x, filters, prefix + "project", activation=None)
        if residual and place.stride == 1 and in_channels == filters:
            if drop_path_rate > 0:
                x = StochasticDepth(drop_path_rate, name=prefix + "drop_path", dtype=self.dtype)(x)
            x = keras.layers.Add(name=prefix + "Add", dtype=self.dtype)([shortcut, x])
        return x


@keras.saving.register_keras_serializable(package="mobilenetv3")
class MobileNetV3Backbone(keras.Model):
    """MobileNetV3 backbone, a drop-in for `keras_cv.models.MobileNetV3Backbone`.

    A functional `keras.Model` mapping images `(batch, height, width, 3)` to
    the last 1x1 convolution's features `(batch, height/32, width/32, 576 or
    960)`: channels-last only (building it under
    `keras.config.image_data_format() == "channels_first"` is refused). The architecture is a table of inverted-residual blocks given as
    the keras-cv `stackwise_*` lists; `MobileNetV3SmallBackbone`,
    `MobileNetV3LargeBackbone` and `from_preset` fill them in for you.

    For transfer learning see docs/training.md ("Fine-tuning"): set
    `backbone.trainable = False` to freeze it (BatchNorm then runs in
    inference mode).

    References:
        - [Searching for MobileNetV3](https://arxiv.org/abs/1905.02244)

    Args:
        stackwise_expansion: per block, the expanded width as a ratio of the
            block's input channels. An expand conv exists exactly when the
            expanded width differs from the input width.
        stackwise_filters: per block, the output channels (before `alpha`).
        stackwise_kernel_size: per block, the depthwise kernel size.
        stackwise_stride: per block, the depthwise stride.
        stackwise_se_ratio: per block, the squeeze-and-excite bottleneck ratio,
            or None for no squeeze-and-excite.
        stackwise_activation: per block, "relu", "hard_swish" or any Keras
            activation name.
        include_rescaling: whether to map raw 0..255 pixels to the range the
            weights expect (see `preprocessing`) inside the model.
        input_shape: the image shape `(height, width, channels)`; height and
            width may be None.
        input_tensor: optional Keras tensor (e.g. `keras.layers.Input()`) or
            plain tensor to use as the image input.
        alpha: width multiplier for the blocks (the stem keeps `stem_filters`).
        preprocessing: what `include_rescaling` does: "unit" (x / 255, as
            keras-cv), "symmetric" (x / 127.5 - 1, as TF-slim and
            keras.applications) or "imagenet" (torchvision/timm mean and std).
        padding: stride-2 padding convention, "same" (TensorFlow "SAME", as
            keras-cv and TF-slim) or "symmetric" (as PyTorch).
        bn_epsilon: BatchNorm epsilon (1e-3 for TF and torchvision weights,
            1e-5 for timm's `mobilenetv3_*`).
        stem_activation: activation of the stem conv.
        last_activation: activation of the last 1x1 conv.
        output_stride: 32 (default), 16 or 8; below 32 the last stride-2
            stages use dilation instead of striding.
        dilation_style: "torchvision" (the stage's first block is dilated
            too, as torchvision's `dilated=True`) or "deeplab" (it keeps the
            previous rate, as TF-slim's DeepLab).
        reduced_tail: halve the channels of the last stage (torchvision
            `reduced_tail=True`, TF-slim detection variants).
        drop_path_rate: stochastic depth (off by default): during training,
            the residual branch of block i (of n) is dropped per example
            with probability `drop_path_rate * i / n`, increasing linearly
            with depth as in timm. Blocks without a shortcut are unaffected.
        stem_filters: width of the stem conv (16; timm scales it with the
            width, e.g. 24 for `mobilenetv3_large_150d`).
        depth_multiplier: timm's depth multiplier: each stage (and the last
            1x1 conv) repeated ceil(depth * multiplier) times, e.g. 1.2 for
            `mobilenetv3_large_150d` (21 blocks); see
            `architectures.scale_depth`.
        se_divisor: squeeze-and-excite bottleneck widths are rounded to a
            multiple of this (8; timm's `mobilenetv3_rw`: 1).
        se_activation: activation after the squeeze conv ("relu"), or
            "block" for the block's own activation (`mobilenetv3_rw`).
        first_block_residual: whether the first block (when its input and
            output match) adds its input (`mobilenetv3_rw`: False).
        dtype: dtype or `keras.DTypePolicy` for every layer.
        **kwargs: passed to `keras.Model` (e.g. `name`, `trainable`).

    Example:

    ```python
    import numpy as np
    import mobilenetv3

    model = mobilenetv3.MobileNetV3Backbone(
        stackwise_expansion=[1, 72.0 / 16, 88.0 / 24, 4, 6, 6, 3, 3, 6, 6, 6],
        stackwise_filters=[16, 24, 24, 40, 40, 40, 48, 48, 96, 96, 96],
        stackwise_kernel_size=[3, 3, 3, 5, 5, 5, 5, 5, 5, 5, 5],
        stackwise_stride=[2, 2, 1, 2, 1, 1, 1, 1, 2, 1, 1],
        stackwise_se_ratio=[0.25, None, None] + [0.25] * 8,
        stackwise_activation=["relu"] * 3 + ["hard_swish"] * 8,
        include_rescaling=False,
    )
    model(np.ones((8, 224, 224, 3))).shape  # (8, 7, 7, 576)
    ```
    """

    kind = loader.BACKBONE  # its row in `loader.MODEL_CLASSES`

    def __init__(
        self,
        *,
        stackwise_expansion: Sequence[float],
        stackwise_filters: Sequence[int],
        stackwise_kernel_size: Sequence[int],
        stackwise_stride: Sequence[int],
        stackwise_se_ratio: Sequence[float | None],
        stackwise_activation: Sequence[str],
        include_rescaling: bool,
        input_shape: Sequence[int | None] = (None, None, 3),
        input_tensor: Any = None,
        alpha: float = 1.0,
        preprocessing: str = "unit",
        padding: str = "same",
        bn_epsilon: float = 1e-3,
        stem_activation: str = "hard_swish",
        last_activation: str = "hard_swish",
        output_stride: int = 32,
        dilation_style: str = "torchvision",
        reduced_tail: bool = False,
        drop_path_rate: float = 0.0,
        stem_filters: int = STEM_FILTERS,
        depth_multiplier: float = 1.0,
        se_divisor: int = 8,
        se_activation: str = "relu",
        first_block_residual: bool = True,
        dtype: Any = None,
        **kwargs: Any,
    ) -> None:
        validation.check_keywords(type(self).__name__, kwargs, _ARGUMENTS)
        check_channels_last(type(self).__name__)
        columns = (
            stackwise_expansion, stackwise_filters, stackwise_kernel_size, stackwise_stride, stackwise_se_ratio,
            stackwise_activation,
        )
        blocks = architectures.from_stackwise(**dict(zip(architectures.STACKWISE_FIELDS, columns)))
        stackwise = architectures.to_stackwise(blocks)
        for index, block in enumerate(blocks):
            check_activation(block.activation, f"stackwise_activation[{index}]")
        check_activation(stem_activation, "stem_activation")
        check_activation(last_activation, "last_activation")
        if se_activation != "block":
            check_activation(se_activation, "se_activation")
        include_rescaling = validation.check_bool("include_rescaling", include_rescaling)
        reduced_tail = validation.check_bool("reduced_tail", reduced_tail)
        first_block_residual = validation.check_bool("first_block_residual", first_block_residual)
        preprocessing = check_choice("preprocessing", preprocessing, PREPROCESSING_MODES)
        padding = check_choice("padding", padding, PADDINGS)
        output_stride = check_choice("output_stride", output_stride, OUTPUT_STRIDES)
        dilation_style = check_choice("dilation_style", dilation_style, DILATION_STYLES)
        alpha = validation.check_positive_number("alpha", alpha, validation.MAX_ALPHA)
        bn_epsilon = validation.check_positive_number("bn_epsilon", bn_epsilon, validation.MAX_BN_EPSILON)
        drop_path_rate = validation.check_number("drop_path_rate", drop_path_rate, 0, 1, open_maximum=True)
        stem_filters = validation.check_int("stem_filters", stem_filters, 1, validation.MAX_WIDTH)
        depth_multiplier = validation.check_positive_number(
            "depth_multiplier", depth_multiplier, validation.MAX_DEPTH_MULTIPLIER
        )
        se_divisor = validation.check_int("se_divisor", se_divisor, 1, validation.MAX_WIDTH)
        if reduced_tail and not any(b.stride > 1 for b in blocks):
            raise ValueError("`reduced_tail` needs a strided block (a `stackwise_stride` of 2) to halve the tail after.")
        architectures.check_widths(
            _reduce_tail(blocks) if reduced_tail else blocks, alpha, stem_filters, LAST_CONV_EXPANSION
        )

        inputs = _model_inputs(input_shape, input_tensor)
        blocks = architectures.scale_depth(blocks, depth_multiplier)
        if reduced_tail:
            blocks = _reduce_tail(blocks)
        builder = _GraphBuilder(
            padding=padding, bn_epsilon=bn_epsilon, dtype=dtype, se_divisor=se_divisor, se_activation=se_activation
        )
        x = inputs
        if include_rescaling:
            scale, offset = scale_and_offset(preprocessing)
            x = keras.layers.Rescaling(scale, offset, name="rescaling", dtype=dtype)(x)
        x = builder.conv_bn_act(x, stem_filters, "Conv", stem_activation, kernel_size=3, stride=2)
        levels: list[str] = []
        expansion_taps: dict[int, str] = {}
        block_outputs: dict[int, str] = {}
        for index, place in enumerate(_place_blocks(blocks, output_stride, dilation_style)):
            if place.spec.stride != 1:
                levels.append(_producer(x))
            block_drop_rate = drop_path_rate * index / len(blocks)
            residual = first_block_residual or index > 0
            x = builder.block(x, place, make_divisible(place.spec.filters * alpha), block_drop_rate, residual)
            expand = place.prefix + "expand_activation"
            expansion_taps[index] = expand
            block_outputs[index] = _producer(x)
        levels.append(_producer(x))
        last_filters = make_divisible(x.shape[-1] * LAST_CONV_EXPANSION)
        x = builder.conv_bn_act(x, last_filters, "Conv_1", last_activation)
        for repeat in range(1, architectures.repeat_counts([1], depth_multiplier)[0]):
            x = builder.conv_bn_act(x, last_filters, f"Conv_1_repeat_{repeat}", last_activation)
        self._last_conv = _producer(x)
        super().__init__(inputs=inputs, outputs=x, **kwargs)
        if dtype is not None:
            # A functional Model ignores `dtype`: set the policy so that
            # get_config keeps it and compile() scales the loss for float16.
            self.dtype_policy = dtype

        self.pyramid_level_inputs = {f"P{i + 1}": name for i, name in enumerate(levels)}
        for name, column in stackwise.items():
            setattr(self, name, column)
        self.include_rescaling = include_rescaling
        self.alpha = alpha
        self.preprocessing = preprocessing
        self.padding = padding
        self.bn_epsilon = bn_epsilon
        self.stem_activation = stem_activation
        self.last_activation = last_activation
        self.output_stride = output_stride
        self.dilation_style = dilation_style
        self.reduced_tail = reduced_tail
        self.drop_path_rate = drop_path_rate
        self.stem_filters = stem_filters
        self.depth_multiplier = depth_multiplier
        self.se_divisor = se_divisor
        self.se_activation = se_activation
        self.first_block_residual = first_block_residual
        self._expansion_taps = expansion_taps
        self._block_outputs = block_outputs
        strided = [i for i, b in enumerate(blocks) if b.stride > 1]
        self._detection_block = strided[-1] if strided else None
        accelerate(self)

    # -- features ----------------------------------------------------------

    @property
    def feature_layers(self) -> dict[str, str]:
        """Every named feature tap: the pyramid levels `P1`..`P5`, `stem`,
        `last` (the final 1x1 conv), `block_<i>` (block i's output),
        `expand_<i>` (block i's expansion output, after its activation, where
        the block has one) and the SSDLite detection taps `C4` (the expansion
        output of the last strided block, /16) and `C5` (the last 1x1 conv).
        """
        taps = dict(self.pyramid_level_inputs)
        taps["stem"] = "Conv_activation"
        taps["last"] = self._last_conv
        names = {layer.name for layer in self.layers}
        taps.update({architectures.block_tap(i): name for i, name in self._block_outputs.items()})
        taps.update(
            {f"expand_{i}": name for i, name in self._expansion_taps.items() if name in names}
        )
        detection_expand = self._expansion_taps.get(self._detection_block)
        if detection_expand in names:
            taps["C4"] = detection_expand
        taps["C5"] = self._last_conv
        return taps

    @property
    def pyramid_outputs(self) -> dict[str, Any]:
        """The pyramid levels as Keras tensors, `{"P1": tensor, ...}`."""
        return {
            level: self.get_layer(name).output for level, name in self.pyramid_level_inputs.items()
        }

    def feature_extractor(self, levels: Iterable[str] | None = None, name: str | None = None) -> keras.Model:
        """A model with the same weights whose output is a dict of features.

        Args:
            levels: names from `feature_layers` (default: `P1`..`P5`).
            name: the new model's name.

        Example:

        ```python
        backbone = mobilenetv3.MobileNetV3LargeBackbone()
        features = backbone.feature_extractor(["P3", "P4", "P5"])
        features(np.ones((1, 224, 224, 3)))["P5"].shape  # (1, 7, 7, 160)
        ```
        """
        taps = self.feature_layers
        levels = list(self.pyramid_level_inputs if levels is None else levels)
        unknown = [level for level in levels if level not in taps]
        if unknown or not levels:
            raise ValueError(
                f"`levels` must be a non-empty list of feature names of this backbone; "
                f"unknown: {unknown}. Available: {sorted(taps)}."
            )
        outputs = {level: self.get_layer(taps[level]).output for level in levels}
        return keras.Model(self.input, outputs, name=name or f"{self.name}_features")

    # -- serialization and presets ----------------------------------------

    def get_config(self) -> dict:
        return {
            "name": self.name,
            "trainable": self.trainable,
            **{name: getattr(self, name) for name in architectures.STACKWISE_FIELDS},
            "include_rescaling": self.include_rescaling,
            "input_shape": tuple(self.input_shape[1:]),
            "input_tensor": None,
            "alpha": self.alpha,
            "preprocessing": self.preprocessing,
            "padding": self.padding,
            "bn_epsilon": self.bn_epsilon,
            "stem_activation": self.stem_activation,
            "last_activation": self.last_activation,
            "output_stride": self.output_stride,
            "dilation_style": self.dilation_style,
            "reduced_tail": self.reduced_tail,
            "drop_path_rate": self.drop_path_rate,
            "stem_filters": self.stem_filters,
            "depth_multiplier": self.depth_multiplier,
            "se_divisor": self.se_divisor,
            "se_activation": self.se_activation,
            "first_block_residual": self.first_block_residual,
            "dtype": keras.dtype_policies.serialize(self.dtype_policy),
        }

    @classmethod
    def from_config(cls, config: dict) -> MobileNetV3Backbone:
        config = dict(config)
        if isinstance(config.get("dtype"), dict):
            config["dtype"] = keras.dtype_policies.deserialize(config["dtype"])
        return cls(**config)

    @classproperty
    def presets(cls) -> dict[str, dict]:
        """Preset names and their metadata (description, params, weights)."""
        return presets.describe(presets.backbone_presets(family=cls._family))

    @classproperty
    def presets_with_weights(cls) -> dict[str, dict]:
        """The presets that come with pretrained weights."""
        return {k: v for k, v in cls.presets.items() if v["metadata"]["has_weights"]}

    _family: str | None = None

    @classmethod
    def from_preset(
        cls, preset: str, load_weights: bool | None = None, **kwargs: Any
    ) -> MobileNetV3Backbone:
        """Build a backbone from a preset.

        Args:
            preset: a registry name (see `presets`), a local preset folder
                (`config.json` + `model.weights.h5`, keras-cv's layout too),
                a weights file holding a backbone (see
                `mobilenetv3.weights.FORMATS`), or a `kaggle://` / `hf://`
                handle. A source holding a task model is refused: load it
                with that task's `from_preset`.
            load_weights: None loads weights when the preset has them; True
                requires them; False gives random initialization.
            **kwargs: override the stored config (e.g. `input_shape`,
                `include_rescaling`, `name`). `weights_file=PATH` loads a
                weights file you downloaded yourself; it must have the md5
                the registry lists (`verify_weights_file=False` skips the
                check for a file you know differs).

        Example:

        ```python
        backbone = mobilenetv3.MobileNetV3Backbone.from_preset(
            "mobilenet_v3_small", input_shape=(224, 224, 3)
        )
        ```
        """
        validation.check_keywords(f"{cls.__name__}.from_preset", kwargs, (*_ARGUMENTS, *loader.LOAD_KEYWORDS))
        return loader.load_model(preset, cls, load_weights, **kwargs)

    def save_to_preset(self, path: str, **kwargs: Any) -> None:
        """Write a preset folder (`config.json`, `model.weights.h5`,
        `metadata.json`) atomically: on failure nothing is left behind.

        keras-hub's arguments (`max_shard_size`, which a keras-hub task's
        `save_to_preset` passes to its backbone) are refused: keras-hub saves
        and loads `mobilenetv3.keras_hub.MobileNetV3HubBackbone`.

        Args:
            path: the folder to write.
            **kwargs: none are accepted (a clear error for keras-hub's).

        Example:

        ```python
        backbone.save_to_preset("my_preset")
        same = mobilenetv3.MobileNetV3Backbone.from_preset("my_preset")
        ```
        """
        if "max_shard_size" in kwargs:
            name = type(self).__name__
            raise TypeError(
                f"`{name}` is not a keras-hub backbone: keras-hub's `save_to_preset` (its "
                "`max_shard_size`) needs `mobilenetv3.keras_hub.MobileNetV3HubBackbone` (same arguments and "
                f"weights: `hub = MobileNetV3HubBackbone.from_config(backbone.get_config())`, "
                "`hub.set_weights(backbone.get_weights())`) and, for a classifier, `MobileNetV3HubImageClassifier`; "
                f"`{name}.save_to_preset(path)` writes this package's preset folder."
            )
        validation.check_keywords(f"{type(self).__name__}.save_to_preset", kwargs, ())
        folders.save_preset(self, path)


def check_channels_last(owner: str) -> None:
    """A ValueError unless Keras' global image data format is
    "channels_last": the networks take `(batch, height, width, channels)`
    images, and their Keras layers would otherwise read "channels_first".

    Args:
        owner: the class being built, for the message.

    Example:

    ```python
    check_channels_last("MobileNetV3Backbone")  # passes under the default "channels_last"
    ```
    """
    data_format = keras.config.image_data_format()
    if data_format != "channels_last":
        raise ValueError(
            f"`{owner}` takes channels-last images (batch, height, width, channels) only, but "
            f"keras.config.image_data_format() is {data_format!r}: call "
            "keras.config.set_image_data_format('channels_last') before building it "
            "(its ONNX and OpenVINO exports take NCHW input with `channels_first=True`)."
        )


def _producer(tensor: Any) -> str:
    return internals.producer_name(tensor)


def _model_inputs(input_shape: Sequence[int | None], input_tensor: Any) -> Any:
    """The model's Input, from a shape or from a Keras or plain tensor."""
    if input_tensor is not None:
        if keras.backend.is_keras_tensor(input_tensor):
            _check_input_shape(tuple(input_tensor.shape[1:]))
            return input_tensor
        shape = tuple(keras.ops.shape(input_tensor))
        return keras.layers.Input(shape=_check_input_shape(shape[1:]), batch_size=shape[0])
    return keras.layers.Input(shape=_check_input_shape(input_shape))


def _check_input_shape(input_shape: Any) -> tuple[int | None, ...]:
    """`(height, width, channels)` as plain ints (numpy ints accepted)."""
    if isinstance(input_shape, np.ndarray):
        input_shape = input_shape.tolist()
    if not isinstance(input_shape, (list, tuple)) or len(input_shape) != 3:
        raise (ValueError if isinstance(input_shape, (list, tuple)) else TypeError)(
            "`input_shape` must be (height, width, channels) with channels last; "
            f"got {input_shape!r}."
        )
    height, width, channels = input_shape
    if not validation.is_integer(channels) or channels < 1 or channels > validation.MAX_WIDTH:
        raise ValueError(
            "`input_shape` must end with a known, positive channel count (3 for RGB "
            f"images, 1 for grayscale); got channels={channels!r} in {tuple(input_shape)}."
        )
    for axis, size in (("height", height), ("width", width)):
        if size is not None and (
            not validation.is_integer(size) or not MIN_INPUT_SIZE <= size <= validation.MAX_INPUT_SIDE
        ):
            raise ValueError(
                f"`input_shape` {axis} must be None or an integer from {MIN_INPUT_SIZE} (the network halves "
                f"it five times) to {validation.MAX_INPUT_SIDE}; got {size!r} in {tuple(input_shape)}."
            )
    return tuple(None if size is None else int(size) for size in input_shape)


def backbone_arguments() -> tuple[str, ...]:
    """Every keyword `MobileNetV3Backbone` (and so a backbone config, or a
    backbone override of `from_preset`) takes, Keras' `name` and
    `trainable` included."""
    parameters = inspect.signature(MobileNetV3Backbone.__init__).parameters.values()
    own = tuple(p.name for p in parameters if p.kind is p.KEYWORD_ONLY)
    return own + validation.KERAS_MODEL_KWARGS


_ARGUMENTS = backbone_arguments()
