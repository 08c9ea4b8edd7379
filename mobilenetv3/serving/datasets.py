"""Evaluation datasets on disk, read as `(image path, target)` lists.

Three tasks, five layouts (`open_dataset` tells them apart by what the
folder holds; every problem is a ValueError naming the file or folder):

| task | layout | target of each image |
|---|---|---|
| classifier | ImageNet-style folder: one subfolder per class | the class folder's name |
| classifier | a text file list: `path label` per line (`path<TAB>label` when the label has spaces) | the label (an index or a name) |
| detector | COCO: an instances JSON (default `DATA/annotations.json`) + the image folder | the COCO image id |
| segmenter | VOC: `JPEGImages/`, `SegmentationClass/` palette PNGs (255 = ignore), optional `ImageSets/Segmentation/<split>.txt` | the mask file |
| segmenter | Cityscapes: `leftImg8bit/<split>/<city>/*_leftImg8bit.png`, `gtFine/<split>/<city>/*_gtFine_labelIds.png` | the mask file (label ids mapped to the 19 train ids, 255 = ignore) |

How labels are matched to the model's outputs:

- classification (`classification_labels`): a `class_map` entry first (the
  folder name or label -> a class name or index); then the model's own
  `class_names`; then, for a 1000- or 1001-class model, the ImageNet table
  of `mobilenetv3.core.decode` by WordNet id (`n01440764`) or by unique
  class name, shifted by one for the 1001-class TF-slim layout (output 0 is
  "background"); then a class index `0..num_classes-1`.
- detection (`coco_categories`): by name when the model has `class_names`
  and every category of the JSON is among them (a converted torchvision
  SSDLite has torchvision's 91 COCO labels as its class names, whose index
  is the COCO category id, so name matching and torchvision's "label ==
  category id" agree); else, for a 91-class model without names, label ==
  category id (torchvision's reference); else, when the model has one class
  per category plus background, labels 1..K in category-id order (what
  `mobilenetv3 train --task detect` learns from a COCO folder).
- segmentation: mask values are class indices; 255 (`ignore_index`) pixels
  are left out. A `class_map` (mask value -> class) maps values, and every
  value it does not list becomes `ignore_index`. Cityscapes masks go
  through `CITYSCAPES_TRAIN_IDS` (the published 34 -> 19 table) unless a
  `class_map` is given.

Example:

```python
spec = open_dataset("val_folder")   # an ImageNet-style folder
spec.task, len(spec.items)          # ('classifier', 50000)
```
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mobilenetv3.core import decode
from mobilenetv3.core.images import IMAGE_SUFFIXES

TASKS = ("classifier", "detector", "segmenter")
FORMATS = ("folder", "list", "coco", "voc", "cityscapes")
DEFAULT_IGNORE_INDEX = 255
COCO_ANNOTATIONS = "annotations.json"
# Names listed in an error message (unknown classes, valid examples).
LISTED = 5

# Cityscapes label id -> train id (255: ignored), from cityscapesScripts'
# `labels.py` (the published table; torchvision's `Cityscapes.classes` holds
# the same). Ids not listed (and license plate, id -1) are ignored.
CITYSCAPES_TRAIN_IDS = {
    7: 0,    # road
    8: 1,    # sidewalk
    11: 2,   # building
    12: 3,   # wall
    13: 4,   # fence
    17: 5,   # pole
    19: 6,   # traffic light
    20: 7,   # traffic sign
    21: 8,   # vegetation
    22: 9,   # terrain
    23: 10,  # sky
    24: 11,  # person
    25: 12,  # rider
    26: 13,  # car
    27: 14,  # truck
    28: 15,  # bus
    31: 16,  # train
    32: 17,  # motorcycle
    33: 18,  # bicycle
}
CITYSCAPES_CLASSES = ("road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
                      "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
                      "motorcycle", "bicycle")


@dataclasses.dataclass
class EvalDataset:
    """An evaluation dataset as read from disk, before the model is known.

    Attributes:
        task: "classifier", "detector" or "segmenter".
        format: one of `FORMATS`.
        source: the path given (folder, list file or annotation file).
        items: `(image path, target)` in evaluation order; the target is the
            raw class label (classifier), the COCO image id (detector) or
            the mask file (segmenter).
        coco: the COCO ground truth (detector): the JSON's dict, every
            annotation with an `area` and `iscrowd` (`w * h` and 0 when the
            file has none).
    """

    task: str
    format: str
    source: str
    items: list[tuple[str, Any]]
    coco: dict | None = None


def open_dataset(
    data: str | os.PathLike,
    task: str | None = None,
    *,
    annotations: str | os.PathLike | None = None,
    split: str = "val",
) -> EvalDataset:
    """The dataset at `data`, its task and layout told by what it holds
    (see the module docstring); reads only file lists and annotation
    files, never image pixels, so it is cheap to call before a model loads.

    Args:
        data: a class folder, a file list, a COCO image folder, or a VOC or
            Cityscapes root folder.
        task: "classifier", "detector" or "segmenter"; None: told by `data`.
        annotations: the COCO instances JSON (default `data/annotations.json`).
        split: the VOC / Cityscapes split (`ImageSets/Segmentation/<split>.txt`,
            `leftImg8bit/<split>`).

    Raises:
        ValueError: a missing or empty folder, a malformed list or
            annotation file, a layout that does not fit `task`.

    Example:

    ```python
    open_dataset("VOCdevkit/VOC2012").format  # 'voc'
    ```
    """
    if task is not None and task not in TASKS:
        raise ValueError(f"`task` must be one of {list(TASKS)}; got {task!r}.")
    path = Path(data)
    if not path.exists():
        raise ValueError(f"Dataset {str(path)!r}: no such file or folder.")
    if path.is_file():
        if path.suffix.lower() == ".json":
            return _checked(task, coco_dataset(path.parent, path))
        return _checked(task, classification_list(path))
    if annotations is not None or (path / COCO_ANNOTATIONS).is_file():
        return _checked(task, coco_dataset(path, annotations))
    if (path / "SegmentationClass").is_dir() or (path / "JPEGImages").is_dir():
        return _checked(task, voc_dataset(path, split))
    if (path / "leftImg8bit").is_dir() or (path / "gtFine").is_dir():
        return _checked(task, cityscapes_dataset(path, split))
    if task == "detector":
        raise ValueError(f"Detection dataset {str(path)!r} has no {COCO_ANNOTATIONS}; pass the COCO instances JSON "
                         "(--annotations instances_val2017.json).")
    if task == "segmenter":
        raise ValueError(f"Segmentation dataset {str(path)!r} is neither VOC-style (JPEGImages/, SegmentationClass/) "
                         "nor Cityscapes-style (leftImg8bit/, gtFine/).")
    return _checked(task, classification_folder(path))


def _checked(task: str | None, dataset: EvalDataset) -> EvalDataset:
    if task is not None and task != dataset.task:
        raise ValueError(f"Dataset {dataset.source!r} is a {dataset.format} {dataset.task} dataset, "
                         f"not a {task} one.")
    return dataset


def _images_under(folder: Path) -> list[str]:
    return sorted(str(f) for f in folder.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)


def classification_folder(folder: str | os.PathLike) -> EvalDataset:
    """An ImageNet-style folder: one subfolder per class (any depth of
    images inside), items `(image, folder name)`, sorted.

    Example:

    ```python
    classification_folder("imagenet/val").items[0]  # ('imagenet/val/n01440764/x.JPEG', 'n01440764')
    ```
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"Class folder {str(folder)!r}: no such folder.")
    classes = sorted(child for child in folder.iterdir() if child.is_dir() and not child.name.startswith("."))
    if not classes:
        raise ValueError(f"Class folder {str(folder)!r} has no class subfolders (one subfolder of images per class).")
    items = [(file, child.name) for child in classes for file in _images_under(child)]
    if not items:
        raise ValueError(f"Class folder {str(folder)!r}: its {len(classes)} class subfolder(s) hold no images "
                         f"(looked for {', '.join(IMAGE_SUFFIXES)}).")
    return EvalDataset("classifier", "folder", str(folder), items)


