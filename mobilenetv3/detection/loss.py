"""SSD training: anchor matching, the SSD loss (torchvision's
`SSD.compute_loss`) and checks of training targets."""

from __future__ import annotations

from typing import Any

import numpy as np
from keras import ops

from mobilenetv3.detection.boxes import encode_boxes, pairwise_iou

CLASSIFICATION_LOSSES = ("cross_entropy", "focal")


def match_anchors(gt_boxes: Any, gt_valid: Any, anchors: Any, iou_threshold: float = 0.5) -> Any:
    """SSD matching (torchvision's `SSDMatcher`): each default box takes the
    ground-truth box it overlaps most if that IoU is at least
    `iou_threshold`; then every ground-truth box takes its own best default
    box whatever the IoU (a later box wins a shared one).

    Args:
        gt_boxes: `(batch, M, 4)` `xyxy` boxes, in the anchors' coordinates.
        gt_valid: `(batch, M)` booleans, False for padding.
        anchors: `(N, 4)` `xyxy` default boxes.
        iou_threshold: the matching threshold.

    Returns:
        `(batch, N)` int32: the matched ground-truth index, or -1.

    Example:

    ```python
    match_anchors(np.array([[[0., 0., 10., 10.]]]), np.array([[True]]),
                  np.array([[0., 0., 10., 9.], [20., 20., 30., 30.]]))  # [[0, -1]]
    ```
    """
    gt_valid = ops.convert_to_tensor(gt_valid, "bool")
    iou = pairwise_iou(gt_boxes, anchors)
    iou = ops.where(gt_valid[..., None], ops.nan_to_num(iou, nan=0.0), -1.0)
    best_gt = ops.cast(ops.argmax(iou, axis=1), "int32")
    matched = ops.where(ops.max(iou, axis=1) >= iou_threshold, best_gt, -1)
    best_anchor = ops.argmax(iou, axis=2)
    num_gt = ops.shape(iou)[1]
    forced = ops.logical_and(ops.one_hot(best_anchor, iou.shape[-1], dtype="bool"), gt_valid[..., None])
    gt_index = ops.arange(num_gt, dtype="int32")[None, :, None]
    forced_gt = ops.max(ops.where(forced, gt_index, -1), axis=1)
    return ops.where(forced_gt >= 0, forced_gt, matched)


def _smooth_l1(difference: Any) -> Any:
    magnitude = ops.abs(difference)
    return ops.where(magnitude < 1.0, 0.5 * difference * difference, magnitude - 0.5)


def ssd_loss(
    cls_logits: Any,
    bbox_regression: Any,
    gt_boxes: Any,
    gt_labels: Any,
    anchors: Any,
    iou_threshold: float = 0.5,
    negative_ratio: float = 3.0,
    classification_loss: str = "cross_entropy",
    focal_gamma: float = 2.0,
) -> tuple[Any, Any]:
    """The SSD loss, as torchvision's: `(box_loss, classification_loss)`.

    Box loss: smooth-L1 (beta 1) between the regression of matched default
    boxes and their encoded ground truth, summed. Classification:
    cross-entropy of the matched boxes (their labels) and of the hardest
    negatives (background), `negative_ratio` of them per positive in each
    image; or, with `classification_loss="focal"`, softmax focal loss
    (gamma `focal_gamma`) over every default box, without mining. Both are
    divided by the number of matched default boxes in the batch (at least 1).

    Args:
        cls_logits: `(batch, N, num_classes)`; class 0 is background.
        bbox_regression: `(batch, N, 4)`.
        gt_boxes: `(batch, M, 4)` `xyxy` in the anchors' coordinates.
        gt_labels: `(batch, M)` in `[1, num_classes)`, -1 for padding.
        anchors: `(N, 4)` `xyxy` default boxes.
        iou_threshold, negative_ratio: SSD's 0.5 and 3.

    Example:

    ```python
    box_loss, class_loss = ssd_loss(logits, regression, boxes, labels, anchors)
    ```
    """
    gt_labels = ops.cast(gt_labels, "int32")
    gt_boxes = ops.cast(gt_boxes, "float32")
    anchors = ops.convert_to_tensor(anchors, "float32")
    matched = match_anchors(gt_boxes, gt_labels > 0, anchors, iou_threshold)
    positive = matched >= 0
    index = ops.maximum(matched, 0)
    targets = ops.take_along_axis(gt_boxes, index[..., None], axis=1)
    targets = ops.where(positive[..., None], targets, anchors[None])  # no log(0) off the matches
    target_regression = encode_boxes(targets, anchors)
    weight = ops.cast(positive, "float32")
    box_loss = ops.sum(ops.sum(_smooth_l1(ops.cast(bbox_regression, "float32") - target_regression), -1) * weight)
    classes = ops.where(positive, ops.take_along_axis(gt_labels, index, axis=1), 0)
    log_probs = ops.log_softmax(ops.cast(cls_logits, "float32"), axis=-1)
    true_log_prob = ops.take_along_axis(log_probs, classes[..., None], axis=-1)[..., 0]
    normalizer = ops.maximum(ops.sum(weight), 1.0)
    if classification_loss == "focal":
        focal = -((1.0 - ops.exp(true_log_prob)) ** focal_gamma) * true_log_prob
        return box_loss / normalizer, ops.sum(focal) / normalizer
    cross_entropy = -true_log_prob
    # Hard negatives: the highest-loss default boxes that are not matched.
    negative_loss = ops.where(positive, -np.inf, ops.stop_gradient(cross_entropy))
    rank = ops.argsort(ops.argsort(-negative_loss, axis=1), axis=1)
    hard_negative = ops.cast(rank, "float32") < negative_ratio * ops.sum(weight, axis=1, keepdims=True)
    mined = ops.cast(ops.logical_or(positive, hard_negative), "float32")
    return box_loss / normalizer, ops.sum(cross_entropy * mined) / normalizer


