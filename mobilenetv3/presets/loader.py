"""The one model factory: a source in, the right model class out.

`load_model` is what every entry point calls (`from_preset` of the backbone
and of every task, the converter, `export`, `predict`, `segment`, `train`,
the benchmark). A source is a registered preset name, a preset folder
(ours or keras-cv's), a `kaggle://` / `hf://` handle, or a weights file of a
supported format (`mobilenetv3.weights.FORMATS`). `build_model` turns a
`weights.Checkpoint` into its model.

The classes are found by kind ("backbone", "classifier", "segmenter", ...)
in `MODEL_CLASSES`, an explicit table of import paths resolved on first
use; so this module sits below the backbone and the tasks and imports
neither, and no caller has to import a model module first.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from typing import Any

import keras

from mobilenetv3 import presets, weights
from mobilenetv3.core import decode
from mobilenetv3.core.normalization import ImagePolicy
from mobilenetv3.presets import folders
from mobilenetv3.presets.folders import PresetError
from mobilenetv3.weights import download

BACKBONE = "backbone"
QAT = "qat"  # a quantization-aware twin (its config holds its float model's)

# The one table of model classes: kind -> "module:Class". It is data, read
# when a kind is first asked for (`model_class`), so loading works whatever
# the caller imported before, and this module needs no import of the classes
# (they sit above it and call it from `from_preset`). A new task is one row.
MODEL_CLASSES: dict[str, str | type] = {
    BACKBONE: "mobilenetv3.nets.backbone:MobileNetV3Backbone",
    "classifier": "mobilenetv3.tasks.classifier:MobileNetV3ImageClassifier",
    "segmenter": "mobilenetv3.tasks.segmenter:MobileNetV3ImageSegmenter",
    "detector": "mobilenetv3.tasks.detector:MobileNetV3ObjectDetector",
    QAT: "mobilenetv3.quantization.twin:QATModel",
}
# Serialized class names (a folder config's `registered_name`) of other
# libraries that mean one of our kinds (keras-cv / keras-hub's classifier).
FOREIGN_CLASS_NAMES = {"ImageClassifier": "classifier"}

# `load_model` keywords that `from_preset` passes on besides head and backbone arguments.
LOAD_KEYWORDS = ("weights_file", "verify_weights_file")

# keras-cv config keys with no meaning here.
_FOREIGN_KEYS = ("input_tensor",)


def model_class(kind: str) -> type:
    """The class `MODEL_CLASSES` names for `kind`.

    Example:

    ```python
    model_class("classifier").__name__  # 'MobileNetV3ImageClassifier'
    ```
    """
    if kind not in MODEL_CLASSES:
        raise PresetError(f"Unknown model kind {kind!r}; this package builds {sorted(MODEL_CLASSES)}.")
    entry = MODEL_CLASSES[kind]
    if isinstance(entry, type):
        return entry
    module, _, name = entry.partition(":")
    return getattr(importlib.import_module(module), name)


def import_model_classes() -> None:
    """Import every class of `MODEL_CLASSES`, so that Keras can deserialize
    a config naming any of them (a quantization-aware twin's float model).

    Example:

    ```python
    import_model_classes()
    twin = keras.saving.load_model("twin.keras")
    ```
    """
    for kind in MODEL_CLASSES:
        model_class(kind)


def kind_of_class_name(class_name: str) -> str | None:
    """The kind whose class serializes as `class_name`, or None."""
    for kind, entry in MODEL_CLASSES.items():
        name = entry.__name__ if isinstance(entry, type) else entry.rpartition(":")[2]
        if name == class_name:
            return kind
    return FOREIGN_CLASS_NAMES.get(class_name)


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
    source = folders.resolve_handle(source)
    if weights_file is not None and os.path.exists(source):
        raise PresetError(
            f"`weights_file` replaces the download of a registered preset; {source!r} is a "
            f"{'folder' if os.path.isdir(source) else 'file'}, which holds its own weights."
        )
    if os.path.exists(source):
        return _load_local(source, expected, load_weights, head_args, overrides)
    if os.sep in source or "/" in source or source.startswith((".", "~")):
        raise PresetError(
            f"No such folder or file: {source!r}. A preset is a registered name, an existing preset "
            "folder or weights file, or a 'kaggle://' / 'hf://' handle."
        )
    preset = presets.find(source, family=_family(expected))
    _check_kind(preset.task, expected, source)
    own_head_args = head_args if model_class(preset.task) is expected else None
    if weights_file is not None:
        _check_weights_file(preset, load_weights, weights_file, verify_weights_file)
    backbone_cls = expected if _is_backbone_class(expected) else model_class(BACKBONE)
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
    return _with_preprocessor(model, checkpoint.preprocessing, default_class_names(model))


def _model_for(
    checkpoint: weights.Checkpoint,
    backbone_overrides: dict,
    backbone_cls: type | None = None,
    head_args: dict | None = None,
) -> keras.Model:
    backbone_cls = backbone_cls or model_class(BACKBONE)
    config = {k: v for k, v in {**checkpoint.backbone_config, **backbone_overrides}.items() if k not in _FOREIGN_KEYS}
    model = backbone_cls(**config)
    if checkpoint.kind == BACKBONE:
        return model
    task = model_class(checkpoint.kind)
    return task(model, checkpoint.num_classes, **{**task.head_args_from_checkpoint(checkpoint), **(head_args or {})})


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
    backbone = model_class(BACKBONE)(**checkpoint.backbone_config)
    dtype = backbone.dtype_policy
    x = keras.layers.GlobalAveragePooling2D(keepdims=True, name="avg_pool", dtype=dtype)(backbone.output)
    x = keras.layers.Conv2D(checkpoint.head_filters, 1, name="Conv_2", dtype=dtype)(x)
    x = keras.layers.Activation(checkpoint.head_activation or "hard_swish", name="Conv_2_activation", dtype=dtype)(x)
    x = keras.layers.Flatten(name="embedding", dtype=dtype)(x)
    model = keras.Model(backbone.input, x, name="mobilenet_v3_embedder")
    weights.canonical.assign(model, checkpoint.tensors, source=checkpoint.source, allow_unused=("Logits/",))
    return model


def _load_local(
    source: str, expected: type | None, load_weights: bool | None, head_args: dict | None, overrides: dict
) -> keras.Model:
    """A local folder or file, by what `folders.identify` finds in it."""
    found = folders.identify(source)
    if os.path.isdir(source):
        if found is None or found == folders.PRESET_FOLDER:
            return _load_preset_folder(source, load_weights, expected, head_args, overrides)
        checkpoint = weights.read(source, found)
        if _is_backbone_class(expected):  # a backbone caller takes another library's model without its head
            checkpoint = dataclasses.replace(checkpoint, num_classes=None, task=None)
        return _from_checkpoint(checkpoint, source, expected, load_weights, overrides, head_args)
    if found is None or found == folders.PRESET_FOLDER:
        raise PresetError(
            f"`preset` {source!r} is a file, and not a weights file of a format this package reads "
            f"({', '.join(weights.FORMATS)}); a preset is a registered name, a folder holding "
            f"{folders.CONFIG_FILE} and {folders.WEIGHTS_FILE}, or a kaggle:// / hf:// handle."
        )
    return _from_checkpoint(weights.read(source, found), source, expected, load_weights, overrides, head_args)


def _load_preset_folder(
    path: str, load_weights: bool | None, expected: type | None, head_args: dict | None, overrides: dict
) -> keras.Model:
    """Build the model a preset folder's config describes and load its
    weights; `overrides` go to its backbone's config."""
    spec = folders.read_folder(path)
    kind = kind_of_class_name(spec.class_name)
    if kind is None:
        raise PresetError(
            f"{spec.config_path} describes a {spec.class_name!r}; this package reads "
            f"{sorted(model_class(k).__name__ for k in MODEL_CLASSES)}."
        )
    _check_kind(kind, expected, path)
    cls = model_class(kind)
    config = {k: v for k, v in spec.config.items() if k not in _FOREIGN_KEYS}
    if kind == QAT:
        import_model_classes()  # the float model its config holds
        if overrides or head_args:
            raise PresetError(f"{path} holds a quantization-aware model, whose architecture is fixed; it takes no "
                              f"backbone or head arguments (got {sorted({**overrides, **(head_args or {})})}).")
    elif kind == BACKBONE:
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
    folders.load_folder_weights(model, spec, load_weights)
    return _with_preprocessor(model, folders.read_preprocessing(path), folders.read_class_names(path))


def _from_checkpoint(
    checkpoint: weights.Checkpoint,
    source: str,
    expected: type | None,
    load_weights: bool | None,
    overrides: dict,
    head_args: dict | None = None,
) -> keras.Model:
    _check_kind(checkpoint.kind, expected, source)
    backbone_cls = expected if _is_backbone_class(expected) else None
    own_head_args = head_args if checkpoint.kind != BACKBONE and model_class(checkpoint.kind) is expected else None
    model = _model_for(checkpoint, overrides, backbone_cls, own_head_args)
    if load_weights is not False:
        weights.load_into(model, checkpoint)
    return _with_preprocessor(model, checkpoint.preprocessing, default_class_names(model))


def _is_backbone_class(cls: type | None) -> bool:
    return cls is not None and issubclass(cls, model_class(BACKBONE))


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
        model = model_class(preset.task)(model, **{**preset.head, **head_args})
    if preset.weights is not None and load_weights is not False:
        source = preset.weights
        path = weights_file or download.fetch(
            source.url,
            md5=source.md5,
            local_hint=f"pass it as from_preset({preset.name!r}, weights_file='/path/to/{source.filename}')",
        )
        weights.load_into(model, weights.read(path, source.format))
    return _with_preprocessor(model, preset.image_preprocessing, None)


def _with_preprocessor(model: keras.Model, policy: ImagePolicy | None, class_names: list[str] | None) -> keras.Model:
    """Attach what the preset says about the model's inputs and outputs:
    the backbone's `image_policy` (kept when a new head is put on it) and
    the model's `class_names`; `save_preset` writes both back."""
    backbone = getattr(model, "backbone", model)
    backbone.image_policy = policy or ImagePolicy.of_model(model, recorded=False)
    if class_names is not None and getattr(model, "num_classes", None) == len(class_names):
        model.class_names = list(class_names)
    return model


def default_class_names(model: keras.Model) -> list[str] | None:
    """The class names a model from a weights file comes with: torchvision's
    91 COCO categories for a 91-class detector (its COCO release's layout),
    else None.

    Example:

    ```python
    default_class_names(load_model("ssdlite320_mobilenet_v3_large_coco-a79551df.pth"))[1]  # 'person'
    ```
    """
    if getattr(model, "kind", None) == "detector" and model.num_classes == decode.NUM_COCO_CATEGORIES:
        return list(decode.coco_category_names())
    return None


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


def task_kind(model: Any) -> str:
    """The task `model` performs: its `kind` ("backbone", "classifier",
    ...); for a quantization-aware twin (kind "qat"), its float model's
    (a twin of a plain functional model: "qat").

    Example:

    ```python
    task_kind(quantize_aware(classifier))  # 'classifier'
    ```
    """
    kind = _kind(model)
    return (getattr(model, "task_kind", None) or kind) if kind == QAT else kind


def _check_kind(kind: str, expected: type | None, source: str) -> None:
    """The one error for a source whose kind the caller cannot take: a
    backbone caller takes backbones only."""
    backbone_cls = model_class(BACKBONE)
    if expected is None or not issubclass(expected, backbone_cls) or kind == BACKBONE:
        return
    holder = model_class(kind).__name__
    raise PresetError(
        f"{source!r} holds a {kind} ({holder}), not a {expected.__name__}: load it with "
        f"{holder}.from_preset({source!r}). Backbone presets: "
        f"{sorted(presets.backbone_presets(_family(expected)))}."
    )