def classification_list(file: str | os.PathLike) -> EvalDataset:
    """A text file of `path label` lines (`path<TAB>label` when either has
    spaces; paths relative to the file's folder; blank and `#` lines
    skipped). Every listed image must exist.

    Example:

    ```python
    classification_list("val.txt").items[0]  # ('images/1.jpg', '281')
    ```
    """
    file = Path(file)
    items: list[tuple[str, Any]] = []
    try:
        lines = file.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"Image list {str(file)!r} cannot be read ({error}).") from None
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.rsplit("\t", 1) if "\t" in line else line.strip().rsplit(None, 1)
        if len(parts) != 2 or not parts[0].strip() or not parts[1].strip():
            raise ValueError(f"Image list {str(file)}, line {number}: expected 'path label', got {line!r}.")
        path = Path(parts[0].strip())
        path = path if path.is_absolute() else file.parent / path
        if not path.is_file():
            raise ValueError(f"Image list {str(file)}, line {number}: image {str(path)!r} does not exist.")
        items.append((str(path), parts[1].strip()))
    if not items:
        raise ValueError(f"Image list {str(file)!r} lists no images (expected 'path label' lines).")
    return EvalDataset("classifier", "list", str(file), items)


def classification_labels(
    dataset: EvalDataset,
    num_classes: int,
    class_names: Sequence[str] | None = None,
    class_map: dict | None = None,
) -> list[tuple[str, int]]:
    """`dataset`'s items with their labels as the model's class indices
    (rules in the module docstring).

    Raises:
        ValueError: labels that name no class of the model, listed (a few)
            with a few valid names.

    Example:

    ```python
    classification_labels(classification_folder("val"), 1001)[0]  # ('val/n01440764/a.jpg', 1)
    ```
    """
    table = _label_table(num_classes, class_names)
    mapped: dict[str, int] = {}
    unknown: list[str] = []
    for raw in sorted({label for _, label in dataset.items}):
        target = (class_map or {}).get(raw, raw)
        index = table.get(str(target))
        if index is None and isinstance(target, int) and not isinstance(target, bool) and 0 <= target < num_classes:
            index = target
        if index is None:
            unknown.append(raw)
        else:
            mapped[raw] = index
    if unknown:
        what = "class folder(s)" if dataset.format == "folder" else "label(s)"
        examples = [name for name in table if not name.isdigit()][:LISTED]
        valid = (f"Valid labels include {examples} (or a class index 0..{num_classes - 1})" if examples else
                 f"The model has no class names: labels must be class indices 0..{num_classes - 1}")
        raise ValueError(
            f"Dataset {dataset.source!r}: {len(unknown)} {what} name no class of the model ({num_classes} classes): "
            f"{unknown[:LISTED]}{' ...' if len(unknown) > LISTED else ''}. {valid}; or map them to classes with a "
            "class map (--class-map)."
        )
    return [(path, mapped[label]) for path, label in dataset.items]


