"""A generated object-detection dataset: shapes on textured backgrounds,
with boxes in keras-hub's padded convention.

The images are those of `segmentation` (same backgrounds, shapes and colour
families: circles, squares and triangles) and each shape's box is the exact
extent of its pixels; a shape drawn later may cover part of an earlier one,
whose box stays the whole shape (as COCO's boxes of occluded objects).
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

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


# A box may overhang its image by this many pixels (rounding in the tool
# that wrote it); it is clipped to the image. More is refused.
BOX_OVERHANG_TOLERANCE = 1.0


def read_coco_folder(
    folder: str | os.PathLike, size: int
) -> tuple[np.ndarray, dict[str, np.ndarray], list[str]]:
    """A detection folder: image files plus `annotations.json` in COCO's
    format (`images`: `id`, `file_name`; `annotations`: `image_id`,
    `category_id`, `bbox` `[x, y, width, height]` pixels of the image as
    read, EXIF orientation applied; `categories`: `id`, `name`).

    Every image is resized (squashed) to `size` x `size` and its boxes
    scaled with it. COCO category ids map to labels 1..K in id order.

    Everything is checked here, before any training: each `bbox` must be
    four finite numbers with positive width and height, inside its image
    (an overhang of up to `BOX_OVERHANG_TOLERANCE` pixels is clipped), and
    name a listed image and category; the folder must hold at least one
    annotation. A bad annotation is a ValueError naming the annotation
    file, the annotation's id and its image file. Image files that cannot
    be read or are under `images.MIN_TRAINING_SIDE` pixels on a side are
    skipped with their boxes, each named in one
    `images.SkippedImagesWarning`.

    Returns:
        `(images, targets, class_names)`: float32 `(n, size, size, 3)`,
        keras-hub's padded `{"boxes": xyxy, "labels"}` (-1 padding), and
        `["background", *category names]` indexed by label.

    Raises:
        ValueError: a missing or malformed annotation file, a bad
            annotation (see above), or no readable image.

    Example:

    ```python
    images, targets, names = read_coco_folder("shapes", 128)
    ```
    """
    from mobilenetv3.core import images as image_files

    folder = Path(folder)
    path = folder / ANNOTATIONS_FILE
    if not path.is_file():
        raise ValueError(f"Detection folder {folder} has no {ANNOTATIONS_FILE} (COCO format).")
    try:
        coco = json.loads(path.read_text())
        categories = sorted((int(c["id"]), str(c["name"])) for c in coco["categories"])
        entries = [(int(i["id"]), str(i["file_name"])) for i in coco["images"]]
        annotations = [(a.get("id", f"#{n}"), int(a["image_id"]), int(a["category_id"]), a["bbox"])
                       for n, a in enumerate(coco["annotations"])]
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise ValueError(f"{path} is not COCO detection JSON ({type(error).__name__}: {error}).") from None
    if not annotations:
        raise ValueError(
            f"{path} holds no annotations (its 'annotations' list is empty): a detector has no box to learn from."
        )
    for kind, ids in (("image", [i for i, _ in entries]), ("category", [c for c, _ in categories])):
        repeated = sorted(i for i, count in Counter(ids).items() if count > 1)
        if repeated:
            raise ValueError(f"{path}: {kind} id(s) {repeated[:5]} are listed more than once.")
    label_of = {category: label for label, (category, _) in enumerate(categories, start=1)}
    file_of = dict(entries)
    per_image: dict[int, list] = {image_id: [] for image_id, _ in entries}
    for annotation_id, image_id, category, bbox in annotations:
        where = f"{path}: annotation {annotation_id}"
        if image_id not in per_image:
            raise ValueError(f"{where} names image id {image_id}, which 'images' does not list.")
        where += f" (image {file_of[image_id]})"
        if category not in label_of:
            raise ValueError(
                f"{where} has category_id {category}, which 'categories' does not list (ids {sorted(label_of)})."
            )
        per_image[image_id].append((annotation_id, _check_bbox(bbox, where), label_of[category]))
    max_boxes = max([len(b) for b in per_image.values()] + [1])
    pixels, boxes, labels, skipped = [], [], [], []
    for image_id, name in entries:
        try:
            image = image_files.open_training_image(folder / name)
        except image_files.ImageError as error:
            count = len(per_image[image_id])
            skipped.append(f"{error}" + (f" ({count} box(es) dropped)" if count else ""))
            continue
        image_boxes = np.full((max_boxes, 4), -1.0, "float32")
        image_labels = np.full((max_boxes,), -1, "int32")
        for slot, (annotation_id, box, label) in enumerate(per_image[image_id]):
            where = f"{path}: annotation {annotation_id} (image {name})"
            box = _inside(box, image.width, image.height, where)
            image_boxes[slot] = np.array(box, "float32") * np.array([size / image.width, size / image.height] * 2)
            image_labels[slot] = label
        pixels.append(np.asarray(image.resize((size, size), resample=2), "float32"))  # bilinear
        boxes.append(image_boxes)
        labels.append(image_labels)
    image_files.warn_skipped(skipped, folder)
    if not pixels:
        raise ValueError(f"Detection folder {folder}: none of the {len(entries)} images it lists could be read.")
    targets = {"boxes": np.stack(boxes), "labels": np.stack(labels)}
    return np.stack(pixels), targets, ["background", *(name for _, name in categories)]


def _check_bbox(bbox: Any, where: str) -> tuple[float, float, float, float]:
    """A COCO `[x, y, width, height]` as `xyxy`; a ValueError naming `where`
    unless it is four finite numbers with positive width and height."""
    numbers = isinstance(bbox, (list, tuple)) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox
    )
    if not numbers or len(bbox) != 4:
        raise ValueError(f"{where}: 'bbox' must be [x, y, width, height], four numbers; got {bbox!r}.")
    if not all(math.isfinite(v) for v in bbox):
        raise ValueError(f"{where}: 'bbox' {bbox!r} holds NaN or infinity.")
    x, y, width, height = (float(v) for v in bbox)
    if width <= 0 or height <= 0:
        raise ValueError(
            f"{where}: 'bbox' {bbox!r} has width {width:g} and height {height:g}; both must be positive "
            "(COCO boxes are [x, y, width, height], not corners)."
        )
    return x, y, x + width, y + height


def _inside(box: tuple[float, ...], width: int, height: int, where: str) -> tuple[float, ...]:
    """`box` (xyxy) clipped to a `width` x `height` image; a ValueError
    naming `where` when it overhangs by more than `BOX_OVERHANG_TOLERANCE`."""
    x1, y1, x2, y2 = box
    tolerance = BOX_OVERHANG_TOLERANCE
    if x1 < -tolerance or y1 < -tolerance or x2 > width + tolerance or y2 > height + tolerance:
        raise ValueError(
            f"{where}: box x {x1:g}..{x2:g}, y {y1:g}..{y2:g} lies outside the {width}x{height} image "
            "(COCO boxes are pixels of the image as read, EXIF orientation applied)."
        )
    clipped = (max(x1, 0.0), max(y1, 0.0), min(x2, float(width)), min(y2, float(height)))
    if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
        raise ValueError(f"{where}: box x {x1:g}..{x2:g}, y {y1:g}..{y2:g} lies outside the {width}x{height} image.")
    return clipped
