"""`MobileNetV3ImageSegmenter`: the paper's LR-ASPP segmentation head."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from mobilenetv3 import validation
from mobilenetv3.architectures import block_tap
from mobilenetv3.backbone import MobileNetV3Backbone
from mobilenetv3.layers import check_activation
from mobilenetv3.models import register_model
from mobilenetv3.tasks.task import MobileNetV3Task, check_backbone

HEAD_BN_MOMENTUM = 0.99
HIGH_LEVEL_DEFAULT = "last"


@keras.saving.register_keras_serializable(package="mobilenetv3")
class ResizeLike(keras.layers.Layer):
    """Bilinear resize of `inputs[0]` to the height and width of `inputs[1]`.

    Half-pixel centres without antialiasing: the same numbers as PyTorch's
    `F.interpolate(..., mode="bilinear", align_corners=False)`. The target
    size is read at run time, so inputs of any size work.

    Example:

    ```python
    layer = ResizeLike()
    layer([np.ones((1, 7, 9, 4)), np.ones((1, 13, 17, 2))]).shape  # (1, 13, 17, 4)
    ```
    """

    def call(self, inputs: list) -> Any:
        images, reference = inputs
        size = ops.shape(reference)[1:3]
        return ops.image.resize(images, size, interpolation="bilinear", antialias=False)

    def compute_output_shape(self, input_shape: list) -> tuple:
        images, reference = input_shape
        return (images[0], reference[1], reference[2], images[3])


def torchvision_low_level(backbone: MobileNetV3Backbone) -> str:
    """torchvision's low-level LR-ASPP tap: the output of the block that
    first reaches output stride 8 (block 3 of Large, block 1 of Small)."""
    stride = 2
    for index, block_stride in enumerate(backbone.stackwise_stride):
        stride *= block_stride
        if block_stride > 1 and stride >= 8:
            return block_tap(index)
    raise ValueError(
        "The backbone never reaches output stride 8, so LR-ASPP has no low-level "
        "features; pass `low_level` (one of the backbone's `feature_layers`)."
    )


@keras.saving.register_keras_serializable(package="mobilenetv3")
@register_model("segmenter")
class MobileNetV3ImageSegmenter(MobileNetV3Task):
    """Semantic segmentation with the MobileNetV3 paper's LR-ASPP head.

    The head (as torchvision's `lraspp_mobilenet_v3_large`): on the
    high-level features, a 1x1 conv (no bias) + BatchNorm + ReLU gated by
    global average pooling -> 1x1 conv -> sigmoid, bilinearly upsampled to
    the low-level features' size and classified by a 1x1 conv; plus a 1x1
    classifier on the low-level features; the sum is resized bilinearly to
    the input size. Output: per-pixel class scores `(batch, height, width,
    num_classes)`.

    Use a backbone with `output_stride=16` (torchvision's `dilated=True`) for
    the paper's configuration. Any input size the backbone accepts works:
    the upsampling reads the feature sizes at run time (odd sizes included),
    so no divisibility by the output stride is required.

    Args:
        backbone: a `MobileNetV3Backbone`.
        num_classes: number of classes, background included (at least 1).
        low_level: backbone feature (a `feature_layers` name) for the
            low-level branch; default: torchvision's (the output of the
            block reaching output stride 8, 40 channels in Large).
        high_level: backbone feature for the high-level branch (default
            "last", the final 1x1 conv).
        inter_channels: width of the high-level branch (128).
        bn_epsilon: epsilon of the head's BatchNorm (1e-5, PyTorch's
            default, as torchvision's head).
        activation: None for logits, or e.g. "softmax".
        **kwargs: passed to `keras.Model` (e.g. `name`).

    Example:

    ```python
    backbone = mobilenetv3.MobileNetV3LargeBackbone(output_stride=16)
    model = mobilenetv3.MobileNetV3ImageSegmenter(backbone, num_classes=21)
    model(np.ones((1, 224, 224, 3))).shape  # (1, 224, 224, 21)
    ```
    """

    def __init__(
        self,
        backbone: MobileNetV3Backbone,
        num_classes: int,
        low_level: str | None = None,
        high_level: str = HIGH_LEVEL_DEFAULT,
        inter_channels: int = 128,
        bn_epsilon: float = 1e-5,
        activation: str | None = None,
        **kwargs: Any,
    ) -> None:
        check_backbone(backbone, type(self))
        num_classes = validation.check_int("num_classes", num_classes, 1, validation.MAX_CLASSES)
        inter_channels = validation.check_int("inter_channels", inter_channels, 1, validation.MAX_WIDTH)
        bn_epsilon = validation.check_positive_number("bn_epsilon", bn_epsilon, validation.MAX_BN_EPSILON)
        activation = validation.check_optional_name("activation", activation)
        if activation is not None:
            check_activation(activation, "activation")
        validation.check_optional_name("low_level", low_level)
        validation.check_optional_name("high_level", high_level)
        low_level = low_level or torchvision_low_level(backbone)
        _check_level("low_level", low_level, backbone)
        _check_level("high_level", high_level, backbone)
        dtype = backbone.dtype_policy
        inputs = keras.Input(shape=tuple(backbone.input_shape[1:]), name="images")
        features = backbone.feature_extractor([low_level, high_level], name="lraspp_features")(inputs)
        logits = _lraspp_head(
            features[low_level], features[high_level], num_classes, inter_channels, bn_epsilon, dtype
        )
        logits = ResizeLike(name="resize_to_input", dtype=dtype)([logits, inputs])
        # Softmax in float32 even under mixed precision.
        outputs = keras.layers.Activation(activation or "linear", name="predictions", dtype="float32")(logits)
        super().__init__(backbone, inputs, outputs, **kwargs)
        self.num_classes = num_classes
        self.low_level = low_level
        self.high_level = high_level
        self.inter_channels = inter_channels
        self.bn_epsilon = bn_epsilon
        self.activation = activation


def _lraspp_head(
    low: Any, high: Any, num_classes: int, inter_channels: int, bn_epsilon: float, dtype: Any
) -> Any:
    layers = keras.layers
    x = layers.Conv2D(inter_channels, 1, use_bias=False, name="lraspp_cbr", dtype=dtype)(high)
    x = layers.BatchNormalization(
        epsilon=bn_epsilon, momentum=HEAD_BN_MOMENTUM, name="lraspp_cbr_BatchNorm", dtype=dtype
    )(x)
    x = layers.ReLU(name="lraspp_cbr_activation", dtype=dtype)(x)
    gate = layers.GlobalAveragePooling2D(keepdims=True, name="lraspp_pool", dtype=dtype)(high)
    gate = layers.Conv2D(
        inter_channels, 1, use_bias=False, activation="sigmoid", name="lraspp_scale", dtype=dtype
    )(gate)
    x = layers.Multiply(name="lraspp_gate", dtype=dtype)([x, gate])
    x = ResizeLike(name="lraspp_upsample", dtype=dtype)([x, low])
    high_logits = layers.Conv2D(num_classes, 1, name="lraspp_high_classifier", dtype=dtype)(x)
    low_logits = layers.Conv2D(num_classes, 1, name="lraspp_low_classifier", dtype=dtype)(low)
    return layers.Add(name="lraspp_add", dtype=dtype)([low_logits, high_logits])


def _check_level(argument: str, level: Any, backbone: MobileNetV3Backbone) -> None:
    available = backbone.feature_layers
    if level not in available:
        raise ValueError(
            f"`{argument}` must be one of this backbone's feature names {sorted(available)}; "
            f"got {level!r}."
        )
