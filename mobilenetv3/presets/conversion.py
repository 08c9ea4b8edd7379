"""Convert a weights file from any supported source into a preset folder
(`mobilenetv3 convert`).

`convert` detects the source format (each `FORMATS` module's `detect`, plus
keras-cv preset folders), reads the file into a `Checkpoint`, builds the
model it describes and writes a preset folder that `from_preset` loads.
Everything that can fail (reading, architecture inference, loading every
tensor) happens before anything is written, and the folder itself is
written atomically, so a failed conversion leaves no output behind.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras

from mobilenetv3 import weights
from mobilenetv3.presets import folders, loader

KERAS_CV = folders.PRESET_FOLDER
AUTO = "auto"


def source_formats() -> list[str]:
    """Every format `convert` accepts for `format=`."""
    return [AUTO, *weights.FORMATS, KERAS_CV]


def convert(
    source: str | os.PathLike,
    output_dir: str | os.PathLike,
    format: str = AUTO,
    overwrite: bool = False,
    report: Callable[[dict[str, Any]], None] | None = None,
    **options: Any,
) -> keras.Model:
    """Convert a weights file into a preset folder and return the model.

    Args:
        source: a weights file (keras.applications `.h5`, torchvision or
            timm `.pth`/`.safetensors`, TF-slim/MediaPipe `.tflite`), a
            timm Hugging Face folder or `hf://timm/<model>` handle, or a
            keras-cv preset folder (`config.json` + `model.weights.h5`).
        output_dir: the preset folder to write.
        format: "auto" (detect) or one of `source_formats()`.
        overwrite: replace `output_dir` when it exists and is not empty.
        report: called with the summary of what was found (format, family,
            width, head, class names, origin) before the folder is written;
            `mobilenetv3 convert` prints it.
        **options: passed to the format's reader, e.g. `variant=` or
            `tf_padding=` for timm.

    Returns:
        The converted backbone or classifier (what `from_preset(output_dir)`
        gives back).

    Raises:
        ValueError: unknown format, undetectable or unreadable source, or an
            existing non-empty `output_dir` without `overwrite`.

    Example:

    ```python
    from mobilenetv3.presets.conversion import convert

    model = convert("tf_mobilenetv3_large_100.safetensors", "my_preset")
    same = mobilenetv3.MobileNetV3ImageClassifier.from_preset("my_preset")
    ```
    """
    source, output = str(source), Path(output_dir)
    check_output(output, overwrite)
    model, summary = load(source, format, **options)
    names = getattr(model, "class_names", None)
    if report is not None:
        report({**summary, "class_names": names})
    folders.save_preset(model, output, class_names=names, origin=summary["origin"])
    return model


def load(source: str, format: str = AUTO, **options: Any) -> tuple[keras.Model, dict[str, Any]]:
    """The model a source describes, and a summary of what was found."""
    format = resolve_format(source, format)
    if format == KERAS_CV:
        model = loader.load_model(_keras_cv_folder(source), load_weights=True)
        return model, {**summarize(model, format), "origin": origin(source, format)}
    checkpoint = weights.read(source, format, **options)
    model = loader.build_model(checkpoint)
    return model, {**summarize(model, format), "origin": origin(source, format, checkpoint.metadata)}


def origin(source: str, format: str, found: dict[str, Any] | None = None) -> dict[str, Any]:
    """Where converted weights came from (source library, file, tag, ...),
    recorded in the preset's metadata.json as "origin"."""
    return {"source": format, "file": Path(source.rstrip("/")).name, **(found or {})}


def resolve_format(source: str, format: str = AUTO) -> str:
    """`format`, checked, or the detected format of `source` for "auto"."""
    if format not in source_formats():
        raise ValueError(f"`format` must be one of {source_formats()}; got {format!r}.")
    if not source.startswith("hf://") and not os.path.exists(source):
        raise ValueError(f"Source {source!r} does not exist.")
    if format != AUTO:
        return format
    detected = folders.identify(source) if not source.startswith("hf://") else weights.detect_format(source)
    if detected is not None:
        return detected
    if source.endswith(".weights.h5"):
        raise ValueError(
            f"{source!r} is a Keras `.weights.h5` file without the config.json of its preset "
            "folder beside it: it holds no architecture. Convert the whole keras-cv preset folder "
            "(config.json + model.weights.h5; `format='keras-cv'`, CLI --from keras-cv)."
        )
    raise ValueError(
        f"Could not recognise {source!r} as any supported MobileNetV3 weights format "
        f"({', '.join(source_formats()[1:])}); it may be truncated or corrupted, or of another "
        "network. Pass the format explicitly to see the reader's own error."
    )


def summarize(model: keras.Model, format: str) -> dict[str, Any]:
    """What a converted model is: family, width, conventions, head."""
    backbone = getattr(model, "backbone", model)
    blocks = len(backbone.stackwise_filters)
    minimal = backbone.stem_activation == "relu"
    head = "none (backbone)"
    if getattr(model, "num_classes", None):
        head = f"{getattr(model, 'head', type(model).__name__)}, {model.num_classes} classes"
    return {
        "format": format,
        "family": {11: "small", 15: "large"}.get(blocks, f"{blocks} blocks"),
        "alpha": backbone.alpha,
        "variant": "minimalistic" if minimal else "standard",
        "padding": backbone.padding,
        "bn_epsilon": backbone.bn_epsilon,
        "preprocessing": backbone.preprocessing,
        "head": head,
        "parameters": model.count_params(),
        "model": type(model).__name__,
    }


def check_output(output: Path, overwrite: bool) -> None:
    if output.exists() and not output.is_dir():
        raise ValueError(f"Output {output} exists and is not a folder.")
    if output.is_dir() and any(output.iterdir()) and not overwrite:
        raise ValueError(f"Output folder {output} exists and is not empty; pass overwrite=True (--overwrite).")


def _keras_cv_folder(source: str) -> str:
    path = Path(source)
    return str(path.parent if path.is_file() else path)
