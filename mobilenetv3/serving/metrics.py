"""Evaluation metrics, accumulated batch by batch in bounded memory.

- `TopKAccuracy`: top-1 / top-5 and per-class accuracy in percent, as
  timm's `validate.py` reports them (`timm.utils.accuracy`).
- `coco_metrics`: the 12 numbers of pycocotools' `COCOeval` ("bbox") in
  0..1, as its `summarize()` prints them (pycocotools is imported when
  called; it comes with the `dev` extra).
- `ConfusionMatrix`: a `num_classes x num_classes` pixel count; mIoU, per-class
  IoU, pixel accuracy and mean class accuracy in percent. Pixels whose
  target is `ignore_index` are left out. A class whose union (target or
  prediction pixels) is zero has no IoU: it is left out of the mean and
  reported as None, as torchvision's reference (a NaN-mean) does.

Example:

```python
matrix = ConfusionMatrix(3)
matrix.update(np.array([[0, 1], [2, 255]]), np.array([[0, 1], [1, 1]]))
matrix.result()["miou"]  # 50.0: classes 0 and 1 at 100 and 50, class 2 at 0 -> (100 + 50 + 0) / 3
```
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from typing import Any

import numpy as np

COCO_STATS = ("AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large",
              "AR1", "AR10", "AR100", "AR_small", "AR_medium", "AR_large")


class TopKAccuracy:
    """Top-1 / top-`k` accuracy and per-class (top-1) accuracy.

    Args:
        num_classes: the model's output count.
        top: the second k (5, or the class count when smaller).

    Example:

    ```python
    accuracy = TopKAccuracy(3, top=2)
    accuracy.update(np.array([[0.1, 0.7, 0.2]]), np.array([2]))
    accuracy.result()["top1"], accuracy.result()["top2"]  # (0.0, 100.0)
    ```
    """

    def __init__(self, num_classes: int, top: int = 5) -> None:
        self.num_classes = int(num_classes)
        self.top = min(int(top), self.num_classes)
        self.count = 0
        self.correct1 = 0
        self.correctk = 0
        self.per_class_total = np.zeros(self.num_classes, "int64")
        self.per_class_correct = np.zeros(self.num_classes, "int64")

    def update(self, scores: Any, targets: Any) -> None:
        """Add a batch: `scores` `(n, num_classes)`, `targets` `(n,)` class indices."""
        scores, targets = np.asarray(scores), np.asarray(targets, "int64")
        if scores.ndim != 2 or scores.shape[1] != self.num_classes or len(targets) != len(scores):
            raise ValueError(f"scores must be (n, {self.num_classes}) with n targets; got {scores.shape} "
                             f"and {targets.shape}.")
        if len(targets) and (targets.min() < 0 or targets.max() >= self.num_classes):
            raise ValueError(f"targets must be class indices in 0..{self.num_classes - 1}.")
        order = np.argsort(-scores, axis=1, kind="stable")[:, : self.top]
        hit1 = order[:, 0] == targets
        self.count += len(targets)
        self.correct1 += int(hit1.sum())
        self.correctk += int((order == targets[:, None]).any(axis=1).sum())
        np.add.at(self.per_class_total, targets, 1)
        np.add.at(self.per_class_correct, targets, hit1.astype("int64"))

    def result(self, class_names: Sequence[str] | None = None) -> dict[str, Any]:
        """`{"top1", "top<k>"` (percent), `"images"`, `"per_class"`: for each
        class with images, `{"accuracy": percent, "images": n}`, keyed by name}."""
        per_class = {}
        for index in np.flatnonzero(self.per_class_total):
            name = class_names[index] if class_names is not None else str(index)
            per_class[name] = {"accuracy": 100.0 * self.per_class_correct[index] / self.per_class_total[index],
                               "images": int(self.per_class_total[index])}
        denominator = max(self.count, 1)
        return {"top1": 100.0 * self.correct1 / denominator, f"top{self.top}": 100.0 * self.correctk / denominator,
                "images": self.count, "per_class": per_class}


class ConfusionMatrix:
    """Pixel counts `matrix[target, prediction]` over every mask seen.

    Args:
        num_classes: the segmenter's class count.
        ignore_index: target value left out (255); None: none.

    Example:

    ```python
    matrix = ConfusionMatrix(2)
    matrix.update(np.array([0, 1, 1]), np.array([0, 1, 0]))
    matrix.result()["miou"]  # 50.0
    ```
    """

    def __init__(self, num_classes: int, ignore_index: int | None = 255) -> None:
        self.num_classes = int(num_classes)
        self.ignore_index = ignore_index
        self.matrix = np.zeros((self.num_classes, self.num_classes), "int64")

    def update(self, target: Any, prediction: Any, source: str = "mask") -> None:
        """Add one mask pair of equal shape; a ValueError naming `source`
        for a shape mismatch or a target value that is no class."""
        target, prediction = np.asarray(target).astype("int64"), np.asarray(prediction).astype("int64")
        if target.shape != prediction.shape:
            raise ValueError(f"{source}: the mask is {target.shape} but the prediction is {prediction.shape}.")
        keep = target != self.ignore_index if self.ignore_index is not None else np.ones(target.shape, bool)
        target, prediction = target[keep], prediction[keep]
        bad = (target < 0) | (target >= self.num_classes)
        if bad.any():
            values = sorted(set(np.unique(target[bad]).tolist()))[:5]
            raise ValueError(f"{source} holds values {values}, which are not classes of the {self.num_classes}-class "
                             f"model nor the ignore index {self.ignore_index}; map them with a class map.")
        if prediction.size and (prediction.min() < 0 or prediction.max() >= self.num_classes):
            raise ValueError(f"{source}: predictions outside 0..{self.num_classes - 1}.")
        self.matrix += np.bincount(target * self.num_classes + prediction,
                                   minlength=self.num_classes ** 2).reshape(self.matrix.shape)

    def result(self, class_names: Sequence[str] | None = None) -> dict[str, Any]:
        """`{"miou", "pixel_accuracy", "mean_class_accuracy"` (percent), `"pixels"`,
        `"per_class_iou"`: name -> percent, None for a class with zero union}."""
        matrix = self.matrix.astype("float64")
        diagonal = np.diag(matrix)
        union = matrix.sum(0) + matrix.sum(1) - diagonal
        support = matrix.sum(1)
        with np.errstate(invalid="ignore", divide="ignore"):
            iou = np.where(union > 0, diagonal / union, np.nan)
            class_accuracy = np.where(support > 0, diagonal / support, np.nan)
        total = matrix.sum()
        names = list(class_names) if class_names is not None else [str(i) for i in range(self.num_classes)]
        return {
            "miou": _nanmean_percent(iou),
            "pixel_accuracy": float(100.0 * diagonal.sum() / total) if total else 0.0,
            "mean_class_accuracy": _nanmean_percent(class_accuracy),
            "pixels": int(total),
            "per_class_iou": {name: (None if np.isnan(v) else 100.0 * float(v)) for name, v in zip(names, iou)},
        }


def _nanmean_percent(values: np.ndarray) -> float:
    kept = values[~np.isnan(values)]
    return 100.0 * float(kept.mean()) if kept.size else 0.0


def coco_metrics(ground_truth: dict, results: list[dict], image_ids: Sequence[int] | None = None) -> dict[str, float]:
    """pycocotools' 12 box numbers of `results` against `ground_truth`.

    Args:
        ground_truth: a COCO instances dict (`images`, `annotations` with
            `area` and `iscrowd`, `categories`).
        results: COCO result entries `{"image_id", "category_id", "bbox":
            [x, y, w, h], "score"}` (what `COCO.loadRes` takes).
        image_ids: the images evaluated (default: every listed image).

    Returns:
        `{name: value}` for `COCO_STATS` in `COCOeval.stats`' order (0..1;
        -1 where COCO has no ground truth of that size).

    Example:

    ```python
    coco_metrics(coco, [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 9, 9], "score": 0.9}])["AP"]
    ```
    """
    check_pycocotools()
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if not results:
        return dict.fromkeys(COCO_STATS, 0.0)
    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO()
        truth.dataset = ground_truth
        truth.createIndex()
        evaluation = COCOeval(truth, truth.loadRes([dict(r) for r in results]), "bbox")
        if image_ids is not None:
            evaluation.params.imgIds = sorted(int(i) for i in image_ids)
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return {name: float(value) for name, value in zip(COCO_STATS, evaluation.stats)}


def check_pycocotools() -> None:
    """A `MissingExtraError` naming the extra when pycocotools is not
    installed (checked before a detector is evaluated, not after).

    Example:

    ```python
    check_pycocotools()
    ```
    """
    from mobilenetv3.core.utils import import_optional

    import_optional("pycocotools.cocoeval", "dev", "COCO evaluation (pycocotools' COCOeval)")
