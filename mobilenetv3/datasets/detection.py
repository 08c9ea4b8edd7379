"""A generated object-detection dataset: shapes on textured backgrounds,
with boxes in keras-hub's padded convention.

The images are those of `segmentation` (same backgrounds, shapes and colour
families: circles, squares and triangles) and each shape's box is the exact
extent of its pixels; a shape drawn later may cover part of an earlier one,
whose box stays the whole shape (as COCO's boxes of occluded objects).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

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


ANNOTATIONS_FILE = "annotations.json"


def write_coco_folder(
    folder: str | os.PathLike, images: np.ndarray, targets: dict[str, np.ndarray], class_names: Sequence[str]
) -> None:
    """Write images (PNG) and their padded `xyxy` targets as a detection
    folder in the layout `read_coco_folder` reads (COCO's annotation JSON).

    Example:

    ```python
    images, targets = synthetic_detection(20, 128)
    write_coco_folder("shapes", images, targets, DETECTION_CLASSES)
    ```
    """
    from PIL import Image

    from mobilenetv3.core.utils import atomic_path

    with atomic_path(folder, directory=True) as staging:
        staging.mkdir()
        coco: dict[str, list] = {"images": [], "annotations": [], "categories": []}
        coco["categories"] = [{"id": i, "name": name} for i, name in enumerate(class_names) if i > 0]
        for index, image in enumerate(images):
            name = f"{index:05d}.png"
            Image.fromarray(np.clip(image, 0, 255).astype("uint8")).save(staging / name)
            coco["images"].append({"id": index, "file_name": name, "height": image.shape[0], "width": image.shape[1]})
            for box, label in zip(targets["boxes"][index], targets["labels"][index]):
                if label > 0:
                    x1, y1, x2, y2 = (float(v) for v in box)
                    coco["annotations"].append({"id": len(coco["annotations"]) + 1, "image_id": index,
                                                "category_id": int(label), "bbox": [x1, y1, x2 - x1, y2 - y1]})
        (staging / ANNOTATIONS_FILE).write_text(json.dumps(coco))


def read_coco_folder(
    folder: str | os.PathLike, size: int
) -> tuple[np.ndarray, dict[str, np.ndarray], list[str]]:
    """A detection folder: image files plus `annotations.json` in COCO's
    format (`images`: `id`, `file_name`; `annotations`: `image_id`,
    `category_id`, `bbox` `[x, y, width, height]` pixels of the image as
    read, EXIF orientation applied; `categories`: `id`, `name`).

    Every image is resized (squashed) to `size` x `size` and its boxes
    scaled with it. COCO category ids map to labels 1..K in id order.

    Returns:
        `(images, targets, class_names)`: float32 `(n, size, size, 3)`,
        keras-hub's padded `{"boxes": xyxy, "labels"}` (-1 padding), and
        `["background", *category names]` indexed by label.

    Raises:
        ValueError: a missing or malformed annotation file, or an
            annotation naming an unknown image or category.

    Example:

    ```python
    images, targets, names = read_coco_folder("shapes", 128)
    ```
    """
    from mobilenetv3.core.images import open_rgb

    folder = Path(folder)
    path = folder / ANNOTATIONS_FILE
    if not path.is_file():
        raise ValueError(f"Detection folder {folder} has no {ANNOTATIONS_FILE} (COCO format).")
    try:
        coco = json.loads(path.read_text())
        categories = sorted((int(c["id"]), str(c["name"])) for c in coco["categories"])
        entries = [(int(i["id"]), str(i["file_name"])) for i in coco["images"]]
        annotations = [(int(a["image_id"]), int(a["category_id"]), [float(v) for v in a["bbox"]])
                       for a in coco["annotations"]]
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{path} is not COCO detection JSON ({type(error).__name__}: {error}).") from None
    label_of = {category: label for label, (category, _) in enumerate(categories, start=1)}
    per_image: dict[int, list] = {image_id: [] for image_id, _ in entries}
    for image_id, category, (x, y, w, h) in annotations:
        if image_id not in per_image or category not in label_of:
            raise ValueError(f"{path}: an annotation names image {image_id} / category {category}, not listed.")
        per_image[image_id].append((x, y, x + w, y + h, label_of[category]))
    max_boxes = max([len(b) for b in per_image.values()] + [1])
    images = np.empty((len(entries), size, size, 3), "float32")
    boxes = np.full((len(entries), max_boxes, 4), -1.0, "float32")
    labels = np.full((len(entries), max_boxes), -1, "int32")
    for index, (image_id, name) in enumerate(entries):
        image = open_rgb(folder / name)
        scale = np.array([size / image.width, size / image.height] * 2, "float32")
        images[index] = np.asarray(image.resize((size, size), resample=2), "float32")  # bilinear
        for slot, (*box, label) in enumerate(per_image[image_id]):
            boxes[index, slot] = np.array(box, "float32") * scale
            labels[index, slot] = label
    return images, {"boxes": boxes, "labels": labels}, ["background", *(name for _, name in categories)]
