"""A task model on one runtime, image files in, per-image results out.

`open_predictor(model, runtime)` takes a loaded classifier, segmenter or
detector (`mobilenetv3.presets.load_model`) and a runtime of
`mobilenetv3.export.runtimes.RUNTIMES`: "keras" runs the model itself, the
others export it once (into a scratch folder, or `work_dir`) and run the
exported file, the one a user ships. Every image is prepared to one square
size, so images of any size batch together:

- a classifier's images as its preset's `ImagePolicy` says (resize or
  resize-shorter + center crop, interpolation), at the model's input size;
- a segmenter's and a detector's squashed to the model's input size; masks
  come back at each image's own size (class scores resized bilinearly,
  then the argmax), boxes in each image's own pixels.

A quantization-aware twin (`QATModel`, e.g. a preset `train --qat` wrote)
serves as the task of its float model: its class names, its image policy,
its input scaling; other runtimes run its int8 export (the QAT exporters,
the twin's own ranges).

Example:

```python
import numpy as np

import mobilenetv3
from mobilenetv3.serving.predictor import open_predictor

backbone = mobilenetv3.MobileNetV3SmallBackbone(input_shape=(64, 64, 3))
model = mobilenetv3.MobileNetV3ImageClassifier(backbone, 3)
with open_predictor(model, "keras") as predictor:
    images = np.random.uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    results = predictor.run(images, [(480, 640), (64, 64)])
results[0]["probabilities"].shape  # (3,)
```
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mobilenetv3.core import images as image_files
from mobilenetv3.core.normalization import ImagePolicy
from mobilenetv3.core.utils import scratch_dir
from mobilenetv3.export.runtimes import KERAS, RUNTIMES, check_runtimes, open_export
from mobilenetv3.presets import preprocessing
from mobilenetv3.presets.loader import task_kind

KINDS = ("classifier", "segmenter", "detector")


class Predictor:
    """A loaded task model on one runtime (see the module docstring).

    Attributes:
        kind: "classifier", "segmenter" or "detector".
        runtime: the runtime's name in `RUNTIMES`.
        image_size: the square size every image is prepared to.
        class_names: the model's class names, or None.
        num_classes: the classes it tells apart.
        policy: the `ImagePolicy` images are prepared with.
    """

    def __init__(self, model: Any, runtime: str, predict: Callable[[np.ndarray], Any], policy: ImagePolicy,
                 closer: contextlib.ExitStack | None = None) -> None:
        self.model, self.runtime, self._predict, self.policy = model, runtime, predict, policy
        self.kind = task_kind(model)
        self.image_size = policy.image_size
        self.class_names = getattr(model, "class_names", None)
        self.num_classes = int(model.num_classes)
        self._rescale = not getattr(model, "backbone", model).include_rescaling
        self._closer = closer or contextlib.ExitStack()

    def prepare(self, path: str | os.PathLike) -> tuple[np.ndarray, tuple[int, int]]:
        """One file as this model's input, float32 `(size, size, 3)`, and
        its original `(height, width)`; an `ImageError` (a ValueError
        naming the file) when it cannot be read."""
        picture = image_files.open_rgb(path)
        array = preprocessing.apply_policy(picture, self.policy)
        if self._rescale:
            array = preprocessing.rescale(array, self.policy.mode)
        return array, (picture.height, picture.width)

    def run(self, images: np.ndarray, sizes: list[tuple[int, int]]) -> list[dict[str, np.ndarray]]:
        """Results of a prepared batch, one dict per image: a classifier's
        `{"probabilities": (num_classes,)}`; a detector's `{"boxes": (k, 4)
        xyxy pixels of the original image, "scores": (k,), "labels": (k,)}`;
        a segmenter's `{"mask": (height, width) int32}` at the original
        size. `sizes` are the images' original (height, width)."""
        outputs = self._predict(np.ascontiguousarray(images, dtype="float32"))
        if self.kind == "classifier":
            return _classifications(outputs, self.model.activation == "softmax")
        if self.kind == "segmenter":
            return [{"mask": _mask_at(scores, size)} for scores, size in zip(outputs, sizes)]
        return _detections(self.model, outputs, sizes)

    def close(self) -> None:
        """Remove the exported file (when the predictor made it)."""
        self._closer.close()

    def __enter__(self) -> Predictor:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def open_predictor(
    model: Any,
    runtime: str = KERAS,
    *,
    work_dir: str | os.PathLike | None = None,
    threads: int | None = None,
    log: Callable[[str], None] = print,
) -> Predictor:
    """A `Predictor` of `model` (a classifier, segmenter or detector) on
    `runtime`: "keras", or a runtime of `RUNTIMES` that runs the model's
    export, written into `work_dir` (default a scratch folder removed by
    `Predictor.close()`). A quantization-aware twin of one of these runs as
    its task (see the module docstring).

    Example:

    ```python
    with open_predictor(model, "onnxruntime") as predictor:
        results = predictor.run(*prepared)
    ```
    """
    kind = task_kind(model)
    if kind not in KINDS:
        raise ValueError(f"`model` must be a classifier, segmenter or detector (or the quantization-aware twin of "
                         f"one); got a {kind}.")
    if runtime not in RUNTIMES:
        raise ValueError(f"`runtime` must be one of {list(RUNTIMES)}; got {runtime!r}.")
    check_runtimes([runtime])
    policy = input_policy(model)
    if runtime == KERAS:
        return Predictor(model, runtime, _keras_predict(model), policy)
    closer = contextlib.ExitStack()
    try:
        folder = Path(work_dir) if work_dir is not None else closer.enter_context(scratch_dir("serving"))
        folder.mkdir(parents=True, exist_ok=True)
        predict = _export_and_open(model, runtime, folder, policy.image_size, threads, log)
    except BaseException:
        closer.close()
        raise
    return Predictor(model, runtime, predict, policy, closer)


def input_policy(model: Any) -> ImagePolicy:
    """How `model`'s images are prepared: its preset's policy at the
    model's input size; squashed (no crop) for segmenters and detectors."""
    policy = ImagePolicy.of_model(model)
    kind = task_kind(model)
    if kind == "detector":
        size = int(model.image_size[0])
    else:
        height, width = tuple(model.input_shape[1:3])
        size = int(height) if height is not None and height == width else policy.image_size
    policy = policy.resized_to(size)
    if kind != "classifier":
        policy = dataclasses.replace(policy, resize="squash", resize_size=None)
    return policy


def _keras_predict(model: Any) -> Callable[[np.ndarray], Any]:
    import keras

    if task_kind(model) == "detector":  # the raw outputs, decoded as an export's are
        return lambda images: {k: keras.ops.convert_to_numpy(v) for k, v in model(images, training=False).items()}
    return lambda images: np.asarray(model.predict_on_batch(images))


def _export_and_open(model: Any, runtime: str, folder: Path, size: int, threads: int | None,
                     log: Callable[[str], None]) -> Callable[[np.ndarray], Any]:
    from mobilenetv3.export.formats import EXPORTERS, export_model

    exporter = EXPORTERS[RUNTIMES[runtime].format]
    path = folder / f"model{exporter.suffix}"
    kind = task_kind(model)
    what = f"quantization-aware {kind} (int8, its own ranges)" if model.kind != kind else kind
    log(f"exporting the {what} to {exporter.name} ({size}x{size}) to run on {runtime} ...")
    export_model(model, path, exporter.name, input_size=size)
    opened = open_export(runtime, path, threads)
    if kind == "detector":
        return lambda images: _detector_outputs(opened(images))
    return lambda images: _only_output(opened(images))


def _only_output(outputs: dict[str, np.ndarray]) -> np.ndarray:
    (value,) = outputs.values()
    return np.asarray(value)


def _detector_outputs(outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A detector export's outputs by role, matched by name."""
    found = {}
    for role in ("bbox_regression", "cls_logits"):
        names = [name for name in outputs if role in name]
        if len(names) != 1:
            raise RuntimeError(f"The exported detector's outputs {sorted(outputs)} do not name `{role}` once.")
        found[role] = np.asarray(outputs[names[0]])
    return found


def _classifications(outputs: np.ndarray, softmax: bool) -> list[dict[str, np.ndarray]]:
    scores = np.asarray(outputs, "float32")
    if not softmax:
        shifted = np.exp(scores - scores.max(axis=-1, keepdims=True))
        scores = shifted / shifted.sum(axis=-1, keepdims=True)
    return [{"probabilities": row} for row in scores]


def _mask_at(scores: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The argmax class per pixel of `(s, s, classes)` scores resized
    bilinearly to `size` (height, width)."""
    from PIL import Image

    height, width = size
    scores = np.asarray(scores, "float32")
    if scores.shape[:2] != (height, width):
        scores = np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(scores[..., c]), mode="F")
                                      .resize((width, height), Image.BILINEAR))
                           for c in range(scores.shape[-1])], axis=-1)
    return np.argmax(scores, axis=-1).astype("int32")


def _detections(model: Any, outputs: dict[str, np.ndarray], sizes: list[tuple[int, int]]) -> list[dict]:
    from mobilenetv3.export.detector_export import decode_raw_outputs

    model_size = tuple(int(s) for s in model.image_size)
    found = decode_raw_outputs(
        outputs["cls_logits"], outputs["bbox_regression"], np.asarray(model.anchors), model_size, model_size,
        score_threshold=model.score_threshold, iou_threshold=model.iou_threshold,
        max_detections=model.max_detections, topk_candidates=model.topk_candidates,
    )
    results = []
    for index, (height, width) in enumerate(sizes):
        count = int(found["num_detections"][index])
        scale = np.asarray([width / model_size[1], height / model_size[0]] * 2, "float32")
        boxes = np.asarray(found["boxes"][index, :count], "float32") * scale
        boxes = np.clip(boxes, 0, [width, height, width, height]).astype("float32")
        results.append({"boxes": boxes, "scores": np.asarray(found["confidence"][index, :count], "float32"),
                        "labels": np.asarray(found["labels"][index, :count], "int32")})
    return results
