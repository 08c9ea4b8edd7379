"""Quantization-aware training of a trained classifier on a folder of images.

`quantize_classifier` makes the classifier's quantization-aware twin
(`mobilenetv3.quantization.quantize_aware`), sets its ranges on the images
(`calibrate_ranges`), trains it on random crops and flips of them, and
writes it as a preset that `mobilenetv3 export` turns into int8 files.

The loss: where the folder's class sub-folders are the classifier's classes,
its labels (cross-entropy); otherwise distillation from the float classifier,
which labels each crop with its own logits (the twin learns to compute what
the float model computes, so a folder of the user's own unlabeled images is
enough to quantize a pretrained checkpoint).
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import Any

import keras
import numpy as np

from mobilenetv3.core import images
from mobilenetv3.core.images import IMAGE_SUFFIXES
from mobilenetv3.core.normalization import ImagePolicy
from mobilenetv3.core.utils import check_positive_int
from mobilenetv3.presets import folders, loader
from mobilenetv3.presets.preprocessing import load_images
from mobilenetv3.quantization import QATModel, calibrate_ranges, quantize_aware

LABELS, DISTILLATION = "labels", "distillation"
# Random crops keep 30-100% of the image side (then a flip half the time).
CROP_SIDE = (0.3, 1.0)
DEFAULT_IMAGE_SIZE = 224


@dataclasses.dataclass
class QATResult:
    """What `quantize_classifier` returns.

    Attributes:
        model: the trained `QATModel`.
        loss: "labels" (cross-entropy on the folder's classes) or
            "distillation" (the float classifier's logits as targets).
        history: per-epoch training metrics.
        agreement: fraction of the held-out images on which the twin's
            top-1 class is the float classifier's.
        accuracy: with labels, the twin's top-1 accuracy on the held-out
            images (None without labels).
        held_out: how many images were held out (never trained on).
    """

    model: QATModel
    loss: str
    history: dict[str, list[float]]
    agreement: float
    accuracy: float | None
    held_out: int


class _Crops(keras.utils.PyDataset):
    """Batches of random crops and flips of the training images, with their
    targets: labels, or the teacher's outputs on the same crops."""

    def __init__(self, photos: list[Any], labels: np.ndarray | None, teacher: keras.Model | None, size: int,
                 crops_per_image: int, batch_size: int, seed: int) -> None:
        super().__init__()
        self.photos, self.labels, self.teacher = photos, labels, teacher
        self.size, self.batch_size, self.seed = size, batch_size, seed
        self.count = len(photos) * crops_per_image
        self.epoch = 0

    def __len__(self) -> int:
        return math.ceil(self.count / self.batch_size)

    def on_epoch_end(self) -> None:
        self.epoch += 1

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng((self.seed, self.epoch, index))
        picks = [(index * self.batch_size + i) % len(self.photos)
                 for i in range(min(self.batch_size, self.count - index * self.batch_size))]
        batch = np.stack([random_crop(self.photos[p], self.size, rng) for p in picks])
        if self.teacher is not None:
            return batch, keras.ops.convert_to_numpy(self.teacher(batch, training=False))
        return batch, self.labels[picks]


def random_crop(photo: Any, size: int, rng: np.random.Generator) -> np.ndarray:
    """A random square crop of a PIL image (`CROP_SIDE` of its shorter
    side), resized bilinearly to `size` and flipped half the time: float32
    RGB in 0..255."""
    from PIL import Image

    width, height = photo.size
    side = max(1, int(min(width, height) * rng.uniform(*CROP_SIDE)))
    left, top = int(rng.integers(0, width - side + 1)), int(rng.integers(0, height - side + 1))
    crop = np.asarray(photo.crop((left, top, left + side, top + side)).resize((size, size), Image.BILINEAR),
                      "float32")
    return crop[:, ::-1] if rng.random() < 0.5 else crop


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _labelled_files(folder: Path, class_names: list[str] | None) -> list[tuple[Path, int]] | None:
    """`(file, class index)` of each image in the folder's class sub-folders
    when those are exactly the classifier's classes, else None."""
    if not class_names:
        return None
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and _image_files(p))
    if sorted(class_names) != classes:
        return None
    return [(file, class_names.index(name)) for name in classes for file in _image_files(folder / name)]


def _open_photos(files: list[Path], size: int, folder: Path) -> tuple[list[Any], list[int]]:
    """The readable images (PIL, shorter side at most `2 * size`) and their
    indices in `files`; unreadable files are named in one warning."""
    photos, kept, skipped = [], [], []
    for index, file in enumerate(files):
        try:
            photo = images.open_training_image(file)
        except images.ImageError as error:
            skipped.append(str(error))
            continue
        shrink = min(photo.size) / (2 * size)
        if shrink > 1:
            photo = photo.resize((round(photo.size[0] / shrink), round(photo.size[1] / shrink)))
        photos.append(photo)
        kept.append(index)
    images.warn_skipped(skipped, folder)
    return photos, kept


def _load_classifier(preset: Any) -> keras.Model:
    model = preset if isinstance(preset, keras.Model) else loader.load_model(preset)
    if isinstance(model, QATModel) or getattr(model, "num_classes", None) is None:
        raise ValueError(
            f"`preset` must be a float classifier (a classifier preset name or folder, e.g. one written by "
            f"`mobilenetv3 train`); got a {type(model).__name__}.")
    return model


def _input_size(model: keras.Model) -> int:
    height, width = tuple(model.inputs[0].shape[1:3])
    if height is None or width is None:
        return DEFAULT_IMAGE_SIZE
    if height != width:
        raise ValueError(f"quantize_classifier needs a square input; the classifier takes {height}x{width}.")
    return int(height)


def _split(count: int, validation_split: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if not 0 <= validation_split < 1:
        raise ValueError(f"`validation_split` must be in [0, 1); got {validation_split!r}.")
    order = np.random.default_rng(seed).permutation(count)
    held_out = int(round(validation_split * count))
    if count - held_out < 1:
        raise ValueError(f"`validation_split` {validation_split} leaves no training image of {count}.")
    return order[held_out:], order[:held_out]


def _top1(model: keras.Model, batch: np.ndarray) -> np.ndarray:
    return np.argmax(keras.ops.convert_to_numpy(model.predict(batch, verbose=0, batch_size=16)), axis=-1)


def quantize_classifier(
    preset: str | os.PathLike | keras.Model,
    data_dir: str | os.PathLike,
    *,
    epochs: int = 8,
    batch_size: int = 16,
    learning_rate: float = 3e-5,
    crops_per_image: int = 16,
    distill: bool | None = None,
    freeze_batchnorm_after: int | None = 0,
    hard_swish: str = "op",
    quantize_after_rescaling: bool = False,
    input_range: tuple[float, float] | None | str = "auto",
    validation_split: float = 0.1,
    calibration_images: int = 64,
    out: str | os.PathLike | None = None,
    seed: int = 0,
    verbose: int | str = "auto",
) -> QATResult:
    """Quantization-aware training of a float classifier on a folder of images.

    The twin (`quantize_aware`, hard-swish float as LiteRT and onnxruntime
    run it) starts from the classifier's weights, its activation ranges
    calibrated on up to `calibration_images` training images and then kept
    fixed, and trains for `epochs` on random crops (30-100% of the side) and
    flips of the training images with Adam (cosine decay), BatchNorm statistics frozen
    after `freeze_batchnorm_after` steps (the weights learn to compute the
    float model's function on the int8 grid). Held-out images (`validation_split`)
    are never trained on; the result reports how often the twin's top-1
    class agrees with the float classifier's on them.

    Args:
        preset: the float classifier: a classifier preset name or folder, or
            a built classifier model.
        data_dir: a folder of images, searched recursively. Where its
            sub-folders are exactly the classifier's class names, the images
            are labelled by them.
        epochs: training epochs.
        batch_size: crops per batch.
        learning_rate: Adam's initial learning rate, decayed to 0 along a
            cosine (a trained model is fine-tuned: keep it small).
        crops_per_image: random crops of each training image per epoch.
        distill: True: distillation from the float classifier (its outputs
            on each crop are the targets; mean squared error on logits,
            KL divergence on probabilities); False: the folder's labels
            (an error if it has none); None: labels where the folder has
            them, else distillation.
        freeze_batchnorm_after: training steps after which BatchNorm uses its
            moving statistics only (0: from the start, right for small
            batches; None: never).
        hard_swish: the twin's hard-swish (`quantize_aware`): "op" (LiteRT,
            OpenVINO) or "add_mul" (onnxruntime's QLinearAdd + QLinearMul).
        quantize_after_rescaling: quantize the rescaled input, not the raw
            pixels (`quantize_aware`; onnxruntime's first conv in int8).
        input_range: the input's fixed range (`quantize_aware`); "auto"
            (default): `(0, 255)` where the classifier reads raw pixels (its
            backbone's `include_rescaling`), so a uint8 export's input codes
            are the pixels, else None (calibrated).
        validation_split: fraction of the images held out.
        calibration_images: training images the ranges are first set on.
        out: a folder to write the twin to as a preset (atomically), which
            `load_model` and `mobilenetv3 export` read.
        seed: seed of the split, the crops and the order.
        verbose: Keras `fit` verbosity.

    Returns:
        A `QATResult`.

    Example:

    ```python
    from mobilenetv3.training.qat import quantize_classifier

    result = quantize_classifier("my_classifier/", "my_unlabelled_photos/", out="my_classifier_qat")
    print(result.loss, result.agreement)
    ```
    """
    for name, value in (("epochs", epochs), ("batch_size", batch_size), ("crops_per_image", crops_per_image),
                        ("calibration_images", calibration_images)):
        check_positive_int(name, value)
    folder = Path(data_dir)
    if not folder.is_dir():
        raise ValueError(f"`data_dir` {str(folder)!r} is not a folder of images.")
    model = _load_classifier(preset)
    size = _input_size(model)
    class_names = list(getattr(model, "class_names", None) or [])
    labelled = None if distill else _labelled_files(folder, class_names)
    if distill is False and labelled is None:
        raise ValueError(f"`distill=False` needs labels: `data_dir` {str(folder)!r} must hold one sub-folder per "
                         f"class of the classifier ({class_names or 'it has no class names'}).")
    files = [file for file, _ in labelled] if labelled else _image_files(folder)
    if not files:
        raise ValueError(f"`data_dir` {str(folder)!r} has no images ({', '.join(IMAGE_SUFFIXES)}).")
    photos, kept = _open_photos(files, size, folder)
    if not photos:
        raise ValueError(f"`data_dir` {str(folder)!r} has no readable image.")
    labels = np.asarray([labelled[i][1] for i in kept], "int32") if labelled else None
    train, held = _split(len(photos), validation_split, seed)
    policy = ImagePolicy.of_model(model).resized_to(size)

    keras.utils.set_random_seed(seed)
    # Ranges stay where calibration sets them (momentum 1): with moving
    # averages of small batches' extremes, fine-tuning drifts away from the
    # float model (measured: 5-50x the logit error of the calibrated twin).
    if isinstance(input_range, str) and input_range == "auto":
        input_range = (0.0, 255.0) if getattr(getattr(model, "backbone", model), "include_rescaling", False) else None
    twin = quantize_aware(model, freeze_batchnorm_after=freeze_batchnorm_after, range_momentum=1.0,
                          hard_swish=hard_swish, quantize_after_rescaling=quantize_after_rescaling,
                          input_range=input_range)
    teacher = None if labels is not None else model
    if teacher is not None:
        _without_dropout(twin)  # the student matches the teacher's inference outputs
    data = _Crops([photos[i] for i in train], None if labels is None else labels[train], teacher, size,
                  crops_per_image, batch_size, seed)
    calibrate_ranges(twin, load_images([files[kept[i]] for i in train[:calibration_images]], policy))
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=epochs * len(data))
    twin.compile(optimizer=keras.optimizers.Adam(schedule), **_loss_and_metrics(twin, distilled=teacher is not None))
    history = twin.fit(data, epochs=epochs, verbose=verbose).history

    agreement, accuracy = 1.0, None
    if len(held):
        held_images = load_images([files[kept[i]] for i in held], policy)
        student = _top1(twin, held_images)
        agreement = float(np.mean(student == _top1(model, held_images)))
        if labels is not None:
            accuracy = float(np.mean(student == labels[held]))
    if out is not None:
        folders.save_preset(twin, out, class_names=class_names or None, preprocessing=policy)
    return QATResult(twin, DISTILLATION if teacher is not None else LABELS, history, agreement, accuracy, len(held))


def _without_dropout(model: keras.Model) -> None:
    for layer in model.layers:
        if isinstance(layer, keras.layers.Dropout):
            layer.rate = 0.0


def _loss_and_metrics(twin: QATModel, distilled: bool) -> dict:
    if not distilled:
        return {}  # QATModel.compile: the task's cross-entropy and accuracy
    if twin.outputs_logits():
        return {"loss": keras.losses.MeanSquaredError(), "metrics": []}
    return {"loss": keras.losses.KLDivergence(), "metrics": []}
