"""`evaluate`: a classifier, detector or segmenter measured on a labelled
dataset, on Keras or on the exported file a user ships.

The images stream through `serving.stream.stream_batches` (decoded in
parallel, a few batches in memory) into a `serving.predictor.Predictor`
on the chosen runtime; the metrics accumulate batch by batch
(`serving.metrics`). Images that cannot be read are counted, listed in the
report and left out of the metrics, never the end of the run. The JSON
report is written atomically (complete or absent).

Report (and return value) keys: `task`, `runtime`, `model`, `dataset`
(`source`, `format`, `images`, `evaluated`, `unreadable`), `metrics`
(classifier: `top1`, `top5` in percent, `per_class`; detector: the 12
`COCOeval` numbers in 0..1 named as in `metrics.COCO_STATS`; segmenter:
`miou`, `pixel_accuracy`, `mean_class_accuracy` in percent, `per_class_iou`),
`unreadable_images` (path and reason, the first `LISTED_FAILURES`),
`settings`, `setup_seconds` (opening the runtime: exporting the model for
one other than Keras), `seconds` and `images_per_second` (decode, model and
metrics of every image).

Example:

```python
# not run: needs an ImageNet validation folder
report = evaluate("mobilenet_v3_large_imagenet_classifier", "imagenet/val", runtime="onnxruntime",
                  report="large.json")
report["metrics"]["top1"]
```
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mobilenetv3.serving import datasets, metrics

# Unreadable images named in the report (all are counted).
LISTED_FAILURES = 100
# A detector's head is evaluated as torchvision's reference evaluates
# SSDLite: every detection scoring above 0.001, at most 300 per image.
DETECTOR_HEAD_ARGS = {"score_threshold": 0.001, "max_detections": 300}


def evaluate(
    model_or_preset: Any,
    data: str | os.PathLike,
    *,
    task: str | None = None,
    runtime: str = "keras",
    batch_size: int = 32,
    workers: int | None = None,
    report: str | os.PathLike | None = None,
    predictions: str | os.PathLike | None = None,
    annotations: str | os.PathLike | None = None,
    split: str = "val",
    ignore_index: int = datasets.DEFAULT_IGNORE_INDEX,
    class_map: dict | None = None,
    limit: int | None = None,
    load_kwargs: dict | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Evaluate a model on the labelled dataset `data`.

    Args:
        model_or_preset: a loaded classifier, detector or segmenter, or
            what `mobilenetv3.presets.load_model` takes (a registered
            preset name, a preset folder, a weights file, a handle).
        data: the dataset (layouts in `mobilenetv3.serving.datasets`).
        task: "classifier", "detector" or "segmenter"; None: told by `data`.
        runtime: "keras", "onnxruntime", "litert" or "openvino": the
            latter export the model once and run the exported file.
        batch_size: images per model call.
        workers: decoding threads (default: one per core, at most 8).
        report: where to write the JSON report (atomically), or None.
        predictions: where to write the raw predictions (atomically), or
            None: a classifier's JSON lines (`path`, `target`,
            `probabilities`), a detector's COCO results JSON (`loadRes`'s
            format), a segmenter's folder of PNG masks (`<image stem>.png`).
        annotations: a detector's COCO instances JSON (default
            `data/annotations.json`).
        split: the VOC / Cityscapes split.
        ignore_index: segmentation mask value left out of the metrics.
        class_map: classification: `{folder or label: class name or
            index}`; segmentation: `{mask value: class}`, unlisted values
            ignored.
        limit: evaluate only the first `limit` images (a quick check).
        load_kwargs: more `load_model` keywords (e.g. `weights_file`).
        progress: show a progress line on stderr.
        log: where one-line notes go.

    Returns:
        The report (see the module docstring).

    Raises:
        ValueError: bad arguments, a dataset that cannot be read or that
            names classes the model lacks (before any image is decoded),
            a mask that does not fit its image or the model's classes.

    Example:

    ```python
    # not run: needs a COCO validation set
    evaluate("ssdlite_folder", "val2017", annotations="instances_val2017.json")["metrics"]["AP"]
    ```
    """
    from mobilenetv3.serving.predictor import open_predictor
    from mobilenetv3.serving.stream import progress as progress_line
    from mobilenetv3.serving.stream import stream_batches

    _check_int("batch_size", batch_size)
    if workers is not None:
        _check_int("workers", workers)
    if limit is not None:
        _check_int("limit", limit)
    dataset = datasets.open_dataset(data, task, annotations=annotations, split=split)
    if limit is not None:
        dataset.items = dataset.items[:limit]
    if dataset.task == "segmenter":
        datasets.check_mask_sizes(dataset)
    if dataset.task == "detector":
        metrics.check_pycocotools()
    model = _load(model_or_preset, dataset.task, load_kwargs or {}, log)
    scorer = _scorer(model, dataset, ignore_index, class_map, predictions)
    files = [path for path, _ in dataset.items]
    opened = time.perf_counter()
    failures: list[tuple[str, str]] = []
    with contextlib.ExitStack() as stack:  # the predictions appear complete, or not at all
        if predictions is not None:
            scorer.begin(stack, predictions)
        predictor = stack.enter_context(open_predictor(model, runtime, log=log))
        start = time.perf_counter()  # the images' time, after any export
        bar = stack.enter_context(progress_line(len(files), "images", enabled=progress))
        for batch in stream_batches(files, predictor.prepare, batch_size=batch_size, workers=workers):
            failures.extend(batch.failures)
            scorer.skip([path for path, _ in batch.failures])
            if batch.images is not None:
                scorer.update(batch.paths, predictor.run(batch.images, batch.sizes))
            bar.update(len(batch.paths) + len(batch.failures))
        if len(failures) == len(files):
            raise ValueError(f"None of the {len(files)} images of {dataset.source!r} could be read "
                             f"(first: {failures[0][0]}: {failures[0][1]}).")
        scorer.finish()
    seconds = time.perf_counter() - start
    evaluated = len(files) - len(failures)
    result = {
        "task": dataset.task,
        "runtime": runtime,
        "model": {"source": str(model_or_preset) if isinstance(model_or_preset, (str, os.PathLike))
                  else type(model).__name__, "class": type(model).__name__, "num_classes": int(model.num_classes)},
        "dataset": {"source": dataset.source, "format": dataset.format, "images": len(files),
                    "evaluated": evaluated, "unreadable": len(failures)},
        "settings": _settings(model, dataset.task, batch_size, limit, ignore_index, class_map),
        "metrics": scorer.result(),
        "unreadable_images": [{"path": p, "reason": r} for p, r in failures[:LISTED_FAILURES]],
        "note": ("unreadable images are counted in dataset.unreadable, listed (the first "
                 f"{LISTED_FAILURES}) in unreadable_images and left out of the metrics"),
        "setup_seconds": round(start - opened, 3),
        "seconds": round(seconds, 3),
        "images_per_second": round(evaluated / seconds, 2) if seconds > 0 else None,
    }
    if failures:
        log(f"{len(failures)} of {len(files)} images could not be read and are left out (see the report).")
    if report is not None:
        write_json(report, result)
    return result


