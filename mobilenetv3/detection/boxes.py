"""Bounding-box formats, the SSD box coder and IoU, in `keras.ops`.

Format conversion is Keras' own `keras.utils.bounding_boxes.convert_format`
(the converters keras-hub's detectors use); this module adds the checks and
the SSD-specific pieces.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import keras
from keras import ops

from mobilenetv3.core.utils import check_choice

# keras.utils.bounding_boxes' formats (the keras-hub / keras-cv names).
BOX_FORMATS = (
    "xyxy",
    "yxyx",
    "xywh",
    "center_xywh",
    "center_yxhw",
    "rel_xyxy",
    "rel_yxyx",
    "rel_xywh",
    "rel_center_xywh",
)
# SSD's coder weights for (x, y, w, h) and torchvision's clamp on log sizes.
SSD_BOX_WEIGHTS = (10.0, 10.0, 5.0, 5.0)
LOG_SIZE_CLIP = math.log(1000.0 / 16)


def check_box_format(value: Any) -> str:
    """`value` if it is one of `BOX_FORMATS`, else a ValueError naming them."""
    return check_choice("bounding_box_format", value, BOX_FORMATS)


def to_xyxy(boxes: Any, source: str, height: Any, width: Any) -> Any:
    """Boxes in `source` format of a `height` x `width` image, as pixel `xyxy`."""
    return keras.utils.bounding_boxes.convert_format(boxes, source=source, target="xyxy", height=height, width=width)


def from_xyxy(boxes: Any, target: str, height: Any, width: Any) -> Any:
    """Pixel `xyxy` boxes of a `height` x `width` image, in `target` format."""
    return keras.utils.bounding_boxes.convert_format(boxes, source="xyxy", target=target, height=height, width=width)


def _centre_form(boxes: Any) -> tuple[Any, Any, Any, Any]:
    x1, y1, x2, y2 = (boxes[..., i] for i in range(4))
    widths, heights = x2 - x1, y2 - y1
    return x1 + 0.5 * widths, y1 + 0.5 * heights, widths, heights


def encode_boxes(boxes: Any, anchors: Any, weights: Sequence[float] = SSD_BOX_WEIGHTS) -> Any:
    """Regression targets of `xyxy` boxes relative to `xyxy` anchors
    (torchvision's `BoxCoder.encode_single`): `(wx dx/wa, wy dy/ha,
    ww log(w/wa), wh log(h/ha))`.

    Example:

    ```python
    encode_boxes(np.array([[0., 0., 20., 20.]]), np.array([[0., 0., 10., 10.]]))
    # [[5., 5., 3.466, 3.466]]
    ```
    """
    cx, cy, w, h = _centre_form(ops.convert_to_tensor(boxes, "float32"))
    acx, acy, aw, ah = _centre_form(ops.convert_to_tensor(anchors, "float32"))
    wx, wy, ww, wh = weights
    return ops.stack(
        [wx * (cx - acx) / aw, wy * (cy - acy) / ah, ww * ops.log(w / aw), wh * ops.log(h / ah)], axis=-1
    )


def decode_boxes(deltas: Any, anchors: Any, weights: Sequence[float] = SSD_BOX_WEIGHTS) -> Any:
    """`xyxy` boxes from regression outputs and `xyxy` anchors, the inverse
    of `encode_boxes` (torchvision's `BoxCoder.decode_single`, log sizes
    clamped at log(1000/16)).

    Example:

    ```python
    decode_boxes(np.array([[5., 5., 3.466, 3.466]]), np.array([[0., 0., 10., 10.]]))
    # [[0., 0., 20., 20.]]
    ```
    """
    deltas = ops.convert_to_tensor(deltas, "float32")
    acx, acy, aw, ah = _centre_form(ops.convert_to_tensor(anchors, "float32"))
    wx, wy, ww, wh = weights
    cx = deltas[..., 0] / wx * aw + acx
    cy = deltas[..., 1] / wy * ah + acy
    w = ops.exp(ops.minimum(deltas[..., 2] / ww, LOG_SIZE_CLIP)) * aw
    h = ops.exp(ops.minimum(deltas[..., 3] / wh, LOG_SIZE_CLIP)) * ah
    half_w, half_h = 0.5 * w, 0.5 * h
    return ops.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=-1)


def area(boxes: Any) -> Any:
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def pairwise_iou(boxes: Any, others: Any) -> Any:
    """IoU of every `xyxy` box in `boxes` `(..., M, 4)` with every box in
    `others` `(..., N, 4)` (broadcast over leading axes): `(..., M, N)`.
    Empty boxes against each other give NaN, as torchvision's `box_iou`.

    Example:

    ```python
    pairwise_iou(np.array([[0., 0., 2., 2.]]), np.array([[1., 0., 3., 2.]]))  # [[0.3333]]
    ```
    """
    boxes = ops.convert_to_tensor(boxes, "float32")
    others = ops.convert_to_tensor(others, "float32")
    a, b = boxes[..., :, None, :], others[..., None, :, :]
    top_left = ops.maximum(a[..., :2], b[..., :2])
    bottom_right = ops.minimum(a[..., 2:], b[..., 2:])
    extent = ops.maximum(bottom_right - top_left, 0.0)
    inter = extent[..., 0] * extent[..., 1]
    return inter / (area(boxes)[..., :, None] + area(others)[..., None, :] - inter)
