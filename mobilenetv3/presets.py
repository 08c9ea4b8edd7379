"""The preset registry: named configurations with metadata, as data.

A preset is a backbone config (the keras-cv `stackwise_*` lists plus our
extras), its family, a description, its exact parameter count and, when it
has pretrained weights, where they come from (`WeightsSource`). Classifier
presets add a head over a backbone preset.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any, Callable

from mobilenetv3 import architectures

KERAS_APPLICATIONS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v3/"
KAGGLE_PREFIX = "kaggle://keras/mobilenetv3/keras/"


class classproperty:  # noqa: N801 - mirrors keras-cv's decorator name
    """A read-only property on the class itself (`Backbone.presets`)."""

    def __init__(self, getter: Callable) -> None:
        self.getter = getter

    def __get__(self, instance: Any, owner: type) -> Any:
        return self.getter(owner)


@dataclasses.dataclass(frozen=True)
class WeightsSource:
    """Where a preset's weights come from and how to read them.

    Attributes:
        format: the weights module that reads the file (see
            `mobilenetv3.weights`), e.g. "keras-applications".
        url: the official download address.
        md5: the file's md5, as published by its source.
        description: a human-readable name of the source.
        kaggle_handle: the keras-cv Kaggle handle of the same weights, if any.
    """

    format: str
    url: str
    md5: str
    description: str
    kaggle_handle: str | None = None

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]


@dataclasses.dataclass(frozen=True)
class Preset:
    name: str
    family: str
    description: str
    params: int
    config: dict
    weights: WeightsSource | None = None
    preprocessing_notes: str = "raw 0..255 RGB; the model rescales by 1/255 (keras-cv)"


def _config(blocks: tuple, **extra: Any) -> dict:
    return {**architectures.to_stackwise(blocks), "include_rescaling": True, **extra}


def _keras_applications(stem: str, md5: str) -> WeightsSource:
    return WeightsSource(
        format="keras-applications",
        url=f"{KERAS_APPLICATIONS_URL}weights_mobilenet_v3_{stem}_float_no_top_v2.h5",
        md5=md5,
        description=f"keras.applications (TF-slim authors' ImageNet weights, {stem})",
    )


_SMALL = architectures.SMALL_BLOCKS
_LARGE = architectures.LARGE_BLOCKS
_MINIMAL = {"stem_activation": "relu", "last_activation": "relu"}
_IMAGENET = {"preprocessing": "symmetric"}
_IMAGENET_NOTE = (
    "raw 0..255 RGB, bilinear resize to 224x224 (no crop); the model maps it "
    "to [-1, 1] (x / 127.5 - 1), as TF-slim trained it"
)

_PRESETS = [
    Preset(
        "mobilenet_v3_small",
        "small",
        "MobileNetV3-Small 1.0 (11 blocks), random initialization.",
        939_120,
        _config(_SMALL),
    ),
    Preset(
        "mobilenet_v3_large",
        "large",
        "MobileNetV3-Large 1.0 (15 blocks), random initialization.",
        2_996_352,
        _config(_LARGE),
    ),
    Preset(
        "mobilenet_v3_small_imagenet",
        "small",
        "MobileNetV3-Small 1.0 pretrained on ImageNet-1k (TF-slim weights, 68.1% top-1).",
        939_120,
        _config(_SMALL, **_IMAGENET),
        _keras_applications("small_224_1.0", "d3e8ec802a04aa4fc771ee12a9a9b836"),
        _IMAGENET_NOTE,
    ),
    Preset(
        "mobilenet_v3_large_imagenet",
        "large",
        "MobileNetV3-Large 1.0 pretrained on ImageNet-1k (TF-slim weights, 75.6% top-1).",
        2_996_352,
        _config(_LARGE, **_IMAGENET),
        _keras_applications("large_224_1.0", "07fb09a5933dd0c8eaafa16978110389"),
        _IMAGENET_NOTE,
    ),
    Preset(
        "mobilenet_v3_small_minimalistic",
        "small",
        "MobileNetV3-Small minimalistic (3x3 kernels, ReLU, no SE), random initialization.",
        441_000,
        _config(architectures.minimalistic(_SMALL), **_MINIMAL),
    ),
    Preset(
        "mobilenet_v3_large_minimalistic",
        "large",
        "MobileNetV3-Large minimalistic (3x3 kernels, ReLU, no SE), random initialization.",
        1_437_608,
        _config(architectures.minimalistic(_LARGE), **_MINIMAL),
    ),
]

PRESETS: dict[str, Preset] = {p.name: p for p in _PRESETS}


def backbone_presets(family: str | None = None) -> dict[str, Preset]:
    """Presets of one family ("small", "large"), or all of them."""
    return {n: p for n, p in PRESETS.items() if family in (None, p.family)}


def describe(presets: dict[str, Preset]) -> dict[str, dict]:
    """keras-cv style `{name: {"metadata": {...}, "config": {...}}}`."""
    return {
        name: {
            "metadata": {
                "description": p.description,
                "params": p.params,
                "family": p.family,
                "has_weights": p.weights is not None,
                "weights_source": p.weights.description if p.weights else None,
                "weights_url": p.weights.url if p.weights else None,
                "preprocessing": p.preprocessing_notes,
                "official_name": "MobileNetV3",
                "path": "mobilenetv3",
            },
            "config": copy.deepcopy(p.config),
        }
        for name, p in presets.items()
    }


def get(name: str, family: str | None = None) -> Preset:
    """The registered preset `name`, or a ValueError listing the valid names."""
    available = backbone_presets(family)
    if name not in available:
        raise ValueError(
            f"Unknown preset {name!r}. Registered presets: {sorted(available)}; a preset "
            "can also be a local folder (config.json + model.weights.h5) or a "
            "'kaggle://' / 'hf://' handle."
        )
    return available[name]