def write_json(path: str | os.PathLike, value: Any) -> None:
    """`value` as a JSON file at `path`, atomically."""
    from mobilenetv3.core.utils import atomic_path

    with atomic_path(path) as staging:
        staging.write_text(json.dumps(value, indent=2) + "\n")


def _settings(model: Any, task: str, batch_size: int, limit: int | None, ignore_index: int,
              class_map: dict | None) -> dict[str, Any]:
    settings: dict[str, Any] = {"batch_size": batch_size, "limit": limit, "class_map": class_map}
    if task == "detector":
        settings.update(score_threshold=float(model.score_threshold), max_detections=int(model.max_detections))
    if task == "segmenter":
        settings["ignore_index"] = ignore_index
    return settings


def _check_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer; got {value!r}.")


def _load(model_or_preset: Any, task: str, load_kwargs: dict, log: Callable[[str], None]) -> Any:
    from mobilenetv3.presets import loader

    cls = loader.model_class(task)
    if isinstance(model_or_preset, (str, os.PathLike)):
        head_args = DETECTOR_HEAD_ARGS if task == "detector" else None
        model = loader.load_model(str(model_or_preset), cls, head_args=head_args, **load_kwargs)
        what = f"{str(model_or_preset)!r}"
    else:
        model, what = model_or_preset, "the model"
    kind = loader.task_kind(model)  # a quantization-aware twin's: its float model's
    if kind != task:
        raise ValueError(f"The dataset is a {task} dataset, but {what} holds a {kind}.")
    if task == "detector" and model.score_threshold > DETECTOR_HEAD_ARGS["score_threshold"]:
        log(f"note: the detector keeps detections scoring above {model.score_threshold:g} only; COCO numbers are "
            f"usually measured above {DETECTOR_HEAD_ARGS['score_threshold']:g} (a preset is loaded so)")
    return model


def _scorer(model: Any, dataset: datasets.EvalDataset, ignore_index: int, class_map: dict | None,
            predictions: Any) -> _Scorer:
    names = getattr(model, "class_names", None)
    names = list(names) if names is not None and len(names) == model.num_classes else None
    if dataset.task == "classifier":
        labelled = datasets.classification_labels(dataset, model.num_classes, names, class_map)
        return _Classification(labelled, model.num_classes, names or _imagenet_names(model.num_classes))
    if dataset.task == "detector":
        categories = datasets.coco_categories(dataset.coco["categories"], model.num_classes, names)
        return _Detection(dataset, categories)
    if predictions is not None and model.num_classes > 256:
        raise ValueError("Mask predictions are written as 8-bit PNGs: at most 256 classes.")
    lookup = datasets.mask_lookup(dataset, class_map, ignore_index)
    if names is None and dataset.format == "cityscapes" and model.num_classes == len(datasets.CITYSCAPES_CLASSES):
        names = list(datasets.CITYSCAPES_CLASSES)
    return _Segmentation(dataset, model.num_classes, names, ignore_index, lookup)


