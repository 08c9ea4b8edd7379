"""Resolving preset handles and reading/writing preset folders.

A preset handle is one of:
- a registry name (`mobilenet_v3_small_imagenet`),
- a local folder in keras-cv's layout (`config.json`, `model.weights.h5`,
  `metadata.json`), written by keras-cv or by `save_to_preset`,
- `kaggle://owner/model/framework/variation/version` or `hf://owner/repo`.
"""

from __future__ import annotations

import datetime
import json
import os
from pathlib import Path
from typing import Any

import keras

from mobilenetv3 import presets as registry
from mobilenetv3 import weights
from mobilenetv3.utils import atomic_path
from mobilenetv3.weights import download

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.weights.h5"
METADATA_FILE = "metadata.json"
LABELS_FILE = "labels.txt"  # class names of a classifier, one per line

# keras-cv config keys with no meaning here.
_FOREIGN_KEYS = ("input_tensor",)


class PresetError(ValueError):
    """A preset cannot be resolved or read."""


def resolve_handle(preset: str | os.PathLike) -> str:
    """A preset name or local folder; `kaggle://` / `hf://` handles are
    downloaded first."""
    if not isinstance(preset, (str, os.PathLike)):
        raise TypeError(f"`preset` must be a preset name, folder or handle; got {preset!r}.")
    preset = str(preset)
    if preset.startswith(("kaggle://", "hf://")):
        return fetch_handle(preset)
    return preset


def load_backbone(cls: type, preset: str, load_weights: bool | None, **kwargs: Any) -> keras.Model:
    """`from_preset` for backbone classes (see `MobileNetV3Backbone.from_preset`)."""
    weights_file = kwargs.pop("weights_file", None)
    preset = resolve_handle(preset)
    if os.path.isdir(preset):
        return load_folder(preset, load_weights, expected=cls, **kwargs)
    if os.path.exists(preset):
        raise PresetError(
            f"`preset` {preset!r} is a file; a preset is a registered name, a folder holding "
            f"{CONFIG_FILE} and {WEIGHTS_FILE}, or a kaggle:// / hf:// handle."
        )
    return _load_registered(cls, registry.get(preset, family=cls._family), load_weights, weights_file, kwargs)


def _load_registered(
    cls: type, preset: registry.Preset, load_weights: bool | None, weights_file: str | None, overrides: dict
) -> keras.Model:
    if load_weights and preset.weights is None:
        with_weights = sorted(n for n, p in registry.PRESETS.items() if p.weights)
        raise PresetError(
            f"Preset {preset.name!r} has no pretrained weights (load_weights=True). Presets with "
            f"weights: {with_weights}."
        )
    model = _build(cls, {**preset.config, **overrides})
    _load_preset_weights(model, preset, load_weights, weights_file)
    return model


def _load_preset_weights(
    model: keras.Model, preset: registry.Preset, load_weights: bool | None, weights_file: str | None
) -> None:
    """Fetch (or take `weights_file`) and load a registered preset's weights."""
    if preset.weights is None or load_weights is False:
        return
    source = preset.weights
    path = weights_file or download.fetch(
        source.url,
        md5=source.md5,
        local_hint=f"pass it as from_preset({preset.name!r}, weights_file='/path/to/{source.filename}')",
    )
    weights.load_into(model, weights.read(path, source.format))


def load_classifier(
    cls: type, preset: str, load_weights: bool | None, head_args: dict, **kwargs: Any
) -> keras.Model:
    """`MobileNetV3ImageClassifier.from_preset`: a classifier preset (name,
    folder or handle) gives a classifier; a backbone preset gives a backbone
    for the caller to put a head on."""
    from mobilenetv3.backbone import MobileNetV3Backbone

    preset = resolve_handle(preset)
    if os.path.isdir(preset):
        if kwargs.get("weights_file") is not None:
            raise PresetError(
                f"`weights_file` replaces the download of a registered preset; {preset!r} is a "
                "folder, which holds its own weights."
            )
        kwargs.pop("weights_file", None)
        return _with_overrides(load_folder(preset, load_weights), cls, kwargs, head_args)
    if preset not in registry.classifier_presets():
        return load_backbone(MobileNetV3Backbone, preset, load_weights, **kwargs)
    spec = registry.CLASSIFIER_PRESETS[preset]
    weights_file = kwargs.pop("weights_file", None)
    backbone = _build(MobileNetV3Backbone, {**spec.config, **kwargs})
    model = cls(backbone, **{**spec.head, **head_args})
    _load_preset_weights(model, spec, load_weights, weights_file)
    return model