def _label_table(num_classes: int, class_names: Sequence[str] | None) -> dict[str, int]:
    table: dict[str, int] = {}
    if class_names is not None and len(class_names) == num_classes:
        for index, name in enumerate(class_names):
            table.setdefault(str(name), index)
    if num_classes in (decode.NUM_CLASSES, decode.NUM_CLASSES + 1):
        offset = num_classes - decode.NUM_CLASSES  # TF-slim: output 0 is "background"
        classes = decode.imagenet_classes()
        counts: dict[str, int] = {}
        for _, name in classes:
            counts[name] = counts.get(name, 0) + 1
        for index, (wnid, name) in enumerate(classes):
            table.setdefault(wnid, index + offset)
            if counts[name] == 1:
                table.setdefault(name, index + offset)
    for index in range(num_classes):
        table.setdefault(str(index), index)
    return table


def coco_dataset(folder: str | os.PathLike, annotations: str | os.PathLike | None = None) -> EvalDataset:
    """A COCO detection dataset: `annotations` (default
    `folder/annotations.json`, COCO's instances format) and the images it
    lists under `folder`. Items are `(image file, image id)`, in the JSON's
    image order; the ground truth keeps every listed image (those without
    boxes too), as pycocotools evaluates them. (`mobilenetv3.datasets.
    detection.read_coco_folder` reads a training set, pixels included; this
    reads the JSON only and leaves the boxes to pycocotools, crowd boxes too.)

    Example:

    ```python
    coco_dataset("val2017", "annotations/instances_val2017.json").task  # 'detector'
    ```
    """
    folder = Path(folder)
    path = Path(annotations) if annotations is not None else folder / COCO_ANNOTATIONS
    if not path.is_file():
        raise ValueError(f"COCO annotation file {str(path)!r}: no such file.")
    if not folder.is_dir():
        raise ValueError(f"COCO image folder {str(folder)!r}: no such folder.")
    try:
        coco = json.loads(path.read_text())
        images = [(int(i["id"]), str(i["file_name"])) for i in coco["images"]]
        categories = [(int(c["id"]), str(c["name"])) for c in coco["categories"]]
        annotations_list = coco["annotations"]
        for annotation in annotations_list:
            int(annotation["image_id"]), int(annotation["category_id"])
            x, y, w, h = (float(v) for v in annotation["bbox"])
            annotation.setdefault("area", w * h)
            annotation.setdefault("iscrowd", 0)
    except (ValueError, KeyError, TypeError, AttributeError, OSError) as error:
        raise ValueError(f"{path} is not COCO instances JSON ({type(error).__name__}: {error}).") from None
    if not images:
        raise ValueError(f"{path} lists no images.")
    if not categories:
        raise ValueError(f"{path} lists no categories.")
    known = {i for i, _ in images}
    for n, annotation in enumerate(annotations_list):
        if annotation["image_id"] not in known:
            raise ValueError(f"{path}: annotation {annotation.get('id', f'#{n}')} names image id "
                             f"{annotation['image_id']}, which 'images' does not list.")
        annotation.setdefault("id", n + 1)
    missing = [name for _, name in images if not (folder / name).is_file()]
    if missing:
        raise ValueError(f"COCO image folder {str(folder)!r} lacks {len(missing)} of the {len(images)} images "
                         f"{path.name} lists, e.g. {missing[:LISTED]}.")
    coco.setdefault("info", {})
    return EvalDataset("detector", "coco", str(path), [(str(folder / name), i) for i, name in images], coco)


