"""Train an LR-ASPP segmenter (`mobilenetv3 train --task segment`).

The data is the package's generated shapes (`datasets.synthetic_segmentation`:
images and class masks). A new `MobileNetV3ImageSegmenter` head goes on the
backbone of a preset, the whole network trains with Adam and pixel-wise
cross-entropy, the BatchNorm statistics are recomputed from the training
images at the end (`calibrate_batchnorm`, so they match the final weights
whatever the number of steps), and the held-out images are scored by the
foreground mean IoU (`datasets.mean_iou`, background left out: the
all-background answer scores 0). The segmenter is written as a preset folder,
which `mobilenetv3 segment` reads.
"""

from __future__ import annotations

import dataclasses
import os

import keras
import numpy as np

from mobilenetv3.datasets.segmentation import SEGMENTATION_CLASSES, mean_iou, synthetic_segmentation
from mobilenetv3.presets import folders
from mobilenetv3.tasks import MobileNetV3ImageSegmenter
from mobilenetv3.training.recipe import array_batches, calibrate_batchnorm, check_finite_weights

CALIBRATION_BATCHES = 20


@dataclasses.dataclass
class SegmenterTrainResult:
    """What `train_segmenter` returns.

    Attributes:
        model: the trained segmenter.
        class_names: names indexed by label (0: "background").
        history: per-epoch losses.
        foreground_iou: mean IoU over the foreground classes on the held-out
            images (None without any).
    """

    model: MobileNetV3ImageSegmenter
    class_names: list[str]
    history: dict[str, list[float]]
    foreground_iou: float | None


def train_segmenter(
    synthetic_images: int,
    preset: str = "mobilenet_v3_small",
    *,
    image_size: int = 96,
    batch_size: int = 16,
    epochs: int = 10,
    learning_rate: float = 5e-3,
    load_weights: bool | None = None,
    validation_split: float = 0.1,
    output_stride: int = 16,
    out: str | os.PathLike | None = None,
    seed: int = 0,
    verbose: int = 1,
) -> SegmenterTrainResult:
    """Train an LR-ASPP head and its backbone on generated shapes.

    Args:
        synthetic_images: how many generated images (`datasets.synthetic_segmentation`).
        preset: a backbone (or any) preset whose backbone carries the head.
        image_size: square image side.
        batch_size, epochs, learning_rate: Adam training.
        load_weights: passed to `from_preset` (False: random backbone).
        validation_split: fraction of images held out for the IoU.
        output_stride: the backbone's output stride (16: LR-ASPP's).
        out: preset folder to write the segmenter to; nothing is written
            when training diverged.
        seed: data (and weight initialization) seed.
        verbose: Keras' fit verbosity (1: progress bar).

    Example:

    ```python
    result = train_segmenter(320, image_size=96, epochs=8, out="shapes_segmenter")
    result.foreground_iou
    ```
    """
    for argument, value in (("synthetic_images", synthetic_images), ("image_size", image_size),
                            ("batch_size", batch_size), ("epochs", epochs)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"`{argument}` must be a positive integer; got {value!r}.")
    if not 0 <= validation_split < 1:
        raise ValueError(f"`validation_split` must be in [0, 1); got {validation_split!r}.")
    images, masks = synthetic_segmentation(synthetic_images, image_size, seed=seed)
    order = np.random.default_rng(seed).permutation(len(images))
    held = int(round(len(images) * validation_split))
    val, train = order[:held], order[held:]
    keras.utils.set_random_seed(seed)
    model = MobileNetV3ImageSegmenter.from_preset(
        preset, num_classes=len(SEGMENTATION_CLASSES), load_weights=load_weights, output_stride=output_stride,
    )
    model.compile(keras.optimizers.Adam(learning_rate), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit(images[train], masks[train], batch_size=batch_size, epochs=epochs, verbose=verbose)
    # BatchNorm statistics of the final weights, whatever the number of steps ("precise BN").
    calibrate_batchnorm(model, array_batches(images[train], batch_size, seed), CALIBRATION_BATCHES)
    check_finite_weights(model, out)
    score = None
    if held:
        predicted = np.argmax(model.predict(images[val], batch_size=batch_size, verbose=0), axis=-1)
        score = mean_iou(masks[val], predicted, len(SEGMENTATION_CLASSES), ignore_background=True)
    if out is not None:
        folders.save_preset(model, out, class_names=list(SEGMENTATION_CLASSES))
    return SegmenterTrainResult(model, list(SEGMENTATION_CLASSES), history.history, score)