def _imagenet_names(num_classes: int) -> list[str] | None:
    """"wnid name" per output of a 1000- or 1001-class (background first)
    ImageNet model, for the per-class table; None for other models."""
    from mobilenetv3.core import decode

    if num_classes not in (decode.NUM_CLASSES, decode.NUM_CLASSES + 1):
        return None
    names = [f"{wnid} {name}" for wnid, name in decode.imagenet_classes()]
    return ["background"] * (num_classes - decode.NUM_CLASSES) + names


class _Scorer:
    """Targets by path (in order, so a file listed twice is scored twice)
    and a metric accumulator."""

    def __init__(self, items: list[tuple[str, Any]]) -> None:
        self.targets: dict[str, collections.deque] = collections.defaultdict(collections.deque)
        for path, target in items:
            self.targets[path].append(target)

    def skip(self, paths: list[str]) -> None:
        for path in paths:
            self.targets[path].popleft()

    def update(self, paths: list[str], outputs: list[dict]) -> None:
        for path, output in zip(paths, outputs):
            self.add(path, self.targets[path].popleft(), output)

    def add(self, path: str, target: Any, output: dict) -> None:
        raise NotImplementedError

    def result(self) -> dict:
        raise NotImplementedError

    def begin(self, stack: contextlib.ExitStack, path: str | os.PathLike) -> None:
        """Write the predictions under `path`, atomically: staged while
        `stack` is open, in place once it closes without an error."""

    def finish(self) -> None:
        """The last predictions written (before the stack closes)."""


class _Classification(_Scorer):
    def __init__(self, items: list, num_classes: int, names: list[str] | None) -> None:
        super().__init__(items)
        self.names = names
        self.accuracy = metrics.TopKAccuracy(num_classes)
        self.file: Any = None

    def begin(self, stack: contextlib.ExitStack, path: str | os.PathLike) -> None:
        from mobilenetv3.core.utils import atomic_path

        self.file = stack.enter_context(open(stack.enter_context(atomic_path(path)), "w"))  # noqa: SIM115

    def add(self, path: str, target: Any, output: dict) -> None:
        probabilities = np.asarray(output["probabilities"], "float32")
        self.accuracy.update(probabilities[None], np.array([target]))
        if self.file is not None:
            self.file.write(json.dumps({"path": path, "target": int(target),
                                        "probabilities": [float(p) for p in probabilities]}) + "\n")

    def result(self) -> dict:
        return self.accuracy.result(self.names)


class _Detection(_Scorer):
    def __init__(self, dataset: datasets.EvalDataset, categories: dict[int, int]) -> None:
        super().__init__(dataset.items)
        self.coco, self.categories = dataset.coco, categories
        self.results: list[dict] = []
        self.image_ids: list[int] = []
        self.staging: Path | None = None

    def add(self, path: str, target: Any, output: dict) -> None:
        self.image_ids.append(int(target))
        for box, score, label in zip(output["boxes"], output["scores"], output["labels"]):
            category = self.categories.get(int(label))
            if category is None:  # background or a label the dataset has no category for
                continue
            x1, y1, x2, y2 = (float(v) for v in box)
            self.results.append({"image_id": int(target), "category_id": category,
                                 "bbox": [x1, y1, x2 - x1, y2 - y1], "score": float(score)})

    def result(self) -> dict:
        return metrics.coco_metrics(self.coco, self.results, self.image_ids)

    def begin(self, stack: contextlib.ExitStack, path: str | os.PathLike) -> None:
        from mobilenetv3.core.utils import atomic_path

        self.staging = stack.enter_context(atomic_path(path))

    def finish(self) -> None:
        if self.staging is not None:
            self.staging.write_text(json.dumps(self.results) + "\n")


class _Segmentation(_Scorer):
    def __init__(self, dataset: datasets.EvalDataset, num_classes: int, names: list[str] | None,
                 ignore_index: int, lookup: np.ndarray | None) -> None:
        super().__init__(dataset.items)
        self.names, self.lookup = names, lookup
        self.matrix = metrics.ConfusionMatrix(num_classes, ignore_index)
        self.folder: Path | None = None

    def begin(self, stack: contextlib.ExitStack, path: str | os.PathLike) -> None:
        from mobilenetv3.core.utils import atomic_path

        self.folder = stack.enter_context(atomic_path(path, directory=True))
        self.folder.mkdir()

    def add(self, path: str, target: Any, output: dict) -> None:
        truth = datasets.read_mask(target, self.lookup)
        predicted = np.asarray(output["mask"])
        if truth.shape != predicted.shape:
            raise ValueError(f"Mask {target!r} is {truth.shape[1]}x{truth.shape[0]} but its image {path!r} is "
                             f"{predicted.shape[1]}x{predicted.shape[0]} (width x height).")
        self.matrix.update(truth, predicted, source=f"Mask {target!r}")
        if self.folder is not None:
            from PIL import Image

            file = self.folder / f"{Path(path).stem}.png"
            if file.exists():
                raise ValueError(f"Two images are named {Path(path).stem!r}: their mask files would collide.")
            Image.fromarray(predicted.astype("uint8")).save(file)

    def result(self) -> dict:
        return self.matrix.result(self.names)
