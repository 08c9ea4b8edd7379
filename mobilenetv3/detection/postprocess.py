"""SSD inference postprocessing (torchvision's `SSD.postprocess_detections`)
in `keras.ops`, padded per image in the keras-hub detection convention."""

from __future__ import annotations

from typing import Any

from keras import ops

from mobilenetv3.detection.boxes import decode_boxes, from_xyxy, pairwise_iou

PAD_VALUE = -1


def per_class_nms(boxes: Any, valid: Any, iou_threshold: float) -> Any:
    """Greedy non-maximum suppression along the last box axis.

    Args:
        boxes: `(..., K, 4)` `xyxy` boxes, each row sorted by decreasing
            score (e.g. one row per image and class).
        valid: `(..., K)` booleans, the candidates that take part.
        iou_threshold: a box is suppressed by a kept, higher-scoring box of
            its row whose IoU with it is greater than this.

    Returns:
        `(..., K)` booleans: the boxes kept. The same boxes as
        `torchvision.ops.nms` on each row.

    Example:

    ```python
    boxes = np.array([[[0., 0., 10., 10.], [1., 1., 10., 10.], [20., 20., 30., 30.]]])
    per_class_nms(boxes, np.ones((1, 3), bool), 0.5)  # [[True, False, True]]
    ```
    """
    boxes = ops.convert_to_tensor(boxes, "float32")
    count = boxes.shape[-2]
    position = ops.arange(count)

    def suppress_after(i: Any, keep: Any) -> Any:
        box = ops.take(boxes, i, axis=-2)[..., None, :]
        overlap = pairwise_iou(box, boxes)[..., 0, :]
        keeper = ops.take(keep, i, axis=-1)[..., None]
        # NaN IoU (two empty boxes) never suppresses, as in torchvision.
        suppressed = ops.logical_and(ops.greater(overlap, iou_threshold), position > i)
        return ops.logical_and(keep, ops.logical_not(ops.logical_and(suppressed, keeper)))

    return ops.fori_loop(0, count, suppress_after, ops.convert_to_tensor(valid, "bool"))


def detect(
    cls_logits: Any,
    bbox_regression: Any,
    anchors: Any,
    model_size: tuple[int, int],
    image_size: tuple[Any, Any],
    bounding_box_format: str = "xyxy",
    score_threshold: float = 0.001,
    iou_threshold: float = 0.55,
    max_detections: int = 300,
    topk_candidates: int = 300,
) -> dict[str, Any]:
    """Detections from raw SSD head outputs.

    Softmax scores; boxes decoded against the default boxes and clipped to
    the model's input; per class (background, class 0, excluded): the
    `topk_candidates` best boxes scoring above `score_threshold`, then
    non-maximum suppression at `iou_threshold`; the best `max_detections`
    over all classes, rescaled from the model's input size to `image_size`.

    Args:
        cls_logits: `(batch, num_boxes, num_classes)` logits.
        bbox_regression: `(batch, num_boxes, 4)` box regression.
        anchors: `(num_boxes, 4)` default boxes, `xyxy` pixels of the model input.
        model_size: the model input's (height, width).
        image_size: the caller's image (height, width).
        bounding_box_format: format of the returned boxes.
        score_threshold, iou_threshold, max_detections, topk_candidates: as
            torchvision's `score_thresh`, `nms_thresh`, `detections_per_img`,
            `topk_candidates`.

    Returns:
        A dict, keras-hub's detector output: `boxes` `(batch,
        max_detections, 4)`, `confidence` and `labels` `(batch,
        max_detections)`, sorted by decreasing confidence, padded with -1
        after the first `num_detections` `(batch,)` entries.

    Example:

    ```python
    out = detect(logits, regression, anchors, (320, 320), (480, 640))
    out["boxes"].shape  # (batch, 300, 4)
    ```
    """
    scores = ops.softmax(ops.cast(cls_logits, "float32"), axis=-1)[..., 1:]
    model_h, model_w = model_size
    boxes = decode_boxes(bbox_regression, anchors)
    limits = ops.convert_to_tensor([model_w, model_h, model_w, model_h], "float32")
    boxes = ops.clip(boxes, 0.0, limits)
    num_boxes = scores.shape[1]
    k = min(topk_candidates, num_boxes)
    # (batch, classes, boxes): the best k of each class, sorted.
    per_class = ops.transpose(scores, (0, 2, 1))
    per_class = ops.where(per_class > score_threshold, per_class, -1.0)
    top_scores, top_index = ops.top_k(per_class, k)
    valid = top_scores > score_threshold
    candidates = ops.take_along_axis(boxes[:, None], top_index[..., None], axis=2)
    keep = per_class_nms(candidates, valid, iou_threshold)
    num_classes = scores.shape[-1]
    flat_scores = ops.reshape(ops.where(keep, top_scores, -1.0), (-1, num_classes * k))
    flat_boxes = ops.reshape(candidates, (-1, num_classes * k, 4))
    labels = ops.repeat(ops.arange(1, num_classes + 1, dtype="int32"), k)
    count = min(max_detections, num_classes * k)
    confidence, order = ops.top_k(flat_scores, count)
    boxes = ops.take_along_axis(flat_boxes, order[..., None], axis=1)
    labels = ops.take(labels, order)
    num_detections = ops.minimum(ops.sum(ops.cast(keep, "int32"), axis=(1, 2)), count)
    height, width = image_size
    ratio = ops.stack([ops.cast(width, "float32") / model_w, ops.cast(height, "float32") / model_h] * 2)
    boxes = from_xyxy(boxes * ratio, bounding_box_format, height, width)
    return _pad(boxes, confidence, labels, num_detections, max_detections)


def _pad(boxes: Any, confidence: Any, labels: Any, num_detections: Any, size: int) -> dict[str, Any]:
    extra = size - boxes.shape[1]
    if extra:
        boxes = ops.pad(boxes, ((0, 0), (0, extra), (0, 0)), constant_values=PAD_VALUE)
        confidence = ops.pad(confidence, ((0, 0), (0, extra)), constant_values=PAD_VALUE)
        labels = ops.pad(labels, ((0, 0), (0, extra)), constant_values=PAD_VALUE)
    real = ops.arange(size)[None, :] < num_detections[:, None]
    return {
        "boxes": ops.where(real[..., None], boxes, PAD_VALUE),
        "confidence": ops.where(real, confidence, PAD_VALUE),
        "labels": ops.where(real, labels, PAD_VALUE),
        "num_detections": num_detections,
    }