def coco_categories(
    categories: Sequence[dict], num_classes: int, class_names: Sequence[str] | None = None
) -> dict[int, int]:
    """`{model label: COCO category id}` (rules in the module docstring);
    labels absent from the dict (background, "N/A") are not scored.

    Raises:
        ValueError: no rule fits; the message lists the unmatched names.

    Example:

    ```python
    coco_categories([{"id": 1, "name": "person"}], 91)[1]  # 1
    ```
    """
    pairs = sorted((int(c["id"]), str(c["name"])) for c in categories)
    if class_names is not None and len(class_names) == num_classes:
        index = {}
        for label, name in enumerate(class_names):
            index.setdefault(_name_key(name), label)
        unmatched = [name for _, name in pairs if _name_key(name) not in index]
        if not unmatched:
            return {index[_name_key(name)]: category for category, name in pairs}
        if num_classes != len(pairs) + 1:
            raise ValueError(
                f"COCO categories {unmatched[:LISTED]} are not among the model's class names "
                f"({[n for n in class_names if n][:LISTED]} ...); name the categories as the model's classes."
            )
    if class_names is None and num_classes == decode.NUM_COCO_CATEGORIES:
        outside = [category for category, _ in pairs if not 0 < category < num_classes]
        if outside:
            raise ValueError(f"COCO category ids {outside[:LISTED]} are outside the 91-label layout (1..90).")
        return {category: category for category, _ in pairs}
    if num_classes == len(pairs) + 1:
        return {label: category for label, (category, _) in enumerate(pairs, start=1)}
    raise ValueError(
        f"Cannot map the model's {num_classes} labels to the {len(pairs)} COCO categories: the model has "
        f"{'no class names' if class_names is None else 'class names that do not match'}, is not a 91-label "
        f"torchvision COCO model, and does not have one class per category plus background."
    )


