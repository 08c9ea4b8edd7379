"""SSD / SSDLite detection parts, in `keras.ops` (every backend).

- `anchors`: SSD's default boxes (torchvision's `DefaultBoxGenerator`).
- `boxes`: bounding-box formats (Keras' own converters), the SSD box coder
  and pairwise IoU.
- `postprocess`: score threshold, per-class non-maximum suppression, top-k,
  padded per image as keras-hub's detectors return them.
- `loss`: SSD matching, hard-negative mining and the SSD loss, and the
  checks of training targets.
- `evaluate`: COCO box mAP by pycocotools (imported when called).

None of it imports keras-hub: keras-hub's `NonMaxSuppression` is
class-agnostic (one NMS over each box's best class), while SSD's
postprocessing (torchvision's, which the detector matches) runs NMS per
class; the box-format conversion used here is `keras.utils.bounding_boxes`.
"""

from mobilenetv3.detection.anchors import default_box_scales, default_boxes
from mobilenetv3.detection.boxes import (
    BOX_FORMATS,
    check_box_format,
    decode_boxes,
    encode_boxes,
    pairwise_iou,
)
from mobilenetv3.detection.loss import check_targets, checked_dataset, match_anchors, ssd_loss
from mobilenetv3.detection.postprocess import detect, per_class_nms

__all__ = [
    "BOX_FORMATS",
    "check_box_format",
    "check_targets",
    "checked_dataset",
    "decode_boxes",
    "default_box_scales",
    "default_boxes",
    "detect",
    "encode_boxes",
    "match_anchors",
    "pairwise_iou",
    "per_class_nms",
    "ssd_loss",
]
