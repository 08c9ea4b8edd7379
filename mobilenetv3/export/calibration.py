"""Calibration images for int8 post-training quantization."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from mobilenetv3.core.images import IMAGE_SUFFIXES, open_rgb
from mobilenetv3.core.normalization import ImagePolicy
from mobilenetv3.presets.preprocessing import load_images as load_images_as


def load_calibration_images(
    directory: str | os.PathLike,
    size: tuple[int, int] = (224, 224),
    limit: int | None = 200,
    preprocessing: ImagePolicy | None = None,
) -> np.ndarray:
    """Read a folder of images as raw RGB pixels, float32 in 0..255.

    Every image is converted to RGB and prepared as `preprocessing` (a
    preset's image policy: resize / crop and interpolation, at `size`) says,
    or, without one, bilinearly resized to `size` (no crop), in file-name
    order. The pixels are what a MobileNetV3 model with
    `include_rescaling=True` (every preset) takes.

    Args:
        directory: a folder with .jpg/.png/.bmp/... files (not searched
            recursively).
        size: `(height, width)` to resize to.
        limit: read at most this many images (None: all).
        preprocessing: the model's image policy
            (`presets.preprocessing.preprocessing_for_model(model)`), used at
            `size` when it is square.

    Returns:
        An array `(count, height, width, 3)`.

    Example:

    ```python
    images = load_calibration_images("calibration/", size=(224, 224), limit=100)
    ```
    """
    from PIL import Image

    folder = Path(directory)
    if not folder.is_dir():
        raise ValueError(f"`calibration` must be a folder of images; {str(folder)!r} is not a folder.")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:limit]
    if not files:
        raise ValueError(
            f"`calibration` folder {str(folder)!r} has no images (looked for {', '.join(IMAGE_SUFFIXES)})."
        )
    height, width = size
    if preprocessing is not None and height == width:
        return load_images_as(files, preprocessing.resized_to(height))
    arrays = []
    for file in files:
        resized = open_rgb(file).resize((width, height), Image.BILINEAR)
        arrays.append(np.asarray(resized, dtype=np.float32))
    return np.stack(arrays)


def check_calibration(calibration: Any, size: tuple[int, int] | None = None) -> np.ndarray:
    """`calibration` as float32 images `(N, height, width, 3)`, at `size`
    `(height, width)` when given; a ValueError naming what is wrong."""
    if calibration is None:
        raise ValueError("`calibration` is required for int8: pass images (N, height, width, 3), "
                         "e.g. `mobilenetv3.export.load_images(folder)`.")
    images = np.asarray(calibration, dtype=np.float32)
    if images.ndim != 4 or images.shape[0] < 1 or images.shape[-1] != 3:
        raise ValueError(f"`calibration` must be images (N, height, width, 3); got shape {images.shape}.")
    if size is not None and tuple(images.shape[1:3]) != tuple(size):
        raise ValueError(f"`calibration` images must be {size[0]}x{size[1]}, the export's input size; "
                         f"got {images.shape[1]}x{images.shape[2]}.")
    return images


# The name this function had first (README, user code).
load_images = load_calibration_images