def _with_overrides(model: keras.Model, cls: type, backbone_overrides: dict, head_args: dict) -> keras.Model:
    """A folder's model rebuilt with backbone overrides (e.g. `input_shape`)
    and, for a classifier, head arguments (e.g. `activation`), same weights."""
    if not backbone_overrides and not (head_args and isinstance(model, cls)):
        return model
    from mobilenetv3.backbone import MobileNetV3Backbone

    source = model.backbone if isinstance(model, cls) else model
    backbone = MobileNetV3Backbone.from_config({**source.get_config(), **backbone_overrides})
    rebuilt = backbone
    if isinstance(model, cls):
        head = {k: v for k, v in model.get_config().items() if k not in ("backbone", "name", "trainable")}
        rebuilt = cls(backbone, **{**head, **head_args})
    rebuilt.set_weights(model.get_weights())
    return rebuilt


def _build(cls: type, config: dict) -> keras.Model:
    from mobilenetv3.backbone import MobileNetV3Backbone

    target = cls if issubclass(cls, MobileNetV3Backbone) else MobileNetV3Backbone
    return target(**{k: v for k, v in config.items() if k not in _FOREIGN_KEYS})


def load_folder(path: str, load_weights: bool | None, expected: type | None = None, **overrides: Any) -> keras.Model:
    """Build the model a preset folder describes and load its weights."""
    checkpoint = foreign_checkpoint(path)
    if checkpoint is not None:
        return _from_checkpoint(checkpoint, load_weights, expected, overrides)
    folder = Path(path)
    config_path = folder / CONFIG_FILE
    if not config_path.is_file():
        raise PresetError(f"Preset folder {folder} has no {CONFIG_FILE}; it is not a preset folder.")
    try:
        spec = json.loads(config_path.read_text())
        class_name = spec["registered_name"].split(">")[-1]
        config = dict(spec["config"])
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise PresetError(f"{config_path} is not a valid preset config ({error!r}).") from None
    cls = _class_for(class_name, config_path)
    if expected is not None and not issubclass(cls, expected) and not issubclass(expected, cls):
        raise PresetError(f"{folder} holds a {class_name}, not a {expected.__name__}.")
    config.update(overrides)
    if cls.__name__ == "MobileNetV3Backbone" and expected is not None and issubclass(expected, cls):
        cls = expected
    model = cls.from_config({k: v for k, v in config.items() if k not in _FOREIGN_KEYS})
    weights_path = folder / spec.get("weights", WEIGHTS_FILE)
    if load_weights is False:
        return model
    if not weights_path.is_file():
        if load_weights:
            raise PresetError(f"Preset folder {folder} has no weights file {weights_path.name}.")
        return model
    try:
        model.load_weights(str(weights_path))
    except Exception as error:  # Keras raises several types for bad files.
        raise PresetError(
            f"Could not load {weights_path} into {class_name} built from {config_path}: {error}"
        ) from None
    return model


def foreign_checkpoint(folder: str | os.PathLike) -> weights.Checkpoint | None:
    """The weights of a folder in another library's layout, converted on the
    fly (a keras-hub MobileNet preset, a timm Hugging Face repo with
    `config.json` + `model.safetensors`), or None for a preset folder."""
    from mobilenetv3.weights import keras_hub_preset, timm

    if keras_hub_preset.detect(folder):
        return keras_hub_preset.read(folder)
    if timm.detect(str(folder)):
        return timm.read(str(folder))
    return None


