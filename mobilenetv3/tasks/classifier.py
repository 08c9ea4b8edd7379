"""`MobileNetV3ImageClassifier`: the paper's head, or keras-cv's dense head."""

from __future__ import annotations

from typing import Any

import keras

from mobilenetv3 import presets as registry
from mobilenetv3.architectures import make_divisible
from mobilenetv3.backbone import MobileNetV3Backbone
from mobilenetv3.layers import check_activation

HEADS = ("paper", "dense")


def default_head_filters(backbone: MobileNetV3Backbone) -> int:
    """keras.applications' head width: 1280 for Large, 1024 for Small,
    halved with a reduced tail, scaled up (never down) with `alpha`."""
    base = 1280 if backbone.stackwise_filters[-1] >= 160 else 1024
    if backbone.reduced_tail:
        base //= 2
    return make_divisible(base * backbone.alpha) if backbone.alpha > 1 else base


@keras.saving.register_keras_serializable(package="mobilenetv3")
class MobileNetV3ImageClassifier(keras.Model):
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
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"`num_classes` must be an integer >= 1; got {num_classes!r}.")
        if head not in HEADS:
            raise ValueError(f"`head` must be one of {list(HEADS)}; got {head!r}.")
        if pooling not in ("avg", "max"):
            raise ValueError(f"`pooling` must be 'avg' or 'max'; got {pooling!r}.")
        if not 0 <= dropout < 1:
            raise ValueError(f"`dropout` must be in [0, 1); got {dropout!r}.")
        check_activation(head_activation, "head_activation")
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
            x = keras.layers.Conv2D(head_filters, 1, use_bias=True, name="Conv_2", dtype=dtype)(x)
            x = keras.layers.Activation(head_activation, name="Conv_2_activation", dtype=dtype)(x)
            x = keras.layers.Dropout(dropout, name="dropout", dtype=dtype)(x)
            x = keras.layers.Conv2D(num_classes, 1, name="Logits", dtype=dtype)(x)
            x = keras.layers.Flatten(name="flatten", dtype=dtype)(x)
            # Softmax in float32 even under mixed precision.
            outputs = keras.layers.Activation(activation or "linear", name="predictions", dtype="float32")(x)
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        # The backbone's policy (a functional Model ignores `dtype=`): with
        # mixed_float16, compile() then wraps the optimizer for loss scaling.
        self.dtype_policy = dtype
        self.backbone = backbone
        self.num_classes = num_classes
        self.head = head
        self.head_filters = head_filters
        self.dropout = dropout
        self.activation = activation
        self.pooling = pooling
        self.head_activation = head_activation

    def get_config(self) -> dict:
        return {
            "name": self.name,
            "trainable": self.trainable,
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "num_classes": self.num_classes,
            "head": self.head,
            "head_filters": self.head_filters,
            "dropout": self.dropout,
            "activation": self.activation,
            "pooling": self.pooling,
            "head_activation": self.head_activation,
        }

    @classmethod
    def from_config(cls, config: dict) -> MobileNetV3ImageClassifier:
        config = dict(config)
        backbone = config.pop("backbone")
        if isinstance(backbone, dict):
            backbone = MobileNetV3Backbone.from_config(backbone["config"])
        # keras-cv's ImageClassifier config has no `head`: it is the dense head.
        config.setdefault("head", "dense")
        return cls(backbone=backbone, **config)

    @registry.classproperty
    def presets(cls) -> dict[str, dict]:
        """Classifier preset names and their metadata (backbone presets, which
        need `num_classes`, are listed by `MobileNetV3Backbone.presets`)."""
        return registry.describe(registry.classifier_presets())

    def save_to_preset(self, path: str) -> None:
        """Write a preset folder (`config.json`, `model.weights.h5`,
        `metadata.json`) atomically; `from_preset(path)` reads it back.

        Example:

        ```python
        model.save_to_preset("my_classifier")
        same = mobilenetv3.MobileNetV3ImageClassifier.from_preset("my_classifier")
        ```
        """
        from mobilenetv3 import preset_io

        preset_io.save_preset(self, path)

    @classmethod
    def from_preset(
        cls,
        preset: str,
        load_weights: bool | None = None,
        num_classes: int | None = None,
        **kwargs: Any,
    ) -> MobileNetV3ImageClassifier:
        """A classifier from a classifier preset, or a backbone preset with a
        new head when `num_classes` is given.

        Args:
            preset: a classifier preset name (see `presets`, e.g.
                "mobilenet_v3_large_imagenet_classifier"), a backbone preset
                name, a preset folder (ours or keras-cv's `ImageClassifier`)
                or a kaggle:// / hf:// handle.
            load_weights: as in `MobileNetV3Backbone.from_preset`.
            num_classes: a new head with this many classes (required for a
                backbone preset; for a classifier preset it replaces the head).
            **kwargs: overrides of the backbone config, head arguments
                (`head`, `head_filters`, `head_activation`, `dropout`,
                `activation`, `pooling`), or `weights_file=PATH` to load a
                downloaded weights file instead of fetching it (md5-checked;
                `verify_weights_file=False` skips the check).

        Example:

        ```python
        model = mobilenetv3.MobileNetV3ImageClassifier.from_preset(
            "mobilenet_v3_small", num_classes=5
        )
        ```
        """
        from mobilenetv3 import preset_io

        head_keys = ("head", "head_filters", "head_activation", "dropout", "activation", "pooling")
        head_args = {k: kwargs.pop(k) for k in head_keys if k in kwargs}
        model = preset_io.load_classifier(cls, preset, load_weights, head_args, **kwargs)
        if isinstance(model, cls) and num_classes is None:
            return model
        backbone = model.backbone if isinstance(model, cls) else model
        if num_classes is None:
            raise ValueError(
                f"{preset!r} is a backbone preset: pass `num_classes` to put a new head on it."
            )
        return cls(backbone, num_classes, **head_args)
