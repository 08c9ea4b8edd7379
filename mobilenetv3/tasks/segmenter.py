"""`MobileNetV3ImageSegmenter`: the paper's LR-ASPP segmentation head, or
torchvision's DeepLabV3 head (ASPP) with its optional auxiliary classifier."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from mobilenetv3.core import keras_internals as internals
from mobilenetv3.core import validation
from mobilenetv3.core.architectures import block_tap
from mobilenetv3.nets.backbone import MobileNetV3Backbone
from mobilenetv3.nets.layers import check_activation
from mobilenetv3.tasks.task import MobileNetV3Task, check_backbone
from mobilenetv3.weights import Checkpoint

HEAD_BN_MOMENTUM = 0.99
HIGH_LEVEL_DEFAULT = "last"
HEADS = ("lraspp", "deeplabv3")
# Width of the head's convolutions: torchvision's LRASPPHead / DeepLabHead.
INTER_CHANNELS = {"lraspp": 128, "deeplabv3": 256}
# torchvision's DeepLabHead (ASPP rates at output stride 16) and FCNHead.
ATROUS_RATES = (12, 24, 36)
ASPP_DROPOUT = 0.5
AUX_DROPOUT = 0.1


@keras.saving.register_keras_serializable(package="mobilenetv3")
class ResizeLike(keras.layers.Layer):
    """Bilinear resize of `inputs[0]` to the height and width of `inputs[1]`.

    Half-pixel centres without antialiasing: the same numbers as PyTorch's
    `F.interpolate(..., mode="bilinear", align_corners=False)`. The target
    size is read at run time, so inputs of any size work, also in exported
    graphs (SavedModel, TFLite with `resize_tensor_input`).

    Example:

    ```python
    layer = ResizeLike()
    layer([np.ones((1, 7, 9, 4)), np.ones((1, 13, 17, 2))]).shape  # (1, 13, 17, 4)
    ```
    """

    def call(self, inputs: list) -> Any:
        images, reference = inputs
        size = ops.shape(reference)[1:3]
        # Not `ops.image.resize`: its `size > 0` check fails on a size known
        # only at run time in a graph traced without AutoGraph (export).
        return internals.resize_images(images, size, interpolation="bilinear", antialias=False)

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
class MobileNetV3ImageSegmenter(MobileNetV3Task):
    """Semantic segmentation with the MobileNetV3 paper's LR-ASPP head, or
    torchvision's DeepLabV3 head.

    `head="lraspp"` (as torchvision's `lraspp_mobilenet_v3_large`): on the
    high-level features, a 1x1 conv (no bias) + BatchNorm + ReLU gated by
    global average pooling -> 1x1 conv -> sigmoid, bilinearly upsampled to
    the low-level features' size and classified by a 1x1 conv; plus a 1x1
    classifier on the low-level features.

    `head="deeplabv3"` (as torchvision's `deeplabv3_mobilenet_v3_large`):
    ASPP on the high-level features (a 1x1 branch, three 3x3 branches with
    dilations `atrous_rates`, an image-pooling branch; each conv + BatchNorm
    + ReLU), concatenated and projected by a 1x1 conv, then dropout, a 3x3
    conv + BatchNorm + ReLU and a 1x1 classifier. `aux_classifier=True` adds
    torchvision's auxiliary `FCNHead` on the low-level features (3x3 conv to
    `channels // 4`, BatchNorm, ReLU, dropout, 1x1 classifier): its weights
    are part of the model (torchvision's 11,029,328 parameters for 21
    classes), and as torchvision does at inference it does not change the
    output; its logits, e.g. for an auxiliary training loss, are
    `model.aux_model(images)`.

    Either way the logits are resized bilinearly to the input size. Output:
    per-pixel class scores `(batch, height, width, num_classes)`.

    Use a backbone with `output_stride=16` (torchvision's `dilated=True`) for
    the published configurations. Any input size the backbone accepts works:
    the upsampling reads the feature sizes at run time (odd sizes included),
    so no divisibility by the output stride is required.

    Args:
        backbone: a `MobileNetV3Backbone`.
        num_classes: number of classes, background included (at least 1).
        low_level: backbone feature (a `feature_layers` name) for the
            LR-ASPP low-level branch and the auxiliary classifier; default:
            torchvision's (the output of the block reaching output stride 8,
            40 channels in Large).
        high_level: backbone feature for the high-level branch (default
            "last", the final 1x1 conv).
        inter_channels: width of the head (None: 128 for LR-ASPP, 256 for
            DeepLabV3, torchvision's).
        bn_epsilon: epsilon of the head's BatchNorm (1e-5, PyTorch's
            default, as torchvision's heads).
        activation: None for logits, or e.g. "softmax".
        head: "lraspp" or "deeplabv3".
        atrous_rates: the three ASPP dilation rates (DeepLabV3 only).
        aux_classifier: add torchvision's auxiliary FCN classifier (see above).
        **kwargs: passed to `keras.Model` (e.g. `name`).

    Example:

    ```python
    backbone = mobilenetv3.MobileNetV3LargeBackbone(output_stride=16)
    model = mobilenetv3.MobileNetV3ImageSegmenter(backbone, num_classes=21)
    model(np.ones((1, 224, 224, 3))).shape  # (1, 224, 224, 21)
    deeplab = mobilenetv3.MobileNetV3ImageSegmenter(backbone, num_classes=21, head="deeplabv3")
    ```
    """

    kind = "segmenter"  # its row in `models.MODEL_CLASSES`

    def __init__(
        self,
        backbone: MobileNetV3Backbone,
        num_classes: int,
        low_level: str | None = None,
        high_level: str = HIGH_LEVEL_DEFAULT,
        inter_channels: int | None = None,
        bn_epsilon: float = 1e-5,
        activation: str | None = None,
        head: str = "lraspp",
        atrous_rates: tuple[int, ...] | list[int] = ATROUS_RATES,
        aux_classifier: bool = False,
        **kwargs: Any,
    ) -> None:
        check_backbone(backbone, type(self))
        num_classes = validation.check_int("num_classes", num_classes, 1, validation.MAX_CLASSES)
        head = validation.check_choice("head", head, HEADS)
        inter_channels = INTER_CHANNELS[head] if inter_channels is None else inter_channels
        inter_channels = validation.check_int("inter_channels", inter_channels, 1, validation.MAX_WIDTH)
        bn_epsilon = validation.check_positive_number("bn_epsilon", bn_epsilon, validation.MAX_BN_EPSILON)
        atrous_rates = _check_rates(atrous_rates)
        aux_classifier = validation.check_bool("aux_classifier", aux_classifier)
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
        low, high = features[low_level], features[high_level]
        norm = _conv_bn_relu_factory(bn_epsilon, dtype)
        if head == "lraspp":
            logits = _lraspp_head(low, high, num_classes, inter_channels, bn_epsilon, dtype)
        else:
            logits = _deeplabv3_head(high, num_classes, inter_channels, atrous_rates, norm, dtype)
        logits = ResizeLike(name="resize_to_input", dtype=dtype)([logits, inputs])
        # Softmax in float32 even under mixed precision.
        outputs = keras.layers.Activation(activation or "linear", name="predictions", dtype="float32")(logits)
        aux_logits = _aux_head(low, inputs, num_classes, norm, dtype) if aux_classifier else None
        super().__init__(backbone, inputs, outputs, **kwargs)
        if aux_logits is not None:
            self.aux_model = keras.Model(inputs, aux_logits, name="aux_classifier")
        self.num_classes = num_classes
        self.low_level = low_level
        self.high_level = high_level
        self.inter_channels = inter_channels
        self.bn_epsilon = bn_epsilon
        self.activation = activation
        self.head = head
        self.atrous_rates = atrous_rates
        self.aux_classifier = aux_classifier

    @classmethod
    def head_args_from_checkpoint(cls, checkpoint: Checkpoint) -> dict[str, Any]:
        """The head a torchvision file holds ("lraspp" or "deeplabv3") and
        whether it has the auxiliary classifier."""
        return {"head": checkpoint.head or "lraspp", "aux_classifier": "aux_conv/kernel" in checkpoint.tensors}


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


def _check_rates(rates: Any) -> tuple[int, ...]:
    if not isinstance(rates, (list, tuple)) or len(rates) != len(ATROUS_RATES):
        raise ValueError(f"`atrous_rates` must be three integers >= 1, e.g. {ATROUS_RATES}; got {rates!r}.")
    return tuple(validation.check_int("atrous_rates", rate, 1, validation.MAX_WIDTH) for rate in rates)


def _conv_bn_relu_factory(bn_epsilon: float, dtype: Any) -> Any:
    """`conv_bn_relu(x, filters, kernel, name, dilation=1)`: a conv (no bias,
    "same" padding: torchvision's symmetric padding at stride 1) +
    BatchNorm + ReLU, as torchvision's `Conv2d, BatchNorm2d, ReLU` stacks."""
    layers = keras.layers

    def conv_bn_relu(x: Any, filters: int, kernel: int, name: str, dilation: int = 1) -> Any:
        x = layers.Conv2D(
            filters, kernel, padding="same", dilation_rate=dilation, use_bias=False, name=name, dtype=dtype
        )(x)
        x = layers.BatchNormalization(
            epsilon=bn_epsilon, momentum=HEAD_BN_MOMENTUM, name=f"{name}_BatchNorm", dtype=dtype
        )(x)
        return layers.ReLU(name=f"{name}_activation", dtype=dtype)(x)

    return conv_bn_relu


def _deeplabv3_head(
    high: Any, num_classes: int, channels: int, rates: tuple[int, ...], conv_bn_relu: Any, dtype: Any
) -> Any:
    """torchvision's `DeepLabHead`: ASPP, 3x3 conv + BN + ReLU, 1x1 classifier."""
    layers = keras.layers
    branches = [conv_bn_relu(high, channels, 1, "aspp_0")]
    for index, rate in enumerate(rates, start=1):
        branches.append(conv_bn_relu(high, channels, 3, f"aspp_{index}", dilation=rate))
    pooled = layers.GlobalAveragePooling2D(keepdims=True, name="aspp_pool", dtype=dtype)(high)
    pooled = conv_bn_relu(pooled, channels, 1, "aspp_pooling")
    branches.append(ResizeLike(name="aspp_pooling_upsample", dtype=dtype)([pooled, high]))
    x = layers.Concatenate(name="aspp_concat", dtype=dtype)(branches)
    x = conv_bn_relu(x, channels, 1, "aspp_project")
    x = layers.Dropout(ASPP_DROPOUT, name="aspp_dropout", dtype=dtype)(x)
    x = conv_bn_relu(x, channels, 3, "deeplab_conv")
    return layers.Conv2D(num_classes, 1, name="deeplab_classifier", dtype=dtype)(x)


def _aux_head(low: Any, inputs: Any, num_classes: int, conv_bn_relu: Any, dtype: Any) -> Any:
    """torchvision's `FCNHead` on the low-level features, resized to the input."""
    layers = keras.layers
    x = conv_bn_relu(low, low.shape[-1] // 4, 3, "aux_conv")
    x = layers.Dropout(AUX_DROPOUT, name="aux_dropout", dtype=dtype)(x)
    x = layers.Conv2D(num_classes, 1, name="aux_classifier", dtype=dtype)(x)
    return ResizeLike(name="aux_resize_to_input", dtype=dtype)([x, inputs])