def _name_key(name: str) -> str:
    return " ".join(str(name).lower().replace("_", " ").split())


def voc_dataset(root: str | os.PathLike, split: str = "val") -> EvalDataset:
    """A VOC-style folder: `JPEGImages/<id>.jpg` and
    `SegmentationClass/<id>.png`, the ids of `ImageSets/Segmentation/<split>.txt`
    when it exists, else every mask with an image.

    Example:

    ```python
    voc_dataset("VOCdevkit/VOC2012").items[0]  # ('.../JPEGImages/2007_000033.jpg', '.../2007_000033.png')
    ```
    """
    root = Path(root)
    images, masks = root / "JPEGImages", root / "SegmentationClass"
    for folder in (images, masks):
        if not folder.is_dir():
            raise ValueError(f"VOC dataset {str(root)!r} has no {folder.name}/ folder.")
    by_stem = {f.stem: f for f in images.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES}
    listing = root / "ImageSets" / "Segmentation" / f"{split}.txt"
    if listing.is_file():
        ids = [line.strip() for line in listing.read_text().splitlines() if line.strip()]
    else:
        ids = sorted(f.stem for f in masks.iterdir() if f.suffix.lower() == ".png" and f.stem in by_stem)
    items = []
    for name in ids:
        mask = masks / f"{name}.png"
        if name not in by_stem:
            raise ValueError(f"VOC dataset {str(root)!r}: image {name!r} is not in {images}.")
        if not mask.is_file():
            raise ValueError(f"VOC dataset {str(root)!r}: mask {str(mask)!r} does not exist.")
        items.append((str(by_stem[name]), str(mask)))
    if not items:
        raise ValueError(f"VOC dataset {str(root)!r} holds no image with a mask in {masks}.")
    return EvalDataset("segmenter", "voc", str(root), items)


def cityscapes_dataset(root: str | os.PathLike, split: str = "val") -> EvalDataset:
    """A Cityscapes-style folder: `leftImg8bit/<split>/<city>/<name>_leftImg8bit.png`
    with `gtFine/<split>/<city>/<name>_gtFine_labelIds.png`.

    Example:

    ```python
    cityscapes_dataset("cityscapes").items[0][1]  # '.../gtFine/val/frankfurt/..._gtFine_labelIds.png'
    ```
    """
    root = Path(root)
    images, masks = root / "leftImg8bit" / split, root / "gtFine" / split
    for folder in (images, masks):
        if not folder.is_dir():
            raise ValueError(f"Cityscapes dataset {str(root)!r} has no {folder.relative_to(root)}/ folder.")
    items = []
    for image in sorted(images.rglob("*_leftImg8bit.png")):
        name = image.name[: -len("_leftImg8bit.png")]
        mask = masks / image.parent.relative_to(images) / f"{name}_gtFine_labelIds.png"
        if not mask.is_file():
            raise ValueError(f"Cityscapes dataset {str(root)!r}: image {image.name} has no mask {str(mask)!r}.")
        items.append((str(image), str(mask)))
    if not items:
        raise ValueError(f"Cityscapes dataset {str(root)!r} has no *_leftImg8bit.png images under {images}.")
    return EvalDataset("segmenter", "cityscapes", str(root), items)


