"""COCO-style box mAP with pycocotools (an optional dependency)."""

from __future__ import annotations

import contextlib
import io
from typing import Any

import numpy as np


def coco_map(targets: dict[str, Any], detections: dict[str, Any], image_size: tuple[int, int]) -> dict[str, float]:
    """COCO box AP of padded `xyxy` detections against padded `xyxy`
    targets, computed by pycocotools' `COCOeval`.

    Args:
        targets: `{"boxes": (n, M, 4), "labels": (n, M)}`, -1 labels pad.
        detections: the detector's `predict` output (`boxes`, `confidence`,
            `labels`, `num_detections`), boxes in `xyxy`.
        image_size: the images' (height, width).

    Returns:
        `{"map": AP@[.5:.95], "map50": AP@.5, "map75": AP@.75}`.

    Example:

    ```python
    scores = coco_map(targets, model.predict(images), (128, 128))
    scores["map50"]
    ```
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    height, width = image_size
    labels = np.asarray(targets["labels"])
    gt_boxes = np.asarray(targets["boxes"], "float64")
    categories = sorted({int(c) for c in labels.ravel() if c >= 0})
    annotations, results = [], []
    for image, (boxes, classes) in enumerate(zip(gt_boxes, labels)):
        for box, label in zip(boxes, classes):
            if label >= 0:
                w, h = box[2] - box[0], box[3] - box[1]
                annotations.append({"id": len(annotations) + 1, "image_id": image, "category_id": int(label),
                                    "bbox": [box[0], box[1], w, h], "area": w * h, "iscrowd": 0})
        for i in range(int(detections["num_detections"][image])):
            box = np.asarray(detections["boxes"][image, i], "float64")
            results.append({"image_id": image, "category_id": int(detections["labels"][image, i]),
                            "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]],
                            "score": float(detections["confidence"][image, i])})
    truth = COCO()
    truth.dataset = {
        "images": [{"id": i, "height": height, "width": width} for i in range(len(labels))],
        "annotations": annotations,
        "categories": [{"id": c} for c in categories],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        truth.createIndex()
        if not results:
            return {"map": 0.0, "map50": 0.0, "map75": 0.0}
        evaluation = COCOeval(truth, truth.loadRes(results), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    stats = evaluation.stats
    return {"map": float(stats[0]), "map50": float(stats[1]), "map75": float(stats[2])}
