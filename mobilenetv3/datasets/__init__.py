"""Datasets the package generates itself, for demos, tests and examples.

- `classification`: shapes-and-textures image folders in the
  `keras.utils.image_dataset_from_directory` layout.
- `segmentation`: shapes on textured backgrounds with pixel-exact masks,
  and `mean_iou`.
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
from mobilenetv3.datasets.segmentation import SEGMENTATION_CLASSES, mean_iou, synthetic_segmentation

__all__ = [
    "DEFAULT_CLASSES",
    "DETECTION_CLASSES",
    "SEGMENTATION_CLASSES",
    "make_classification_folder",
    "mean_iou",
    "read_coco_folder",
    "render_image",
    "synthetic_detection",
    "synthetic_segmentation",
    "write_coco_folder",
]
