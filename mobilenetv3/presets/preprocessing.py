"""Loading images the way a preset's weights expect them.

Each weights preset records a `normalization.ImagePolicy`: the pixel
scaling (done inside the model when `include_rescaling=True`) and how images
are resized or cropped to the input size (done here, with PIL). Images come
out as float32 RGB in 0..255, ready for a model that rescales itself.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mobilenetv3 import presets
from mobilenetv3.core.normalization import PREPROCESSING_MODES, ImagePolicy, scale_and_offset
from mobilenetv3.presets import folders


def preprocessing_for(preset: str | os.PathLike) -> ImagePolicy:
    """The image policy of a registered preset name or a local preset folder
    (its `preprocessor.json`; see `folders.read_preprocessing`).

    Example:

    ```python
    preprocessing_for("mobilenet_v3_large_imagenet_classifier").mode  # 'symmetric'
    ```
    """
    name = str(preset)
    registered = presets.all_presets()
    if name in registered:
        return registered[name].image_preprocessing
    if not (Path(name) / folders.CONFIG_FILE).is_file():
        raise ValueError(
            f"`preset` must be a registered preset name or a preset folder; got {name!r}. "
            f"Registered: {sorted(registered)}."
        )
    return folders.read_preprocessing(name)


def preprocessing_for_model(model: Any) -> ImagePolicy:
    """The image policy of a loaded model: the one its preset recorded
    (see `ImagePolicy.of_model`), else the one its backbone implies."""
    return ImagePolicy.of_model(model)


def load_image(path: str | os.PathLike, preprocessing: ImagePolicy | str) -> np.ndarray:
    """An image file as float32 RGB `(size, size, 3)` in 0..255, resized and
    cropped by `preprocessing` (a `ImagePolicy` or a preset name/folder).

    Files are read by `mobilenetv3.core.images.open_rgb` (every Pillow mode,
    EXIF orientation; bad files raise `ImageError` naming them). A policy
    size above `images.MAX_INPUT_SIDE` (4096) is refused, not upscaled to.

    Example:

    ```python
    image = load_image("cat.jpg", "mobilenet_v3_small_imagenet_classifier")
    image.shape  # (224, 224, 3)
    ```
    """
    from mobilenetv3.core import images

    policy = preprocessing if isinstance(preprocessing, ImagePolicy) else preprocessing_for(preprocessing)
    images.check_input_side(max(policy.image_size, policy.resize_size or 0), "The preset's image size")
    return apply_policy(images.open_rgb(path), policy)  # every mode as 8-bit RGB, EXIF orientation applied


def apply_policy(image: Any, policy: ImagePolicy) -> np.ndarray:
    """An opened RGB PIL image resized and cropped as `policy` says, as
    float32 `(size, size, 3)` in 0..255 (`load_image` without the reading).

    Example:

    ```python
    from PIL import Image

    apply_policy(Image.new("RGB", (300, 200)), ImagePolicy("torch", 224)).shape  # (224, 224, 3)
    ```
    """
    resample = _resample(policy.interpolation)
    if policy.resize == "center_crop":
        image = _center_crop(_resize_shorter(image, policy.resize_size, resample), policy.image_size)
    else:
        image = image.resize((policy.image_size, policy.image_size), resample)
    return np.asarray(image, dtype="float32")


def load_images(paths: Sequence[str | os.PathLike], preprocessing: ImagePolicy | str) -> np.ndarray:
    """Several images as one float32 batch `(n, size, size, 3)` in 0..255."""
    return np.stack([load_image(path, preprocessing) for path in paths])


def rescale(images: np.ndarray, mode: str) -> np.ndarray:
    """Apply a backbone `preprocessing` mode's scaling to 0..255 images, for
    models built with `include_rescaling=False`."""
    if mode not in PREPROCESSING_MODES:
        raise ValueError(f"`mode` must be one of {list(PREPROCESSING_MODES)}; got {mode!r}.")
    scale, offset = scale_and_offset(mode)
    return (images * np.asarray(scale, "float32") + np.asarray(offset, "float32")).astype("float32")


def _resample(name: str) -> Any:
    from PIL import Image

    filters = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST}
    if name not in filters:
        raise ValueError(f"`interpolation` must be one of {sorted(filters)}; got {name!r}.")
    return filters[name]


def _resize_shorter(image: Any, size: int, resample: Any) -> Any:
    """The shorter side to `size`, the longer scaled and truncated, as
    torchvision's `Resize(size)` (and so timm's eval transform) does."""
    width, height = image.size
    if width <= height:
        return image.resize((size, int(size * height / width)), resample)
    return image.resize((int(size * width / height), size), resample)


def _center_crop(image: Any, size: int) -> Any:
    """The central `size` square, offsets rounded as torchvision's `center_crop`."""
    width, height = image.size
    left, top = int(round((width - size) / 2.0)), int(round((height - size) / 2.0))
    return image.crop((left, top, left + size, top + size))