def mask_lookup(dataset: EvalDataset, class_map: dict | None = None,
                ignore_index: int = DEFAULT_IGNORE_INDEX) -> np.ndarray | None:
    """A 256-entry table mapping mask values to classes (unlisted values ->
    `ignore_index`): `class_map`'s, else Cityscapes' train ids for a
    Cityscapes dataset, else None (values are classes).

    Example:

    ```python
    mask_lookup(cityscapes_dataset("cityscapes"))[7]  # 0 (road)
    ```
    """
    mapping = class_map if class_map is not None else (
        CITYSCAPES_TRAIN_IDS if dataset.format == "cityscapes" else None)
    if mapping is None:
        return None
    table = np.full(256, ignore_index, "int64")
    for value, label in mapping.items():
        value, label = _int(value, "class map key"), _int(label, "class map value")
        if not 0 <= value < 256:
            raise ValueError(f"Class map key {value} is not a mask value (0..255).")
        table[value] = label
    return table


def _int(value: Any, what: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} {value!r} is not an integer.") from None


def read_mask(path: str | os.PathLike, lookup: np.ndarray | None = None) -> np.ndarray:
    """A mask PNG's class indices `(height, width)` int64: a palette (`P`)
    or grey (`L`, `I;16`, `I`) image's values, through `lookup` when given.

    Example:

    ```python
    read_mask("SegmentationClass/2007_000033.png").max()  # 255 (the border)
    ```
    """
    from PIL import Image

    try:
        with Image.open(path) as image:
            if image.mode not in ("P", "L", "I;16", "I", "1"):
                raise ValueError(f"Mask {str(path)!r} is a {image.mode} image; masks are palette or grey PNGs whose "
                                 "values are class indices.")
            values = np.asarray(image).astype("int64")
    except (OSError, SyntaxError) as error:
        raise ValueError(f"Mask {str(path)!r} cannot be read ({error}).") from None
    if lookup is not None:
        if values.min() < 0 or values.max() >= len(lookup):
            raise ValueError(f"Mask {str(path)!r} holds values outside 0..255, which the class map cannot map.")
        values = lookup[values]
    return values


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """An image's (height, width) as the package reads it (EXIF rotation
    applied), from its header only.

    Example:

    ```python
    image_size("JPEGImages/2007_000033.jpg")  # (366, 500)
    ```
    """
    from PIL import Image

    try:
        with Image.open(path) as image:
            width, height = image.size
            orientation = image.getexif().get(0x0112, 1)
    except (OSError, SyntaxError):
        raise ValueError(f"Image {str(path)!r} cannot be read.") from None
    return (width, height) if orientation in (5, 6, 7, 8) else (height, width)


def check_mask_sizes(dataset: EvalDataset) -> None:
    """Every mask's size equals its image's (headers only); a ValueError
    naming the first pair that differs. Unreadable images are left to the
    evaluation, which counts them.

    Example:

    ```python
    check_mask_sizes(voc_dataset("VOCdevkit/VOC2012"))
    ```
    """
    from PIL import Image

    for image, mask in dataset.items:
        try:
            expected = image_size(image)
        except ValueError:
            continue
        try:
            with Image.open(mask) as opened:
                size = opened.size[::-1]
        except (OSError, SyntaxError) as error:
            raise ValueError(f"Mask {mask!r} cannot be read ({error}).") from None
        if tuple(size) != tuple(expected):
            raise ValueError(f"Mask {mask!r} is {size[1]}x{size[0]} but its image {image!r} is "
                             f"{expected[1]}x{expected[0]} (width x height); masks must match their images.")
