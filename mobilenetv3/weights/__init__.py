"""Weights from every source, behind one mapping interface.

Each source format is one module here with `detect(path) -> bool` (does
this file look like mine?) and `read(path) -> Checkpoint`, which turns the
file into canonical tensors (see `canonical`) plus the backbone config the
file implies. The `FORMATS` table below names them; `load_into` is the one
place that puts a checkpoint into a model. This package knows no model
class: `mobilenetv3.presets.loader.build_model` builds the model a checkpoint
describes.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from typing import Any

import keras
import numpy as np

from mobilenetv3.core.normalization import ImagePolicy
from mobilenetv3.weights import canonical
from mobilenetv3.weights.canonical import WeightsFileError, WeightsMismatchError

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
        head: the classifier head's layout ("paper" or "dense"; "lraspp" or
            "deeplabv3" for a segmenter, "ssdlite" for a detector, informative only), or None.
        task: the model kind the file holds ("classifier", "segmenter",
            "detector"); None means a classifier when there is a head, else a
            backbone (see `kind`).
        head_filters: width of the paper head's `Conv_2`, or None.
        head_activation: activation after `Conv_2` (None: hard-swish).
        source: a description of the file, for messages.
        metadata: where the weights came from (`source` library, `file`,
            timm `tag`, ...), recorded in a converted preset's metadata.
        preprocessing: how the weights expect images (size, resize/crop,
            interpolation, mean/std), saved as the converted preset's
            `preprocessor.json`; None: implied by `backbone_config`.
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
    preprocessing: ImagePolicy | None = None

    @property
    def kind(self) -> str:
        """The model kind the factory builds for this file."""
        return self.task or ("classifier" if self.num_classes else "backbone")


def read(path: str, format: str, **options: Any) -> Checkpoint:
    """Read `path` as `format` (one of `FORMATS`); `options` go to the reader.

    A tensor the reader expects but the file lacks is a
    `WeightsMismatchError`. (The values are checked where every checkpoint
    goes into a model: `load_into` -> `canonical.assign`.)
    """
    if format not in FORMATS:
        raise ValueError(f"Unknown weights format {format!r}; known formats: {sorted(FORMATS)}.")
    module = _reader(format)
    accepted = [name for name in inspect.signature(module.read).parameters if name != "path"]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(
            f"{unknown} do not apply to {format} files; the {format} reader takes "
            f"{accepted or 'no options'}."
        )
    try:
        checkpoint = module.read(str(path), **options)
    except KeyError as error:
        raise WeightsMismatchError(
            f"{path} lacks tensor {error}: the file is incomplete, or holds another network."
        ) from None
    return checkpoint


def detect_format(path: str) -> str | None:
    """The `FORMATS` name whose reader recognises `path`, or None."""
    for name in FORMATS:
        if _reader(name).detect(path):
            return name
    return None


def _reader(format: str) -> Any:
    return importlib.import_module(f"mobilenetv3.weights.{FORMATS[format]}")


def load_into(model: keras.Model, checkpoint: Checkpoint) -> None:
    """Assign a checkpoint to a backbone or task model, checking every tensor.

    Every variable of the model must be in the checkpoint. A task model uses
    every tensor of the checkpoint; a bare backbone (a model with no
    `num_classes`) takes the backbone part of a checkpoint that has more (a
    classifier's or an embedder's head) and skips the rest.
    """
    bare_backbone = getattr(model, "num_classes", None) is None
    canonical.assign(model, checkpoint.tensors, source=checkpoint.source, allow_unused=("",) if bare_backbone else ())


__all__ = ["Checkpoint", "FORMATS", "WeightsFileError", "WeightsMismatchError", "detect_format", "load_into", "read"]