def _from_checkpoint(
    checkpoint: weights.Checkpoint, load_weights: bool | None, expected: type | None, overrides: dict
) -> keras.Model:
    from mobilenetv3.backbone import MobileNetV3Backbone

    backbone_cls = expected if expected is not None and issubclass(expected, MobileNetV3Backbone) else None
    overrides = {k: v for k, v in overrides.items() if k not in _FOREIGN_KEYS}
    return weights.build_model(checkpoint, backbone_cls, load_weights is not False, **overrides)


def _class_for(class_name: str, config_path: Path) -> type:
    from mobilenetv3 import tasks
    from mobilenetv3.backbone import MobileNetV3Backbone

    classes = {
        "MobileNetV3Backbone": MobileNetV3Backbone,
        "ImageClassifier": tasks.MobileNetV3ImageClassifier,
        "MobileNetV3ImageClassifier": tasks.MobileNetV3ImageClassifier,
        "MobileNetV3ImageSegmenter": tasks.MobileNetV3ImageSegmenter,
    }
    if class_name not in classes:
        raise PresetError(
            f"{config_path} describes a {class_name!r}; this package reads {sorted(classes)}."
        )
    return classes[class_name]


def fetch_handle(handle: str) -> str:
    """Download a `kaggle://` or `hf://` preset into the local cache."""
    scheme, _, name = handle.partition("://")
    try:
        if scheme == "kaggle":
            import kagglehub

            return kagglehub.model_download(name)
        import huggingface_hub

        return huggingface_hub.snapshot_download(repo_id=name)
    except ImportError as error:
        raise PresetError(
            f"Loading {handle} needs the `{error.name}` package (pip install {error.name})."
        ) from None
    except Exception as error:  # the hubs raise many types, often nested.
        raise PresetError(
            f"Could not download preset {handle}: {type(error).__name__}: {_one_line(error)}. "
            "If you are offline, download the preset folder elsewhere and pass its local path "
            "to from_preset()."
        ) from None


def _one_line(error: Exception, limit: int = 200) -> str:
    return " ".join(str(error).split())[:limit]


def save_preset(
    model: keras.Model,
    path: str | os.PathLike,
    class_names: list[str] | None = None,
    origin: dict[str, Any] | None = None,
) -> None:
    """Write `model` as a preset folder, atomically (see `save_to_preset`).

    `class_names` (a classifier's labels, in output order) go to
    `labels.txt` and to `metadata.json`'s "class_names"; `origin` (where
    converted weights came from: source, file, tag) to its "origin"."""
    from mobilenetv3 import __version__

    with atomic_path(path, directory=True) as staging:
        staging.mkdir()
        spec = keras.saving.serialize_keras_object(model)
        spec["weights"] = WEIGHTS_FILE
        (staging / CONFIG_FILE).write_text(json.dumps(spec, indent=4))
        model.save_weights(str(staging / WEIGHTS_FILE))
        metadata = {
            "keras_version": keras.__version__,
            "mobilenetv3_version": __version__,
            "parameter_count": model.count_params(),
            "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S"),
        }
        if origin:
            metadata["origin"] = _json_safe(origin)
        if class_names is not None:
            metadata["class_names"] = list(class_names)
            (staging / LABELS_FILE).write_text("".join(f"{name}\n" for name in class_names))
        (staging / METADATA_FILE).write_text(json.dumps(metadata, indent=4))


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value if isinstance(value, (str, int, float, bool)) or value is None else str(value)


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """A preset folder's `metadata.json` ({} when it has none)."""
    file = Path(path) / METADATA_FILE
    return json.loads(file.read_text()) if file.is_file() else {}


def read_class_names(path: str | os.PathLike) -> list[str] | None:
    """The class names saved in a preset folder (`labels.txt`, else
    `metadata.json`'s "class_names"), or None when it has none."""
    folder = Path(path)
    labels = folder / LABELS_FILE
    if labels.is_file():
        return [line for line in labels.read_text().splitlines() if line]
    metadata = folder / METADATA_FILE
    if metadata.is_file():
        names = json.loads(metadata.read_text()).get("class_names")
        return list(names) if names else None
    return None
