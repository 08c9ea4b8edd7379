"""ImageNet class names and `decode_predictions`.

`data/imagenet_labels.txt` lists the 1000 ImageNet-1k classes in the
standard order (sorted WordNet ids), one `wnid<TAB>name` per line, the name
being the synset's first WordNet lemma. `data/coco_category_names.txt`
lists torchvision's 91 COCO detection categories (`_COCO_CATEGORIES`, with
its "__background__" and "N/A" entries), one per line, in label order.
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import Any

import numpy as np

NUM_CLASSES = 1000
NUM_COCO_CATEGORIES = 91
BACKGROUND = ("background", "background")


@functools.lru_cache(maxsize=1)
def imagenet_classes() -> tuple[tuple[str, str], ...]:
    """The 1000 ImageNet-1k classes as `(wnid, name)` pairs, in class order.

    Example:

    ```python
    mobilenetv3.core.decode.imagenet_classes()[0]  # ('n01440764', 'tench')
    ```
    """
    text = resources.files("mobilenetv3").joinpath("data/imagenet_labels.txt").read_text("utf8")
    classes = tuple(tuple(line.split("\t", 1)) for line in text.splitlines() if line.strip())
    if len(classes) != NUM_CLASSES:
        raise RuntimeError(f"The packaged ImageNet label file has {len(classes)} lines, not {NUM_CLASSES}.")
    return classes


@functools.lru_cache(maxsize=1)
def coco_category_names() -> tuple[str, ...]:
    """torchvision's 91 COCO detection labels, index = label (0 is
    "__background__"; unused ids are "N/A"), as its SSDLite release uses.

    Example:

    ```python
    mobilenetv3.core.decode.coco_category_names()[1]  # 'person'
    ```
    """
    text = resources.files("mobilenetv3").joinpath("data/coco_category_names.txt").read_text("utf8")
    names = tuple(text.splitlines())
    if len(names) != NUM_COCO_CATEGORIES:
        raise RuntimeError(f"The packaged COCO category file has {len(names)} lines, not {NUM_COCO_CATEGORIES}.")
    return names


def top_k(predictions: Any, top: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and scores of the `top` highest columns of each row, best first."""
    scores = np.asarray(predictions)
    if scores.ndim != 2:
        raise ValueError(
            f"`preds` must be a 2D array (batch, classes); got shape {scores.shape}."
        )
    if isinstance(top, bool) or not isinstance(top, (int, np.integer)) or not 1 <= top <= scores.shape[1]:
        raise ValueError(f"`top` must be an integer in [1, {scores.shape[1]}]; got {top!r}.")
    order = np.argsort(-scores, axis=1, kind="stable")[:, :top]
    return order, np.take_along_axis(scores, order, axis=1)


def decode_predictions(preds: Any, top: int = 5) -> list[list[tuple[str, str, float]]]:
    """The `top` ImageNet classes of each prediction, as keras.applications
    gives them: per image a list of `(wnid, class name, score)`, best first.

    Args:
        preds: scores (logits or probabilities) of shape `(batch, 1000)`, or
            `(batch, 1001)` in the TF-slim layout with "background" first.
            Any array-like or backend tensor.
        top: how many classes to return per image.

    Raises:
        ValueError: for another shape or an invalid `top`.

    Example:

    ```python
    preds = np.zeros((1, 1000)); preds[0, 285] = 1.0
    mobilenetv3.decode_predictions(preds, top=1)
    # [[('n02124075', 'Egyptian cat', 1.0)]]
    ```
    """
    scores = _to_numpy(preds)
    if scores.ndim != 2 or scores.shape[1] not in (NUM_CLASSES, NUM_CLASSES + 1):
        raise ValueError(
            "`preds` must have shape (batch, 1000) for ImageNet-1k, or (batch, 1001) with "
            f"'background' first (TF-slim); got shape {scores.shape}."
        )
    classes = imagenet_classes()
    if scores.shape[1] == NUM_CLASSES + 1:
        classes = (BACKGROUND,) + classes
    order, best = top_k(scores, top)
    return [
        [(*classes[i], float(s)) for i, s in zip(row_order, row_scores)]
        for row_order, row_scores in zip(order, best)
    ]


def _to_numpy(preds: Any) -> np.ndarray:
    if isinstance(preds, np.ndarray):
        return preds
    try:
        import keras

        return np.asarray(keras.ops.convert_to_numpy(preds))
    except (ImportError, ValueError, TypeError):
        return np.asarray(preds)
