"""A generated object-detection dataset: shapes on textured backgrounds,
with boxes in keras-hub's padded convention.

The images are those of `segmentation` (same backgrounds, shapes and colour
families: circles, squares and triangles) and each shape's box is the exact
extent of its pixels; a shape drawn later may cover part of an earlier one,
whose box stays the whole shape (as COCO's boxes of occluded objects).
"""

from __future__ import annotations

import numpy as np

from mobilenetv3.datasets.segmentation import _CLASS_COLORS, _background, _shape

# Index 0 is the background (torchvision's and the detector's convention).
DETECTION_CLASSES = ("background", "circle", "square", "triangle")


def synthetic_detection(
    num_images: int = 300,
    size: int = 128,
    seed: int = 0,
    max_shapes: int = 3,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Images of shapes and their boxes and labels.

    Args:
        num_images: how many images.
        size: height and width in pixels (at least 32).
        seed: the random seed; the same arguments give the same arrays.
        max_shapes: at most this many shapes per image (at least one).

    Returns:
        `(images, targets)`: float32 `(num_images, size, size, 3)` in
        0..255, and `{"boxes": (num_images, max_shapes, 4) float32 "xyxy"
        pixels, "labels": (num_images, max_shapes) int32}` with labels
        indexing `DETECTION_CLASSES` (1..3), padded with -1.

    Example:

    ```python
    images, targets = synthetic_detection(num_images=8, size=96)
    images.shape, targets["boxes"].shape  # ((8, 96, 96, 3), (8, 3, 4))
    ```
    """
    for argument, value, minimum in (("num_images", num_images, 1), ("size", size, 32), ("max_shapes", max_shapes, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"`{argument}` must be an integer >= {minimum}; got {value!r}.")
    rng = np.random.default_rng(seed)
    images = np.empty((num_images, size, size, 3), "float32")
    boxes = np.full((num_images, max_shapes, 4), -1.0, "float32")
    labels = np.full((num_images, max_shapes), -1, "int32")
    yy, xx = np.mgrid[0:size, 0:size].astype("float32")
    for index in range(num_images):
        image = _background(rng, yy, xx, size)
        for slot in range(int(rng.integers(1, max_shapes + 1))):
            label = int(rng.integers(1, len(DETECTION_CLASSES)))
            inside = _shape(label, rng, yy, xx, size)
            rows, columns = np.nonzero(inside)
            color = np.array(_CLASS_COLORS[label]) + rng.uniform(-45, 45, 3)
            image = np.where(inside[..., None], color + rng.normal(0, 12, (size, size, 1)), image)
            boxes[index, slot] = (columns.min(), rows.min(), columns.max() + 1, rows.max() + 1)
            labels[index, slot] = label
        images[index] = np.clip(image, 0, 255)
    return images, {"boxes": boxes, "labels": labels}
