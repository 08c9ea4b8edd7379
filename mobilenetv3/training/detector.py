"""Train an SSDLite detector (`mobilenetv3 train --task detect`).

The data is a detection folder (images plus a COCO `annotations.json`, see
`datasets.read_coco_folder`) or the package's generated shapes
(`datasets.synthetic_detection`). A new `MobileNetV3ObjectDetector` head
goes on the backbone of a preset, the whole network trains with Adam and
SSD's loss, the BatchNorm statistics are recomputed from the training images
at the end, and the held-out images are scored by pycocotools (COCO
AP@0.5). The detector is written as a preset folder with its class names,
which `mobilenetv3 detect` prints and draws.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import keras
import numpy as np

from mobilenetv3.core import keras_internals as internals
from mobilenetv3.core.utils import check_positive_int
from mobilenetv3.datasets.detection import DETECTION_CLASSES, read_coco_folder, synthetic_detection
from mobilenetv3.presets import folders
from mobilenetv3.tasks import MobileNetV3ObjectDetector
from mobilenetv3.training.recipe import array_batches, calibrate_batchnorm, check_finite_weights

# Short runs (hundreds of steps): BatchNorm statistics must settle quickly; they are
# recomputed from the training images at the end anyway (`calibrate_batchnorm`).
TRAINING_BN_MOMENTUM = 0.9
CALIBRATION_BATCHES = 20


@dataclasses.dataclass
class DetectorTrainResult:
    """What `train_detector` returns.

    Attributes:
        model: the trained detector.
        class_names: names indexed by label (0: "background").
        history: per-epoch losses.
        map50: COCO AP@0.5 on the held-out images (None without any, or
            when they hold no box: COCO's AP is then undefined).
    """

    model: MobileNetV3ObjectDetector
    class_names: list[str]
    history: dict[str, list[float]]
    map50: float | None


def train_detector(
    data_dir: str | os.PathLike | None,
    preset: str = "mobilenet_v3_small",
    *,
    synthetic_images: int | None = None,
    image_size: int = 320,
    batch_size: int = 16,
    epochs: int = 10,
    learning_rate: float = 2e-3,
    load_weights: bool | None = None,
    validation_split: float = 0.1,
    out: str | os.PathLike | None = None,
    seed: int = 0,
    verbose: int = 1,
) -> DetectorTrainResult:
    """Train a detector head and its backbone on a detection folder.

    Args:
        data_dir: a detection folder (`datasets.read_coco_folder`), or
            None with `synthetic_images`.
        preset: a backbone (or any) preset whose backbone carries the head.
        synthetic_images: train on this many generated shapes images
            (`datasets.synthetic_detection`) instead of `data_dir`.
        image_size: square network input; images are resized to it.
        batch_size, epochs, learning_rate: Adam training.
        load_weights: passed to `from_preset` (False: random backbone).
        validation_split: fraction of images held out for COCO AP@0.5.
        out: preset folder to write the detector to (with class names);
            nothing is written when training diverged (a RuntimeError
            naming the first NaN or infinite weight).
        seed: data split (and generated data) seed.
        verbose: Keras' fit verbosity (1: progress bar).

    Example:

    ```python
    result = train_detector(None, synthetic_images=640, image_size=128, out="shapes_detector")
    result.map50
    ```
    """
    for argument, value in (("image_size", image_size), ("batch_size", batch_size), ("epochs", epochs)):
        check_positive_int(argument, value)
    if not 0 <= validation_split < 1:
        raise ValueError(f"`validation_split` must be in [0, 1); got {validation_split!r}.")
    images, targets, class_names = _load_data(data_dir, synthetic_images, image_size, seed)
    order = np.random.default_rng(seed).permutation(len(images))
    held = int(round(len(images) * validation_split))
    val, train = order[:held], order[held:]
    model = MobileNetV3ObjectDetector.from_preset(
        preset, num_classes=len(class_names), image_size=image_size, load_weights=load_weights,
        score_threshold=0.01, max_detections=50,
    )
    for layer in internals.all_layers(model):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = TRAINING_BN_MOMENTUM
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), jit_compile=False)
    history = model.fit(images[train], _take(targets, train), batch_size=batch_size, epochs=epochs, verbose=verbose)
    # BatchNorm statistics of the final weights, whatever the number of steps ("precise BN").
    calibrate_batchnorm(model, array_batches(images[train], batch_size, seed), CALIBRATION_BATCHES)
    check_finite_weights(model, out)
    map50 = None
    if held and (targets["labels"][val] != -1).any():
        from mobilenetv3.detection.evaluate import coco_map

        found = model.predict(images[val], batch_size=batch_size, verbose=0)
        map50 = coco_map(_take(targets, val), found, (image_size, image_size))["map50"]
    if out is not None:
        folders.save_preset(model, out, class_names=class_names)
    return DetectorTrainResult(model, class_names, history.history, map50)


def _load_data(
    data_dir: Any, synthetic_images: int | None, image_size: int, seed: int
) -> tuple[np.ndarray, dict[str, np.ndarray], list[str]]:
    if (data_dir is None) == (synthetic_images is None):
        raise ValueError("Pass either a detection folder (`data_dir`) or `synthetic_images`, not both or neither.")
    if synthetic_images is not None:
        images, targets = synthetic_detection(synthetic_images, image_size, seed=seed)
        return images, targets, list(DETECTION_CLASSES)
    return read_coco_folder(data_dir, image_size)


def _take(targets: dict[str, np.ndarray], index: np.ndarray) -> dict[str, np.ndarray]:
    return {key: value[index] for key, value in targets.items()}
