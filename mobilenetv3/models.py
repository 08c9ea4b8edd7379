"""The one model factory: a source in, the right model class out.

`load_model` is what every entry point calls (`from_preset` of the backbone
and of every task, the converter, `export`, `predict`, `segment`, `train`,
the benchmark). A source is a registered preset name, a preset folder
(ours or keras-cv's), a `kaggle://` / `hf://` handle, or a weights file of a
supported format (`mobilenetv3.weights.FORMATS`). `build_model` turns a
`weights.Checkpoint` into its model.

The classes are found by kind ("backbone", "classifier", "segmenter", ...)
in `MODEL_CLASSES`, which each class fills with `@register_model(kind)`; so
this module sits below the backbone and the tasks and imports neither.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable
from typing import Any

import keras

from mobilenetv3 import preset_io, presets, weights
from mobilenetv3.preset_io import PresetError
from mobilenetv3.weights import download

BACKBONE = "backbone"

# kind -> class; filled by `register_model`.
MODEL_CLASSES: dict[str, type] = {}
# serialized class name (a folder's `registered_name`) -> kind.
_KIND_OF_CLASS_NAME: dict[str, str] = {}

# `load_model` keywords that `from_preset` passes on besides head and backbone arguments.
LOAD_KEYWORDS = ("weights_file", "verify_weights_file")

# keras-cv config keys with no meaning here.
_FOREIGN_KEYS = ("input_tensor",)


def register_model(kind: str, class_names: Iterable[str] = ()) -> Callable[[type], type]:
    """Class decorator: the factory builds `kind` models (and folders whose
    config names the class or one of `class_names`) with this class.

    Example:

    ```python
    @register_model("detector")
    class MobileNetV3ObjectDetector(MobileNetV3Task): ...
    ```
    """

    def decorate(cls: type) -> type:
        MODEL_CLASSES[kind] = cls
        cls.kind = kind
        for name in (cls.__name__, *class_names):
            _KIND_OF_CLASS_NAME[name] = kind
        return cls

    return decorate


def load_model(
    source: str | os.PathLike,
    expected: type | None = None,
    load_weights: bool | None = None,
    *,
    weights_file: str | None = None,
    verify_weights_file: bool = True,
    head_args: dict | None = None,
    **overrides: Any,
) -> keras.Model:
    """The model `source` describes, with its weights.

    Args:
        source: a registered preset name, a preset folder, a `kaggle://` or
            `hf://` handle, or a weights file (`weights.FORMATS`).
        expected: the caller's class. A backbone class accepts backbones
            only; a task class accepts anything (the caller puts its head on
            another model's backbone); None accepts anything.
        load_weights: None loads weights when the source has them; True
            requires them; False gives random initialization.
        weights_file: a downloaded weights file for a registered preset;
            its md5 must be the registry's.
        verify_weights_file: False accepts a `weights_file` whose md5
            differs from the registry's (a file known to differ on purpose).
        head_args: head arguments, applied when the source holds an
            `expected` task.
        **overrides: backbone config overrides (e.g. `input_shape`).

    Returns:
        A backbone or task model.

    Raises:
        PresetError: the source cannot be resolved or read, or holds a kind
            of model that `expected` cannot take.

    Example:

    ```python
    model = load_model("mobilenet_v3_small_imagenet_classifier", load_weights=False)
    type(model).__name__  # 'MobileNetV3ImageClassifier'
    ```
    """
    source = preset_io.resolve_handle(source)
    if weights_file is not None and os.path.exists(source):
        raise PresetError(
            f"`weights_file` replaces the download of a registered preset; {source!r} is a "
            f"{'folder' if os.path.isdir(source) else 'file'}, which holds its own weights."
        )
    if os.path.isdir(source):
        return load_folder(source, load_weights, expected, head_args, **overrides)
    if os.path.isfile(source):
        return _load_checkpoint(source, expected, load_weights, overrides)
    if os.sep in source or "/" in source or source.startswith((".", "~")):
        raise PresetError(
            f"No such folder or file: {source!r}. A preset is a registered name, an existing preset "
            "folder or weights file, or a 'kaggle://' / 'hf://' handle."
        )
    preset = presets.find(source, family=_family(expected))
    _check_kind(preset.task, expected, source)
    own_head_args = head_args if MODEL_CLASSES[preset.task] is expected else None
    if weights_file is not None:
        _check_weights_file(preset, load_weights, weights_file, verify_weights_file)
    backbone_cls = expected if _is_backbone_class(expected) else MODEL_CLASSES[BACKBONE]
    return _load_registered(preset, load_weights, weights_file, own_head_args or {}, overrides, backbone_cls)


def build_model(checkpoint: weights.Checkpoint, **backbone_overrides: Any) -> keras.Model:
    """The model a checkpoint describes (backbone, or a task with its head),
    with the checkpoint's weights loaded.

    Example:

    ```python
    model = build_model(weights.read("v3-small_224_1.0_float.tflite"))
    ```
    """
    model = _model_for(checkpoint, backbone_overrides)
    weights.load_into(model, checkpoint)
    return model


def _model_for(
    checkpoint: weights.Checkpoint, backbone_overrides: dict, backbone_cls: type | None = None
) -> keras.Model:
    backbone_cls = backbone_cls or MODEL_CLASSES[BACKBONE]
    config = {k: v for k, v in {**checkpoint.backbone_config, **backbone_overrides}.items() if k not in _FOREIGN_KEYS}
    model = backbone_cls(**config)
    if checkpoint.kind == BACKBONE:
        return model
    task = MODEL_CLASSES[checkpoint.kind]
    return task(model, checkpoint.num_classes, **task.head_args_from_checkpoint(checkpoint))


def build_embedder(checkpoint: weights.Checkpoint) -> keras.Model:
    """The image embedder of a graph with a `Conv_2` head and no logits.

    The model maps 0..255 RGB pixels (MediaPipe feeds [0, 1]; multiply by
    255) to the globally pooled `Conv_2` + hard-swish feature, e.g. 1024-d
    for the MediaPipe MobileNetV3-Small 0.75 embedder. Its layers are the
    backbone's plus `avg_pool`, `Conv_2`, `Conv_2_activation`, `embedding`.

    Args:
        checkpoint: a checkpoint with a `Conv_2` head (e.g.
            `weights.tflite.read` of the MediaPipe embedder).

    Example:

    ```python
    embedder = build_embedder(weights.read("mobilenet_v3_small_075_224_embedder.tflite", "tflite"))
    vectors = embedder(np.zeros((1, 224, 224, 3)))  # (1, 1024)
    ```
    """
    if checkpoint.head_filters is None:
        raise ValueError(f"{checkpoint.source} has no Conv_2 head to embed with.")
    backbone = MODEL_CLASSES[BACKBONE](**checkpoint.backbone_config)
    dtype = backbone.dtype_policy
    x = keras.layers.GlobalAveragePooling2D(keepdims=True, name="avg_pool", dtype=dtype)(backbone.output)
    x = keras.layers.Conv2D(checkpoint.head_filters, 1, name="Conv_2", dtype=dtype)(x)
    x = keras.layers.Activation(checkpoint.head_activation or "hard_swish", name="Conv_2_activation", dtype=dtype)(x)
    x = keras.layers.Flatten(name="embedding", dtype=dtype)(x)
    model = keras.Model(backbone.input, x, name="mobilenet_v3_embedder")
    weights.canonical.assign(model, checkpoint.tensors, source=checkpoint.source, allow_unused=("Logits/",))
    return model


def load_folder(
    path: str,
    load_weights: bool | None,
    expected: type | None = None,
    head_args: dict | None = None,
    **overrides: Any,
) -> keras.Model:
    """Build the model a preset folder describes and load its weights;
    `overrides` go to its backbone's config. Folders in another library's
    layout (keras-hub presets, timm Hugging Face repos) are converted on the
    fly; a backbone caller gets their backbone without the head."""
    checkpoint = preset_io.foreign_checkpoint(path)
    if checkpoint is not None:
        if _is_backbone_class(expected):
            checkpoint = dataclasses.replace(checkpoint, num_classes=None, task=None)
        return _from_checkpoint(checkpoint, path, expected, load_weights, overrides)
    spec = preset_io.read_folder(path)
    kind = _KIND_OF_CLASS_NAME.get(spec.class_name)
    if kind is None:
        raise PresetError(
            f"{spec.config_path} describes a {spec.class_name!r}; this package reads "
            f"{sorted(_KIND_OF_CLASS_NAME)}."
        )
    _check_kind(kind, expected, path)
    cls = MODEL_CLASSES[kind]
    config = {k: v for k, v in spec.config.items() if k not in _FOREIGN_KEYS}
    if kind == BACKBONE:
        config.update(overrides)
        if expected is not None and issubclass(expected, cls):
            cls = expected  # e.g. MobileNetV3LargeBackbone.from_preset(folder)
    else:
        backbone = dict(config["backbone"])
        backbone["config"] = {**backbone["config"], **overrides}
        config["backbone"] = backbone
        if expected is cls:
            config.update(head_args or {})
    model = cls.from_config(config)
    preset_io.load_folder_weights(model, spec, load_weights)
    return model


def _load_checkpoint(path: str, expected: type | None, load_weights: bool | None, overrides: dict) -> keras.Model:
    format = weights.detect_format(path)
    if format is None:
        raise PresetError(
            f"`preset` {path!r} is a file, and not a weights file of a format this package reads "
            f"({', '.join(weights.FORMATS)}); a preset is a registered name, a folder holding "
            f"{preset_io.CONFIG_FILE} and {preset_io.WEIGHTS_FILE}, or a kaggle:// / hf:// handle."
        )
    return _from_checkpoint(weights.read(path, format), path, expected, load_weights, overrides)


def _from_checkpoint(
    checkpoint: weights.Checkpoint, source: str, expected: type | None, load_weights: bool | None, overrides: dict
) -> keras.Model:
    _check_kind(checkpoint.kind, expected, source)
    backbone_cls = expected if _is_backbone_class(expected) else None
    model = _model_for(checkpoint, overrides, backbone_cls)
    if load_weights is not False:
        weights.load_into(model, checkpoint)
    return model


def _is_backbone_class(cls: type | None) -> bool:
    return cls is not None and issubclass(cls, MODEL_CLASSES[BACKBONE])


def _load_registered(
    preset: presets.Preset,
    load_weights: bool | None,
    weights_file: str | None,
    head_args: dict,
    overrides: dict,
    backbone_cls: type,
) -> keras.Model:
    if load_weights and preset.weights is None:
        with_weights = sorted(n for n, p in presets.all_presets().items() if p.weights)
        raise PresetError(
            f"Preset {preset.name!r} has no pretrained weights (load_weights=True). Presets with "
            f"weights: {with_weights}."
        )
    config = {k: v for k, v in {**preset.config, **overrides}.items() if k not in _FOREIGN_KEYS}
    model = backbone_cls(**config)  # e.g. MobileNetV3HubBackbone.from_preset(name)
    if preset.task != BACKBONE:
        model = MODEL_CLASSES[preset.task](model, **{**preset.head, **head_args})
    if preset.weights is not None and load_weights is not False:
        source = preset.weights
        path = weights_file or download.fetch(
            source.url,
            md5=source.md5,
            local_hint=f"pass it as from_preset({preset.name!r}, weights_file='/path/to/{source.filename}')",
        )
        weights.load_into(model, weights.read(path, source.format))
    return model


def _check_weights_file(preset: presets.Preset, load_weights: bool | None, path: Any, verify: bool) -> None:
    """A `weights_file=` given for a registered preset must be the file the
    registry names (its md5), unless `verify_weights_file=False`."""
    if preset.weights is None:
        raise PresetError(
            f"`weights_file` was given, but preset {preset.name!r} has no pretrained weights to "
            "replace; drop `weights_file`, or use a preset with weights."
        )
    if load_weights is False:
        raise PresetError("`weights_file` was given with load_weights=False; pass one or the other.")
    if not isinstance(path, (str, os.PathLike)) or not os.path.isfile(path):
        raise PresetError(f"`weights_file` {path!r} is not a file.")
    if not isinstance(verify, bool):
        raise TypeError(f"`verify_weights_file` must be True or False; got {verify!r}.")
    actual = download.file_hash(path, "md5")
    if verify and actual != preset.weights.md5.lower():
        raise PresetError(
            f"`weights_file` {str(path)!r} has md5 {actual}, but preset {preset.name!r} expects "
            f"{preset.weights.md5} ({preset.weights.filename}): the file is corrupted, truncated or "
            "another file. If you know it differs on purpose, pass verify_weights_file=False."
        )


def _family(expected: type | None) -> str | None:
    return getattr(expected, "_family", None)


def _kind(model: keras.Model) -> str:
    return getattr(model, "kind", BACKBONE)


def _check_kind(kind: str, expected: type | None, source: str) -> None:
    """The one error for a source whose kind the caller cannot take: a
    backbone caller takes backbones only."""
    backbone_cls = MODEL_CLASSES[BACKBONE]
    if expected is None or not issubclass(expected, backbone_cls) or kind == BACKBONE:
        return
    holder = MODEL_CLASSES[kind].__name__
    raise PresetError(
        f"{source!r} holds a {kind} ({holder}), not a {expected.__name__}: load it with "
        f"{holder}.from_preset({source!r}). Backbone presets: "
        f"{sorted(presets.backbone_presets(_family(expected)))}."
    )
