"""Datasets the package generates itself, for demos, tests and examples.

- `classification`: shapes-and-textures image folders in the
  `keras.utils.image_dataset_from_directory` layout.
- `segmentation`: shapes on textured backgrounds with pixel-exact masks,
  `check_masks` (training masks against their images) and `mean_iou`.
- `detection`: the same shapes with boxes and labels (keras-hub's padded
  targets).
"""

from mobilenetv3.datasets.classification import DEFAULT_CLASSES, make_classification_folder, render_image
from mobilenetv3.datasets.detection import (
    DETECTION_CLASSES,
    read_coco_folder,
    synthetic_detection,
    write_coco_folder,
)
from mobilenetv3.datasets.segmentation import (
    SEGMENTATION_CLASSES,
    check_masks,
    mean_iou,
    synthetic_segmentation,
)

__all__ = [
    "DEFAULT_CLASSES",
    "DETECTION_CLASSES",
    "SEGMENTATION_CLASSES",
    "check_masks",
    "make_classification_folder",
    "mean_iou",
    "read_coco_folder",
    "render_image",
    "synthetic_detection",
    "synthetic_segmentation",
    "write_coco_folder",
]