def check_targets(
    image_shape: tuple[int, ...], targets: Any, bounding_box_format: str, num_classes: int
) -> None:
    """Check detection training targets before `fit`; raise a ValueError
    naming the first problem.

    `targets` is keras-hub's padded dict `{"boxes": (batch, M, 4), "labels":
    (batch, M)}` for images of `image_shape` `(batch, height, width, 3)`.
    Labels are -1 (padding) or in `[1, num_classes)` (0 is background);
    each real box must be finite and, in `xyxy` pixels, have
    `0 <= x1 < x2 <= width` and `0 <= y1 < y2 <= height`.

    Example:

    ```python
    check_targets((1, 64, 64, 3), {"boxes": [[[5, 5, 9, 9]]], "labels": [[1]]}, "xyxy", 2)
    ```
    """
    from mobilenetv3.detection.boxes import to_xyxy

    if not isinstance(targets, dict) or set(targets) < {"boxes", "labels"}:
        raise ValueError(
            "Detection targets must be a dict with 'boxes' (batch, max_boxes, 4) and 'labels' "
            f"(batch, max_boxes); got {type(targets).__name__}"
            f"{' with keys ' + str(sorted(targets)) if isinstance(targets, dict) else ''}."
        )
    boxes = np.asarray(targets["boxes"], "float32")
    labels = np.asarray(targets["labels"])
    if boxes.ndim != 3 or boxes.shape[-1] != 4 or labels.shape != boxes.shape[:2]:
        raise ValueError(
            "Detection targets must be padded per image: 'boxes' (batch, max_boxes, 4) and 'labels' "
            f"(batch, max_boxes); got shapes {boxes.shape} and {labels.shape}."
        )
    if len(image_shape) != 4 or image_shape[0] != boxes.shape[0]:
        raise ValueError(f"Images {tuple(image_shape)} and targets {boxes.shape} differ in batch size.")
    bad_label = (labels != -1) & ((labels < 1) | (labels >= num_classes))
    if bad_label.any():
        image, box = np.argwhere(bad_label)[0]
        raise ValueError(
            f"Label {labels[image, box]} of box {box} in image {image} is not in [1, {num_classes}) "
            "(class 0 is background; pad with -1)."
        )
    height, width = image_shape[1:3]
    xyxy = np.asarray(to_xyxy(boxes, bounding_box_format, height, width))
    real = labels != -1
    x1, y1, x2, y2 = (xyxy[..., i] for i in range(4))
    tolerance = 1e-3
    outside = (x1 < -tolerance) | (y1 < -tolerance) | (x2 > width + tolerance) | (y2 > height + tolerance)
    for problem, where in (
        ("holds NaN or infinity", ~np.isfinite(boxes).all(axis=-1)),
        (f"has x2 <= x1 or y2 <= y1 (boxes are {bounding_box_format!r})", (x2 <= x1) | (y2 <= y1)),
        (f"lies outside the {height}x{width} image", outside),
    ):
        where = where & real
        if where.any():
            image, box = np.argwhere(where)[0]
            raise ValueError(
                f"Box {box} of image {image}, {boxes[image, box].tolist()} in {bounding_box_format!r}, "
                f"{problem}."
            )


def checked_dataset(dataset: Any, bounding_box_format: str, num_classes: int, errors: list[str]) -> Any:
    """`dataset` (a `tf.data.Dataset` of `(images, targets)` batches) with
    `check_targets` run on every batch as it is read; a failing batch
    stops the pipeline and its message is appended to `errors` (TensorFlow
    wraps the ValueError in its own error, which the caller replaces).

    Example:

    ```python
    errors = []
    dataset = checked_dataset(dataset, "xyxy", 4, errors)
    ```
    """
    import tensorflow as tf

    def check(shape: np.ndarray, boxes: np.ndarray, labels: np.ndarray) -> np.bool_:
        try:
            check_targets(tuple(int(s) for s in shape), {"boxes": boxes, "labels": labels},
                          bounding_box_format, num_classes)
        except ValueError as error:
            errors.append(str(error))
            raise
        return np.bool_(True)

    def checked(x: Any, y: Any, *rest: Any) -> tuple:
        if not isinstance(y, dict) or "boxes" not in y or "labels" not in y:
            return (x, y, *rest)
        ok = tf.numpy_function(check, [tf.shape(x), y["boxes"], y["labels"]], tf.bool, stateful=True)
        with tf.control_dependencies([ok]):
            x = tf.identity(x)
        return (x, y, *rest)

    return dataset.map(checked)
