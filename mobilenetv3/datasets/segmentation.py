"""A generated semantic-segmentation dataset, and mean IoU.

`synthetic_segmentation` draws circles, squares and triangles (classes 1, 2,
3; background is 0) on textured, noisy grey-ish backgrounds, with a
pixel-exact mask. Each class has a colour family (reddish, greenish, bluish,
with strong jitter and shading), so a small network learns it from scratch
in minutes; what it must still get right is where each shape's pixels are. It is deterministic for a given seed, needs no download,
and is small enough to train a segmenter on a CPU in minutes, which makes it
a test that a segmentation head really learns.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mobilenetv3.core.utils import check_positive_int
from mobilenetv3.core.validation import check_class_labels

SEGMENTATION_CLASSES = ("background", "circle", "square", "triangle")
_CLASS_COLORS = {1: (215, 60, 60), 2: (60, 200, 70), 3: (60, 80, 220)}


def synthetic_segmentation(
    num_images: int = 300,
    size: int = 96,
    seed: int = 0,
    max_shapes: int = 3,
) -> tuple[np.ndarray, np.ndarray]:
    """Images of shapes on textured backgrounds and their class masks.

    Args:
        num_images: how many images.
        size: height and width in pixels (at least 32).
        seed: the random seed; the same arguments give the same arrays.
        max_shapes: at most this many shapes per image (at least one).

    Returns:
        `(images, masks)`: float32 `(num_images, size, size, 3)` in 0..255,
        and int32 `(num_images, size, size)` with values indexing
        `SEGMENTATION_CLASSES`.

    Example:

    ```python
    images, masks = synthetic_segmentation(num_images=8, size=64)
    images.shape, masks.shape  # ((8, 64, 64, 3), (8, 64, 64))
    ```
    """
    for argument, value, minimum in (("num_images", num_images, 1), ("size", size, 32), ("max_shapes", max_shapes, 1)):
        check_positive_int(argument, value, minimum)
    rng = np.random.default_rng(seed)
    images = np.empty((num_images, size, size, 3), "float32")
    masks = np.empty((num_images, size, size), "int32")
    for index in range(num_images):
        images[index], masks[index] = _one_image(rng, size, max_shapes)
    return images, masks


def _one_image(rng: np.random.Generator, size: int, max_shapes: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:size, 0:size].astype("float32")
    image = _background(rng, yy, xx, size)
    mask = np.zeros((size, size), "int32")
    for _ in range(int(rng.integers(1, max_shapes + 1))):
        label = int(rng.integers(1, len(SEGMENTATION_CLASSES)))
        inside = _shape(label, rng, yy, xx, size)
        color = np.array(_CLASS_COLORS[label]) + rng.uniform(-45, 45, 3)
        shading = rng.normal(0, 12, (size, size, 1))
        image = np.where(inside[..., None], color + shading, image)
        mask[inside] = label
    return np.clip(image, 0, 255), mask


def _background(rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray, size: int) -> np.ndarray:
    """A colour gradient, sinusoidal stripes and pixel noise."""
    base = rng.uniform(60, 190) + rng.uniform(-20, 20, 3)
    gradient = rng.normal(0, 0.6, (2, 3))
    image = base + yy[..., None] * gradient[0] + xx[..., None] * gradient[1]
    angle, period = rng.uniform(0, np.pi), rng.uniform(4, 16)
    stripes = np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period)
    image = image + stripes[..., None] * rng.uniform(5, 30, 3)
    return image + rng.normal(0, 10, (size, size, 3))


def _shape(label: int, rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray, size: int) -> np.ndarray:
    radius = rng.uniform(0.14, 0.28) * size
    cy, cx = rng.uniform(radius, size - radius, 2)
    if label == 1:
        return (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2
    if label == 2:
        return (np.abs(yy - cy) <= radius * 0.9) & (np.abs(xx - cx) <= radius * 0.9)
    # An upright triangle: below the two slanted edges, above the base.
    top, bottom = cy - radius, cy + radius * 0.8
    half_width = (yy - top) / (bottom - top) * radius * 1.1
    return (yy >= top) & (yy <= bottom) & (np.abs(xx - cx) <= half_width)


def check_masks(
    image_shape: tuple[int, ...],
    masks: Any,
    num_classes: int,
    ignore_index: int | None = None,
    source: str = "`y`",
) -> None:
    """Check segmentation training masks against their images; a ValueError
    naming `source` and the first problem.

    `masks` must be `(batch, height, width)` or `(batch, height, width, 1)`
    for images of `image_shape` `(batch, height, width, channels)`, and hold
    whole-number class indices in `[0, num_classes)` or `ignore_index`
    (see `validation.check_class_labels`). One vectorized pass on the host.

    Args:
        image_shape: the images' shape.
        masks: the masks, an array.
        num_classes: the segmenter's class count (background included).
        ignore_index: the loss's ignored label (e.g. 255), or None.
        source: what the masks are, for the message.

    Example:

    ```python
    images, masks = synthetic_segmentation(num_images=2, size=32)
    check_masks(images.shape, masks, len(SEGMENTATION_CLASSES))
    ```
    """
    masks = np.asarray(masks)
    expected = tuple(int(s) for s in image_shape[:3])
    if len(image_shape) != 4 or masks.shape not in (expected, (*expected, 1)):
        raise ValueError(
            f"{source} must be masks of shape (batch, height, width) matching the images {tuple(image_shape)}, "
            f"i.e. {expected}; got {masks.shape}."
        )
    check_class_labels(masks, num_classes, ignore_index=ignore_index, source=source, axes=("mask", "row", "column"))


def mean_iou(
    y_true: np.ndarray, y_pred: np.ndarray, num_classes: int, ignore_background: bool = False
) -> float:
    """Mean intersection-over-union over classes present in either array.

    Args:
        y_true: integer class masks.
        y_pred: integer class masks of the same shape (e.g. an argmax).
        num_classes: number of classes.
        ignore_background: leave class 0 out of the mean (the all-background
            answer then scores 0).

    Example:

    ```python
    mean_iou(np.array([0, 1, 1]), np.array([0, 1, 0]), num_classes=2)  # 0.5
    ```
    """
    y_true, y_pred = np.asarray(y_true).ravel(), np.asarray(y_pred).ravel()
    ious = []
    for label in range(1 if ignore_background else 0, num_classes):
        true, pred = y_true == label, y_pred == label
        union = np.count_nonzero(true | pred)
        if union:
            ious.append(np.count_nonzero(true & pred) / union)
    return float(np.mean(ious)) if ious else 0.0
