"""Weights from every source, behind one mapping interface.

Each source format is one module here with `detect(path) -> bool` (does
this file look like mine?) and `read(path) -> Checkpoint`, which turns the
file into canonical tensors (see `canonical`) plus the backbone config the
file implies. The `FORMATS` table below names them; `load_into` is the one
place that puts a checkpoint into a model, `build_model` the one place that
builds the model a checkpoint describes.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any

import keras
import numpy as np

from mobilenetv3.weights import canonical
from mobilenetv3.weights.canonical import WeightsMismatchError

# format name -> module (under mobilenetv3.weights) that reads it.
FORMATS: dict[str, str] = {
    "keras-applications": "keras_applications",
    "torchvision": "torchvision",
    "timm": "timm",
    "tflite": "tflite",
    "keras-hub": "keras_hub_preset",
}


@dataclasses.dataclass
class Checkpoint:
    """What a source file holds, in this package's terms.

    Attributes:
        tensors: canonical `{variable path: array}`; backbone variables keep
            their names, head variables use the classifier's layer names.
        backbone_config: backbone constructor arguments the file implies
            (family blocks, alpha, padding, bn_epsilon, preprocessing, ...).
        num_classes: classes of the file's head, or None without a head.
        head: the head layout ("paper", "dense" or "lraspp"), or None.
        task: "classifier", "segmenter", or None for a bare backbone.
        head_filters: width of the paper head's `Conv_2`, or None.
        head_activation: activation after `Conv_2` (None: hard-swish).
        source: a description of the file, for messages.
        metadata: where the weights came from (`source` library, `file`,
            timm `tag`, ...), recorded in a converted preset's metadata.
    """

    tensors: dict[str, np.ndarray]
    backbone_config: dict[str, Any]
    num_classes: int | None = None
    head: str | None = None
    head_filters: int | None = None
    source: str = ""
    task: str | None = None
    head_activation: str | None = None
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)


def build_model(
    checkpoint: Checkpoint,
    backbone_cls: type | None = None,
    load_weights: bool = True,
    **backbone_overrides: Any,
) -> keras.Model:
    """The model a checkpoint describes (backbone, or classifier with its head),
    with the checkpoint's weights loaded (unless `load_weights=False`).
    `backbone_cls` (a `MobileNetV3Backbone` subclass) asks for a backbone of
    that class: a head in the checkpoint is then left out."""
    from mobilenetv3.backbone import MobileNetV3Backbone
    from mobilenetv3.tasks import MobileNetV3ImageClassifier

    if backbone_cls is not None:
        checkpoint = dataclasses.replace(checkpoint, num_classes=None, task=None)
    model = (backbone_cls or MobileNetV3Backbone)(**{**checkpoint.backbone_config, **backbone_overrides})
    if checkpoint.task == "segmenter":
        from mobilenetv3.tasks.segmenter import MobileNetV3ImageSegmenter

        model = MobileNetV3ImageSegmenter(model, checkpoint.num_classes)
    elif checkpoint.num_classes:
        model = MobileNetV3ImageClassifier(
            model,
            checkpoint.num_classes,
            head=checkpoint.head or "paper",
            head_filters=checkpoint.head_filters,
            head_activation=checkpoint.head_activation or "hard_swish",
        )
    if load_weights:
        load_into(model, checkpoint)
    return model


def read(path: str, format: str) -> Checkpoint:
    """Read `path` as `format` (one of `FORMATS`)."""
    if format not in FORMATS:
        raise ValueError(f"Unknown weights format {format!r}; known formats: {sorted(FORMATS)}.")
    module = importlib.import_module(f"mobilenetv3.weights.{FORMATS[format]}")
    return module.read(str(path))


# Canonical layer names of classifier heads ("paper": Conv_2 + Logits,
# "dense": keras-cv's predictions).
HEAD_LAYERS = ("Conv_2/", "Logits/", "predictions/", "lraspp_")


def load_into(model: keras.Model, checkpoint: Checkpoint) -> None:
    """Assign a checkpoint to a backbone or classifier, checking every tensor.

    The checkpoint's head tensors are skipped when `model` has no head.
    """
    model_has_head = any(v.path.startswith(HEAD_LAYERS) for v in model.weights)
    canonical.assign(
        model,
        checkpoint.tensors,
        source=checkpoint.source,
        allow_unused=() if model_has_head else HEAD_LAYERS,
    )


def convert(source: str, output_dir: str, format: str = "auto", **options: Any) -> keras.Model:
    """Convert a weights file (any supported source) into a preset folder;
    see `mobilenetv3.weights.converter.convert`.

    Example:

    ```python
    model = weights.convert("v3-small_224_1.0_uint8.tflite", "mobilenet_v3_small_tflite")
    ```
    """
    from mobilenetv3.weights.converter import convert as convert_source

    return convert_source(source, output_dir, format=format, **options)


__all__ = ["Checkpoint", "FORMATS", "WeightsMismatchError", "build_model", "convert", "load_into", "read"]
