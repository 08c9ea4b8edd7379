"""The one image reader: every mode Pillow opens, as 0..255 RGB.

Every command and loader of the package reads image files here (Pillow and
numpy only). `open_rgb` returns an 8-bit RGB Pillow image, `read_rgb` its
array `(height, width, 3)` uint8. The rules, per Pillow mode:

| mode | becomes |
|---|---|
| `RGB`, `L`, `1`, `P`, `CMYK`, `YCbCr`, ... | Pillow's own conversion to RGB |
| with alpha (`RGBA`, `LA`, `PA`, `P` with transparency, ...) | alpha dropped, colour kept (as `keras.utils.load_img` and torchvision do) |
| `I;16*` (16-bit) | scaled 0..65535 -> 0..255 (divided by 257, rounded) |
| `I` (32-bit int) | taken as 16-bit (0..65535, scaled the same); other values are refused |
| `F` (32-bit float) | taken as 0..1 (scaled by 255); other values or NaN are refused |

EXIF orientation is applied (`ImageOps.exif_transpose`). Images with more
than `MAX_PIXELS` pixels (decompression bombs among them) are refused
before they are decoded, and so are unreadable, truncated or non-image
files: always an `ImageError` (a `ValueError`) naming the file.

Example:

```python
from mobilenetv3.core import images
pixels = images.read_rgb("cat.png")  # uint8 (height, width, 3)
```
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np

# Largest image (width x height) any command decodes: Pillow's own
# decompression-bomb warning threshold (about 9459 x 9459).
MAX_PIXELS = 89_478_485
# Largest image processed whole, at full resolution (`segment`): 4096 x 4096.
WHOLE_IMAGE_MAX_PIXELS = 4096 * 4096
# Largest model input side images are resized to (`predict`, presets).
MAX_INPUT_SIDE = 4096
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")

# Smallest side, in pixels, of an image the training-set readers keep: a
# 1x1 placeholder or tracking pixel holds no picture, and squashed to the
# input size it would teach a flat colour as its class.
MIN_TRAINING_SIDE = 8
# Skipped files a `SkippedImagesWarning` lists one per line (then a count).
MAX_LISTED_SKIPS = 20

_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")
_WITH_ALPHA = ("RGBA", "RGBa", "LA", "La", "PA")


class ImageError(ValueError):
    """An image file cannot be read, or is too large to read."""


class SkippedImagesWarning(UserWarning):
    """Image files a training-set reader skipped (unreadable, or too small)."""


def open_rgb(path: str | os.PathLike, max_pixels: int = MAX_PIXELS) -> Any:
    """An image file as a loaded 8-bit RGB `PIL.Image`, EXIF orientation
    applied (see the module docstring for every mode's rule).

    Args:
        path: the image file.
        max_pixels: refuse images with more pixels than this.

    Raises:
        ImageError: not an image, truncated, an unsupported mode or range,
            or more than `max_pixels` pixels.

    Example:

    ```python
    image = open_rgb("cat.jpg")
    image.mode  # 'RGB'
    ```
    """
    from PIL import Image, ImageOps

    if isinstance(path, (str, os.PathLike)) and os.path.isfile(path) and os.path.getsize(path) == 0:
        raise ImageError(f"Cannot read image {path}: the file is empty (0 bytes).")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # checked below
            with Image.open(path) as opened:
                _check_size(opened.size, max_pixels, path)
                opened.load()
                image = ImageOps.exif_transpose(opened)
                return to_rgb(image, path)
    except ImageError:
        raise
    except Image.DecompressionBombError as error:
        raise ImageError(
            f"Cannot read image {path}: {error} More than the {max_pixels} pixels allowed; resize it first."
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError) as error:
        # UnidentifiedImageError and "image file is truncated" are OSErrors.
        raise ImageError(f"Cannot read image {path}: {error or type(error).__name__}") from None


def read_rgb(path: str | os.PathLike, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """An image file as uint8 RGB `(height, width, 3)`; see `open_rgb`.

    Example:

    ```python
    read_rgb("cat.jpg").dtype  # uint8
    ```
    """
    return np.asarray(open_rgb(path, max_pixels))


def open_training_image(path: str | os.PathLike, min_side: int = MIN_TRAINING_SIDE) -> Any:
    """`open_rgb`, also refusing images with a side under `min_side` pixels
    (an `ImageError` naming the file): what the training-set readers keep.

    Example:

    ```python
    image = open_training_image("cat.jpg")
    ```
    """
    image = open_rgb(path)
    if min(image.size) < min_side:
        raise ImageError(
            f"Cannot train on image {path}: it is {image.width}x{image.height} pixels, under {min_side} on a side "
            "(a placeholder or thumbnail holds no picture to learn)."
        )
    return image


def warn_skipped(skipped: list[str], folder: Any, max_listed: int = MAX_LISTED_SKIPS) -> None:
    """One `SkippedImagesWarning` listing each skipped file's reason on its
    own line (the first `max_listed`, then how many more); nothing when
    `skipped` is empty.

    Example:

    ```python
    warn_skipped(["Cannot read image data/cat/0001.png: truncated"], "data")
    ```
    """
    if not skipped:
        return
    lines = [f"  {reason}" for reason in skipped[:max_listed]]
    if len(skipped) > max_listed:
        lines.append(f"  ... and {len(skipped) - max_listed} more")
    warnings.warn(
        f"Skipped {len(skipped)} image file(s) of {folder} (training goes on without them):\n" + "\n".join(lines),
        SkippedImagesWarning,
        stacklevel=3,
    )


def to_rgb(image: Any, source: Any = "image") -> Any:
    """An opened `PIL.Image` of any mode as 8-bit RGB (the module's rules)."""
    from PIL import Image

    if image.mode == "RGB":
        return image.copy()
    if image.mode in _SIXTEEN_BIT or image.mode in ("I", "F"):
        return Image.fromarray(_to_uint8(image, source)).convert("RGB")
    if image.mode in _WITH_ALPHA or (image.mode == "P" and "transparency" in image.info):
        image = image.convert("RGBA")
    try:
        return image.convert("RGB")
    except ValueError as error:
        raise ImageError(f"Cannot read image {source}: mode {image.mode!r} cannot be converted to RGB ({error}).") from None


def _to_uint8(image: Any, source: Any) -> np.ndarray:
    values = np.asarray(image).astype("float64")
    if image.mode == "F":
        if not np.isfinite(values).all() or values.min() < 0 or values.max() > 1:
            raise ImageError(
                f"Cannot read image {source}: a float image must hold values in [0, 1]; it holds "
                f"{values.min():.4g}..{values.max():.4g}. Save it as 8 or 16 bits."
            )
        return np.round(values * 255).astype("uint8")
    if values.min() < 0 or values.max() > 65535:
        raise ImageError(
            f"Cannot read image {source}: a 32-bit integer image is read as 16-bit (0..65535); it "
            f"holds {values.min():.0f}..{values.max():.0f}. Save it as 8 or 16 bits."
        )
    return np.round(values / 257).astype("uint8")


def _check_size(size: tuple[int, int], max_pixels: int, path: Any) -> None:
    width, height = size
    if width * height > max_pixels:
        raise ImageError(
            f"Cannot read image {path}: {width}x{height} is {width * height} pixels, more than the "
            f"{max_pixels} allowed (a decompression bomb, or too large to process); resize it first."
        )


def check_input_side(size: int, what: str = "the model's input size") -> int:
    """`size` if an image side of that many pixels is within `MAX_INPUT_SIDE`."""
    if size > MAX_INPUT_SIDE:
        raise ImageError(
            f"{what} is {size} pixels, more than the {MAX_INPUT_SIDE} allowed; images are not "
            "upscaled to it. Rebuild the model with a smaller input_shape."
        )
    return size


__all__ = ["IMAGE_SUFFIXES", "MAX_INPUT_SIDE", "MAX_LISTED_SKIPS", "MAX_PIXELS", "MIN_TRAINING_SIDE",
           "WHOLE_IMAGE_MAX_PIXELS", "ImageError", "SkippedImagesWarning", "check_input_side", "open_rgb",
           "open_training_image", "read_rgb", "to_rgb", "warn_skipped"]
