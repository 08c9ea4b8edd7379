"""`MobileNetV3ImageClassifier`: the paper's head, or keras-cv's dense head."""

from __future__ import annotations

from typing import Any

import keras

from mobilenetv3.core import validation
from mobilenetv3.core.architectures import make_divisible
from mobilenetv3.nets.backbone import MobileNetV3Backbone
from mobilenetv3.nets.layers import Conv2D, check_activation
from mobilenetv3.tasks.task import MobileNetV3Task, check_backbone
from mobilenetv3.weights import Checkpoint

HEADS = ("paper", "dense")
POOLINGS = ("avg", "max")


def default_head_filters(backbone: MobileNetV3Backbone) -> int:
    """keras.applications' head width: 1280 for Large, 1024 for Small,
    halved with a reduced tail, scaled up (never down) with `alpha`."""
    base = 1280 if backbone.stackwise_filters[-1] >= 160 else 1024
    if backbone.reduced_tail:
        base //= 2
    return make_divisible(base * backbone.alpha) if backbone.alpha > 1 else base


@keras.saving.register_keras_serializable(package="mobilenetv3")
class MobileNetV3ImageClassifier(MobileNetV3Task):
    """Image classifier: a MobileNetV3 backbone and a classification head.

    The "paper" head is the MobileNetV3 paper's (and every released
    checkpoint's): global average pool, 1x1 conv to `head_filters` with bias
    and hard-swish, dropout, 1x1 conv to `num_classes`. The "dense" head is
    keras-cv's `ImageClassifier` (pool, then one Dense layer), so keras-cv
    classifier presets and weight files load.

    Args:
        backbone: a `MobileNetV3Backbone`.
        num_classes: number of classes (at least 1).
        head: "paper" (default) or "dense".
        head_filters: width of the paper head's 1x1 conv (default 1280 for
            Large, 1024 for Small).
        head_activation: activation after that conv ("hard_swish"; the
            minimalistic releases use "relu").
        dropout: dropout rate before the logits (paper head).
        activation: None for logits, or e.g. "softmax".
        pooling: "avg" or "max" global pooling.
        **kwargs: passed to `keras.Model` (e.g. `name`).

    Example:

    ```python
    backbone = mobilenetv3.MobileNetV3SmallBackbone()
    model = mobilenetv3.MobileNetV3ImageClassifier(backbone, num_classes=10)
    model(np.ones((2, 224, 224, 3))).shape  # (2, 10)
    ```
    """

    kind = "classifier"  # its row in `models.MODEL_CLASSES`

    def __init__(
        self,
        backbone: MobileNetV3Backbone,
        num_classes: int,
        head: str = "paper",
        head_filters: int | None = None,
        dropout: float = 0.2,
        activation: str | None = None,
        pooling: str = "avg",
        head_activation: str = "hard_swish",
        **kwargs: Any,
    ) -> None:
        check_backbone(backbone, type(self))
        num_classes = validation.check_int("num_classes", num_classes, 1, validation.MAX_CLASSES)
        head = validation.check_choice("head", head, HEADS)
        pooling = validation.check_choice("pooling", pooling, POOLINGS)
        dropout = validation.check_number("dropout", dropout, 0, 1, open_maximum=True)
        activation = validation.check_optional_name("activation", activation)
        if activation is not None:
            check_activation(activation, "activation")
        check_activation(head_activation, "head_activation")
        if head_filters is not None:
            head_filters = validation.check_int("head_filters", head_filters, 1, validation.MAX_WIDTH)
        if head_filters is None:
            head_filters = default_head_filters(backbone)
        dtype = backbone.dtype_policy
        inputs = backbone.input
        x = backbone(inputs)
        pool = keras.layers.GlobalAveragePooling2D if pooling == "avg" else keras.layers.GlobalMaxPooling2D
        if head == "dense":
            x = pool(name="avg_pool", dtype=dtype)(x)
            outputs = keras.layers.Dense(num_classes, activation=activation, name="predictions", dtype=dtype)(x)
        else:
            x = pool(keepdims=True, name="avg_pool", dtype=dtype)(x)
            x = Conv2D(head_filters, 1, use_bias=True, name="Conv_2", dtype=dtype)(x)
            x = keras.layers.Activation(head_activation, name="Conv_2_activation", dtype=dtype)(x)
            x = keras.layers.Dropout(dropout, name="dropout", dtype=dtype)(x)
            x = Conv2D(num_classes, 1, name="Logits", dtype=dtype)(x)
            x = keras.layers.Flatten(name="flatten", dtype=dtype)(x)
            # Softmax in float32 even under mixed precision.
            outputs = keras.layers.Activation(activation or "linear", name="predictions", dtype="float32")(x)
        super().__init__(backbone, inputs, outputs, **kwargs)
        self.num_classes = num_classes
        self.head = head
        self.head_filters = head_filters
        self.dropout = dropout
        self.activation = activation
        self.pooling = pooling
        self.head_activation = head_activation

    @classmethod
    def from_config(cls, config: dict) -> MobileNetV3ImageClassifier:
        # keras-cv's ImageClassifier config has no `head`: it is the dense head.
        return super().from_config({"head": "dense", **config})

    @classmethod
    def head_args_from_checkpoint(cls, checkpoint: Checkpoint) -> dict[str, Any]:
        return {
            "head": checkpoint.head or "paper",
            "head_filters": checkpoint.head_filters,
            "head_activation": checkpoint.head_activation or "hard_swish",
        }
