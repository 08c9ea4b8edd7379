"""The preset registry: named configurations with metadata, as data.

A preset is a backbone config (the keras-cv `stackwise_*` lists plus our
extras), its family, a description, its exact parameter count and, when it
has pretrained weights, where they come from (`WeightsSource`). Classifier
presets add a head over a backbone preset.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

from mobilenetv3.core import architectures
from mobilenetv3.core.normalization import ImagePolicy, Preprocessing  # noqa: F401 - the old name, kept importable

KERAS_APPLICATIONS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v3/"

_SYMMETRIC_224 = ImagePolicy("symmetric", 224, "squash")


@dataclasses.dataclass(frozen=True)
class WeightsSource:
    """Where a preset's weights come from and how to read them.

    Attributes:
        format: the weights module that reads the file (see
            `mobilenetv3.weights`), e.g. "keras-applications".
        url: the official download address.
        md5: the file's md5, as published by its source.
        description: a human-readable name of the source.
        preprocessing: how the weights expect images (None: derived from
            the preset config's `preprocessing`, squashed to 224x224).
    """

    format: str
    url: str
    md5: str
    description: str
    preprocessing: ImagePolicy | None = None

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
    # The model kind ("backbone", or a task's kind such as "classifier"); a
    # task preset's `head` holds the task's arguments (num_classes, head, ...).
    task: str = "backbone"
    head: dict | None = None

    @property
    def image_preprocessing(self) -> ImagePolicy:
        """The recorded image policy, or the one the config implies."""
        if self.weights is not None and self.weights.preprocessing is not None:
            return self.weights.preprocessing
        return ImagePolicy(self.config.get("preprocessing", "unit"))


def _config(blocks: tuple, **extra: Any) -> dict:
    return {**architectures.to_stackwise(blocks), "include_rescaling": True, **extra}


def _keras_applications(stem: str, md5: str, top: bool = False) -> WeightsSource:
    suffix = "" if top else "_no_top_v2"
    return WeightsSource(
        format="keras-applications",
        url=f"{KERAS_APPLICATIONS_URL}weights_mobilenet_v3_{stem}_float{suffix}.h5",
        md5=md5,
        description=f"keras.applications (TF-slim authors' ImageNet weights, {stem})",
        preprocessing=_SYMMETRIC_224,
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



def _imagenet_classifier(
    name: str, family: str, what: str, params: int, blocks: tuple, stem: str, md5: str, **extra: Any
) -> Preset:
    """A 1000-class keras.applications with-top file as a classifier preset."""
    minimal = extra.get("stem_activation") == "relu"
    return Preset(
        name,
        family,
        f"{what} ImageNet-1k classifier (paper head, 1000 classes; TF-slim weights via keras.applications).",
        params,
        _config(blocks, **_IMAGENET, **extra),
        _keras_applications(stem, md5, top=True),
        _IMAGENET_NOTE,
        task="classifier",
        head={
            "num_classes": 1000,
            "head": "paper",
            "head_filters": 1024 if family == "small" else 1280,
            "head_activation": "relu" if minimal else "hard_swish",
        },
    )


_CLASSIFIER_PRESETS = [
    _imagenet_classifier(
        "mobilenet_v3_small_imagenet_classifier", "small", "MobileNetV3-Small 1.0 (68.1% top-1)",
        2_554_968, _SMALL, "small_224_1.0", "8768d4c2e7dee89b9d02b2d03d65d862",
    ),
    _imagenet_classifier(
        "mobilenet_v3_large_imagenet_classifier", "large", "MobileNetV3-Large 1.0 (75.6% top-1)",
        5_507_432, _LARGE, "large_224_1.0", "59e551e166be033d707958cf9e29a6a7",
    ),
    _imagenet_classifier(
        "mobilenet_v3_small_075_imagenet_classifier", "small", "MobileNetV3-Small 0.75 (65.4% top-1)",
        2_051_552, _SMALL, "small_224_0.75", "cb65d4e5be93758266aa0a7f2c6708b7", alpha=0.75,
    ),
    _imagenet_classifier(
        "mobilenet_v3_large_075_imagenet_classifier", "large", "MobileNetV3-Large 0.75 (73.3% top-1)",
        4_012_616, _LARGE, "large_224_0.75", "765b44a33ad4005b3ac83185abf1d0eb", alpha=0.75,
    ),
    _imagenet_classifier(
        "mobilenet_v3_small_minimalistic_imagenet_classifier", "small",
        "MobileNetV3-Small minimalistic (61.9% top-1)", 2_056_848,
        architectures.minimalistic(_SMALL), "small_minimalistic_224_1.0",
        "99cd97fb2fcdad2bf028eb838de69e37", **_MINIMAL,
    ),
    _imagenet_classifier(
        "mobilenet_v3_large_minimalistic_imagenet_classifier", "large",
        "MobileNetV3-Large minimalistic (72.3% top-1)", 3_948_688,
        architectures.minimalistic(_LARGE), "large_minimalistic_224_1.0",
        "675e7b876c45c57e9e63e6d90a36599c", **_MINIMAL,
    ),
]

# Backbone presets (what `MobileNetV3Backbone.presets` lists) and classifier
# presets (`MobileNetV3ImageClassifier.presets`), kept apart.
PRESETS: dict[str, Preset] = {p.name: p for p in _PRESETS}
CLASSIFIER_PRESETS: dict[str, Preset] = {p.name: p for p in _CLASSIFIER_PRESETS}
# Every preset table; a new task's presets are one more table here.
PRESET_TABLES: tuple[dict[str, Preset], ...] = (PRESETS, CLASSIFIER_PRESETS)


def backbone_presets(family: str | None = None) -> dict[str, Preset]:
    """Backbone presets of one family ("small", "large"), or all of them."""
    return task_presets("backbone", family)


def classifier_presets(family: str | None = None) -> dict[str, Preset]:
    """Classifier presets (with a head) of one family, or all of them."""
    return task_presets("classifier", family)


def task_presets(kind: str, family: str | None = None) -> dict[str, Preset]:
    """The presets of one model kind ("backbone", "classifier", ...) and
    family, or of every family."""
    return {n: p for n, p in all_presets().items() if p.task == kind and family in (None, p.family)}


def all_presets() -> dict[str, Preset]:
    """Every registered preset, backbone and task."""
    return {name: preset for table in PRESET_TABLES for name, preset in table.items()}


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
                "preprocessing_policy": p.image_preprocessing.to_dict(),
                "task": p.task,
                "official_name": "MobileNetV3",
                "path": "mobilenetv3",
            },
            "config": copy.deepcopy(p.config if p.head is None else {"backbone": p.config, **p.head}),
        }
        for name, p in presets.items()
    }


def find(name: str, family: str | None = None) -> Preset:
    """The registered preset `name` of any kind (of `family` when given), or
    a ValueError listing the registered names."""
    available = {n: p for n, p in all_presets().items() if family in (None, p.family)}
    if name not in available:
        raise ValueError(
            f"Unknown preset {name!r}. Registered presets: {sorted(available)}; a preset "
            "can also be a local folder (config.json + model.weights.h5), a weights file or a "
            "'kaggle://' / 'hf://' handle."
        )
    return available[name]


def get(name: str, family: str | None = None) -> Preset:
    """The registered backbone preset `name`, or a ValueError listing the
    valid names."""
    preset = find(name, family)
    if preset.task != "backbone":
        raise ValueError(
            f"{name!r} is a {preset.task} preset, not a backbone preset. Backbone presets: "
            f"{sorted(backbone_presets(family))}."
        )
    return preset
