"""Transfer learning: put a new head on a backbone preset and fine-tune it.

The workflow of the Keras transfer-learning guide, for MobileNetV3:

1. load a backbone preset and freeze it (`trainable = False`: its weights
   stay fixed and its BatchNorm layers run in inference mode);
2. train a new `MobileNetV3ImageClassifier` head on top;
3. unfreeze the top blocks (BatchNorm stays frozen) and train again with a
   lower learning rate;
4. optionally write the classifier as a preset folder, with its class names.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np

from mobilenetv3.core import keras_internals as internals
from mobilenetv3.core.architectures import block_index
from mobilenetv3.core.images import IMAGE_SUFFIXES
from mobilenetv3.core.normalization import ImagePolicy
from mobilenetv3.core.utils import DiskFullError, check_positive_int
from mobilenetv3.nets.backbone import MobileNetV3Backbone
from mobilenetv3.presets import folders, loader
from mobilenetv3.tasks import MobileNetV3ImageClassifier
from mobilenetv3.training import checkpointing, distributed

_LAST_CONV_PREFIX = "Conv_1"
# AdamW does not decay these (BatchNorm scale/offset and biases).
NO_DECAY_VARIABLES = ["gamma", "beta", "bias"]


@dataclasses.dataclass
class FineTuneResult:
    """What `fine_tune` returns.

    Attributes:
        model: the trained `MobileNetV3ImageClassifier` (logits).
        class_names: class names, in label order (sorted folder names).
        head_history: per-epoch metrics of the frozen-backbone phase.
        fine_tune_history: per-epoch metrics of the unfrozen phase.
        val_accuracy: validation accuracy at the end.
    """

    model: MobileNetV3ImageClassifier
    class_names: list[str]
    head_history: dict[str, list[float]]
    fine_tune_history: dict[str, list[float]]
    val_accuracy: float


def array_batches(images: np.ndarray, batch_size: int, seed: int = 0) -> Any:
    """`(images, None)` batches of an image array in a seeded random order,
    for `calibrate_batchnorm`.

    Example:

    ```python
    calibrate_batchnorm(model, array_batches(train_images, 16))
    ```
    """
    order = np.random.default_rng(seed).permutation(len(images))
    for start in range(0, len(order), batch_size):
        yield images[np.sort(order[start:start + batch_size])], None


def _is_batch_norm(layer: keras.layers.Layer) -> bool:
    return isinstance(layer, keras.layers.BatchNormalization)


def freeze_backbone(backbone: MobileNetV3Backbone) -> None:
    """Freeze every backbone weight; BatchNorm then runs in inference mode.

    Example:

    ```python
    backbone = mobilenetv3.MobileNetV3SmallBackbone()
    freeze_backbone(backbone)
    backbone.trainable_weights  # []
    ```
    """
    backbone.trainable = False


def unfreeze_top_blocks(
    backbone: MobileNetV3Backbone, num_blocks: int | str, train_batchnorm: bool = False
) -> list[str]:
    """Make the last `num_blocks` blocks and the last 1x1 conv trainable.

    Everything below stays frozen, and by default every BatchNorm layer
    stays frozen (inference mode, moving statistics fixed), as the Keras
    transfer-learning guide recommends: small fine-tuning batches would
    otherwise overwrite statistics learned on a large dataset.

    Args:
        backbone: a `MobileNetV3Backbone`.
        num_blocks: how many of the top inverted-residual blocks to train
            (0 trains only the last 1x1 conv), or "all".
        train_batchnorm: also train the BatchNorm layers of those blocks
            (training mode, batch statistics). Only useful when the backbone
            has no pretrained weights: random-init moving statistics are
            meaningless, so frozen BatchNorm makes activations vanish.

    Returns:
        The names of the layers made trainable.

    Example:

    ```python
    backbone = mobilenetv3.MobileNetV3SmallBackbone()
    unfreeze_top_blocks(backbone, 2)  # blocks 9 and 10, and Conv_1
    ```
    """
    total = len(backbone.stackwise_filters)
    if num_blocks == "all":
        num_blocks = total
    if isinstance(num_blocks, bool) or not isinstance(num_blocks, int) or not 0 <= num_blocks <= total:
        raise ValueError(
            f"`num_blocks` must be an integer from 0 to {total} (the backbone's block count) "
            f"or 'all'; got {num_blocks!r}."
        )
    first_trained = total - num_blocks
    backbone.trainable = True
    trained = []
    for layer in backbone.layers:
        index = block_index(layer.name)
        in_top = layer.name.startswith(_LAST_CONV_PREFIX) or (index is not None and index >= first_trained)
        if num_blocks == total and layer.name.startswith("Conv"):
            in_top = True  # "all" includes the stem.
        layer.trainable = in_top and (train_batchnorm or not _is_batch_norm(layer))
        if layer.trainable and layer.weights:
            trained.append(layer.name)
    return trained


def calibrate_batchnorm(backbone: keras.Model, dataset: Any, max_batches: int = 20) -> int:
    """Recompute every BatchNorm's moving statistics on `dataset`.

    `backbone` is a `MobileNetV3Backbone` or a whole task model (a
    segmenter's or detector's head has BatchNorm layers too); the `train`
    command runs this at the end of every run that trains BatchNorm, so
    that the statistics match the final weights whatever the number of
    steps.

    The new statistics are the average of the batch statistics over up to
    `max_batches` batches of `(images, labels)`, computed in one training-mode
    pass per batch ("precise BatchNorm"). Needed when a backbone has no
    pretrained weights: its initial statistics (mean 0, variance 1) make a
    frozen random backbone's activations vanish (about 1e-10 at the last
    conv), and Keras' momentum of 0.999 takes thousands of steps to forget
    them. Weights other than the statistics are not changed.

    Args:
        backbone: a `MobileNetV3Backbone` or a model containing one.
        dataset: an iterable of `(images, labels)` batches (e.g. `tf.data`);
            the labels are not used.
        max_batches: at most this many batches are used.

    Returns:
        The number of batches used.

    Example:

    ```python
    train, _, _ = load_image_folder("/tmp/shapes", (64, 64))
    calibrate_batchnorm(model.backbone, train)
    ```
    """
    layers = [layer for layer in internals.all_layers(backbone) if _is_batch_norm(layer)]
    saved = [(layer.momentum, layer.trainable) for layer in layers]
    used = 0
    try:
        for used, (images, _) in enumerate(dataset, start=1):
            for layer in layers:
                layer.trainable = True
                layer.momentum = (used - 1) / used  # running average of batch statistics
            backbone(keras.ops.convert_to_tensor(np.asarray(images)), training=True)
            if used >= max_batches:
                break
    finally:
        for layer, (momentum, trainable) in zip(layers, saved, strict=True):
            layer.momentum, layer.trainable = momentum, trainable
    return used


def load_image_folder(
    data_dir: str | os.PathLike,
    image_size: tuple[int, int],
    batch_size: int = 32,
    validation_split: float = 0.2,
    seed: int = 0,
    augment: bool = False,
) -> tuple[Any, Any, list[str]]:
    """Training and validation `tf.data` datasets from a class-per-folder tree.

    Args:
        data_dir: a folder with one sub-folder of images per class.
        image_size: `(height, width)` images are resized to.
        batch_size: batch size.
        validation_split: fraction of the images held out for validation.
        seed: the shuffle and split seed.
        augment: randomly flip (left-right) and shift (up to 10%) the
            training images.

    Returns:
        `(train, validation, class_names)`. Images are float 0..255 RGB and
        labels integer class indices. Every file is read by
        `mobilenetv3.core.images` (any Pillow mode, EXIF orientation) and
        squashed to `image_size` once, before training; unreadable,
        truncated or empty files and images under
        `images.MIN_TRAINING_SIDE` pixels on a side are skipped, each named
        on a line of one `images.SkippedImagesWarning`.
    """
    train, validation, class_names = _image_folder_examples(data_dir, image_size, validation_split, seed)
    train = train.shuffle(1024, seed=seed, reshuffle_each_iteration=True).batch(batch_size)
    if augment:
        train = _augmented(train, seed)
    return train, validation.batch(batch_size), class_names


def _augmented(batches: Any, seed: int) -> Any:
    """`batches` with random left-right flips and shifts (up to 10%) of the
    images, drawn from `seed`."""
    augmentation = keras.Sequential(
        [keras.layers.RandomFlip("horizontal", seed=seed), keras.layers.RandomTranslation(0.1, 0.1, seed=seed)]
    )
    return batches.map(lambda images, labels: (augmentation(images, training=True), labels))


def _read_class_folders(folder: Path, class_names: list[str], size: tuple) -> tuple[np.ndarray, np.ndarray]:
    """Every usable image of every class folder, squashed to `size` (uint8),
    with its class index. Unreadable files (corrupt, truncated, empty) and
    images under `images.MIN_TRAINING_SIDE` pixels are skipped, each named
    on its own line of one `images.SkippedImagesWarning`; everything is
    decoded here, before training, so no file can stop an epoch."""
    from PIL import Image

    from mobilenetv3.core import images

    pixels, labels, skipped = [], [], []
    for label, name in enumerate(class_names):
        for file in sorted(f for f in (folder / name).iterdir() if f.suffix.lower() in IMAGE_SUFFIXES):
            try:
                image = images.open_training_image(file)
            except images.ImageError as error:
                skipped.append(str(error))
                continue
            pixels.append(np.asarray(image.resize((size[1], size[0]), Image.BILINEAR)))
            labels.append(label)
    images.warn_skipped(skipped, folder)
    missing = sorted(set(class_names) - {class_names[i] for i in labels})
    if missing:
        raise ValueError(f"`data_dir` {str(folder)!r}: class folders {missing} hold no readable image.")
    return np.stack(pixels), np.asarray(labels, "int32")


def _check_image_folder(data_dir: str | os.PathLike) -> list[str]:
    folder = Path(data_dir)
    if not folder.is_dir():
        raise ValueError(f"`data_dir` {str(folder)!r} is not a folder of class sub-folders.")
    classes = sorted(
        child.name
        for child in folder.iterdir()
        if child.is_dir() and any(f.suffix.lower() in IMAGE_SUFFIXES for f in child.iterdir())
    )
    if len(classes) < 2:
        raise ValueError(
            f"`data_dir` {str(folder)!r} must hold at least 2 sub-folders of images (one per class, "
            f"files ending in {', '.join(IMAGE_SUFFIXES)}); found {classes}."
        )
    return classes


def check_finite_weights(model: keras.Model, out: str | os.PathLike | None = None) -> None:
    """A RuntimeError naming the first weight of `model` holding NaN or
    infinity (training diverged), saying nothing was written to `out`.
    One pass over the weights on the host: run it before saving a trained
    model, so a diverged run never leaves a preset behind as a success.

    Example:

    ```python
    check_finite_weights(model, out="my_model")
    ```
    """
    for variable in model.weights:
        value = keras.ops.convert_to_numpy(variable)
        if not np.isfinite(value).all():
            bad = int(value.size - np.count_nonzero(np.isfinite(value)))
            written = "" if out is None else f"; nothing was written to {str(out)!r}"
            raise RuntimeError(
                f"Training diverged: weight {variable.path!r} holds {bad} NaN or infinite value(s){written}. "
                "Lower the learning rate, or check the training data for NaN or extreme values."
            )


def make_optimizer(learning_rate: float, weight_decay: float) -> keras.optimizers.Optimizer:
    """Adam, or AdamW (no decay on BatchNorm and biases) when
    `weight_decay` > 0."""
    if weight_decay <= 0:
        return keras.optimizers.Adam(learning_rate)
    optimizer = keras.optimizers.AdamW(learning_rate, weight_decay=weight_decay)
    optimizer.exclude_from_weight_decay(var_names=NO_DECAY_VARIABLES)
    return optimizer


def _compile(model: keras.Model, learning_rate: float, weight_decay: float) -> None:
    model.compile(
        optimizer=make_optimizer(learning_rate, weight_decay),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )


def build_classifier(
    preset: str,
    num_classes: int,
    *,
    image_size: tuple[int, int] | None = None,
    load_weights: bool | None = None,
    dropout: float = 0.2,
    drop_path_rate: float = 0.0,
    dtype: Any = None,
    weights_file: str | os.PathLike | None = None,
    verify_weights_file: bool = True,
) -> MobileNetV3ImageClassifier:
    """A new classifier head on the backbone of a preset (a name or folder
    holding a backbone or any task, e.g. a converted classifier)."""
    overrides: dict[str, Any] = {}
    if image_size is not None:
        overrides["input_shape"] = (*image_size, 3)
    if drop_path_rate:
        overrides["drop_path_rate"] = drop_path_rate
    if dtype is not None:
        overrides["dtype"] = dtype
    if weights_file is not None:
        overrides["weights_file"] = str(weights_file)
        overrides["verify_weights_file"] = verify_weights_file
    # Through the factory: a task preset (a converted classifier folder)
    # gives its backbone.
    model = loader.load_model(preset, MobileNetV3ImageClassifier, load_weights, **overrides)
    backbone = getattr(model, "backbone", model)
    return MobileNetV3ImageClassifier(backbone, num_classes, dropout=dropout)


def fine_tune(
    data_dir: str | os.PathLike,
    preset: str = "mobilenet_v3_small_imagenet",
    *,
    image_size: Sequence[int] = (224, 224),
    batch_size: int = 32,
    head_epochs: int = 5,
    fine_tune_epochs: int = 5,
    unfreeze_blocks: int | str = 3,
    train_batchnorm: bool = False,
    head_learning_rate: float = 1e-3,
    fine_tune_learning_rate: float = 1e-4,
    weight_decay: float = 0.0,
    dropout: float = 0.2,
    drop_path_rate: float = 0.0,
    dtype: Any = None,
    augment: bool = False,
    validation_split: float = 0.2,
    load_weights: bool | None = None,
    out: str | os.PathLike | None = None,
    seed: int = 0,
    verbose: int | str = "auto",
    bn_momentum: float = 0.9,
    sync_batchnorm: bool = False,
    checkpoint_dir: str | os.PathLike | None = None,
    checkpoint_every_steps: int = 0,
    resume: bool = False,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    weights_file: str | os.PathLike | None = None,
    verify_weights_file: bool = True,
) -> FineTuneResult:
    """Fine-tune a backbone preset on a folder of images, in two phases.

    Phase 1 trains a new head (`MobileNetV3ImageClassifier`, paper head with
    dropout) on the frozen backbone, whose BatchNorm runs in inference mode.
    Phase 2 unfreezes the top `unfreeze_blocks` blocks (not their BatchNorm)
    and trains on with `fine_tune_learning_rate`. With `out`, the classifier
    is written as a preset folder (atomically) with `labels.txt` holding the
    class names, which `mobilenetv3 predict --preset OUT` prints.

    Args:
        data_dir: a folder with one sub-folder of images per class.
        preset: a backbone preset name or folder (a classifier preset folder
            works too: its backbone gets the new head).
        image_size: `(height, width)` the images are resized to.
        batch_size: batch size of both phases.
        head_epochs: epochs of phase 1.
        fine_tune_epochs: epochs of phase 2 (0 skips it).
        unfreeze_blocks: top blocks trained in phase 2, or "all".
        train_batchnorm: for backbones without pretrained weights: compute
            the BatchNorm statistics from the training images before phase 1
            and after phase 2 (`calibrate_batchnorm`), and train the
            unfrozen blocks' BatchNorm layers in phase 2.
        head_learning_rate: Adam learning rate of phase 1.
        fine_tune_learning_rate: Adam learning rate of phase 2 (lower).
        weight_decay: decoupled weight decay (AdamW) of both phases; 0 uses
            plain Adam. BatchNorm scales/offsets and biases are not decayed.
        dropout: dropout rate of the head.
        drop_path_rate: stochastic depth of the backbone (see
            `MobileNetV3Backbone`); only trained blocks are affected.
        dtype: e.g. "mixed_bfloat16" for mixed precision.
        augment: random flips and shifts of the training images.
        validation_split: fraction of the images held out for validation.
        load_weights: as in `MobileNetV3Backbone.from_preset`.
        out: optional preset folder to write the classifier to.
        seed: seed of the split, the shuffling and the initialization.
        verbose: Keras `fit` verbosity (1 shows a progress bar).
        bn_momentum: with `train_batchnorm`, the momentum of the trained
            BatchNorm layers' moving statistics in phase 2 (the backbone's
            0.999 would need thousands of steps to follow the changing
            weights). The preset's momentum is restored afterwards. With
            `train_batchnorm` the statistics are also recomputed from
            training batches before each validation
            (`calibrate_batchnorm`), so the validation metrics shown
            during training are those of the model as it will be saved.
        sync_batchnorm: in a multi-process job (see
            `mobilenetv3.training.distributed`), normalize trained BatchNorm layers
            with the global batch's statistics.
        checkpoint_dir: a folder to write a checkpoint to (weights,
            optimizer state, epoch, step and data-order seed) at the end of
            every epoch, atomically.
        checkpoint_every_steps: also write it every this many batches.
        resume: continue from the checkpoint in `checkpoint_dir` if there is
            one (same settings as the run that wrote it); the result equals
            an uninterrupted run's.
        callbacks: extra Keras callbacks for `fit`.
        weights_file: a downloaded weights file of a registered preset
            (instead of the download), as in `from_preset`.
        verify_weights_file: False accepts a `weights_file` whose md5
            differs from the registered one.

    Returns:
        A `FineTuneResult` (model, class names, histories, final validation
        accuracy).

    Example:

    ```python
    from mobilenetv3.datasets import make_classification_folder
    from mobilenetv3.training import fine_tune

    folder = make_classification_folder("/tmp/shapes")
    result = fine_tune(folder, "mobilenet_v3_small", image_size=(64, 64),
                       head_epochs=2, fine_tune_epochs=2, out="/tmp/shapes_model")
    print(result.val_accuracy, result.class_names)
    ```
    """
    for name, value in (("head_epochs", head_epochs), ("fine_tune_epochs", fine_tune_epochs)):
        check_positive_int(name, value, minimum=0)
    check_positive_int("batch_size", batch_size)
    check_positive_int("checkpoint_every_steps", checkpoint_every_steps, minimum=0)
    if len(tuple(image_size)) != 2:
        raise ValueError(f"`image_size` must be (height, width); got {image_size!r}.")
    if resume and checkpoint_dir is None:
        raise ValueError("`resume=True` needs `checkpoint_dir` (the folder the checkpoint was written to).")
    distributed.check_fit_supported()
    processes = distributed.num_processes()
    if batch_size % processes:
        raise ValueError(
            f"`batch_size` {batch_size} must be a multiple of the job's {processes} processes "
            "(each process trains an equal share of every global batch)."
        )
    image_size = tuple(int(v) for v in image_size)
    examples, validation, class_names = _image_folder_examples(data_dir, image_size, validation_split, seed)
    validation = shard_by_data(_validation_batches(validation, batch_size, pad=processes > 1).prefetch(tf_autotune()))
    epochs = _EpochData(examples, batch_size, seed, augment, drop_remainder=processes > 1)
    keras.utils.set_random_seed(seed)
    with distributed.active_scope():
        model = build_classifier(
            preset,
            len(class_names),
            image_size=image_size,
            load_weights=load_weights,
            dropout=dropout,
            drop_path_rate=drop_path_rate,
            dtype=dtype,
            weights_file=weights_file,
            verify_weights_file=verify_weights_file,
        )
        unfreeze_top_blocks(model.backbone, unfreeze_blocks)  # validates before training
        if sync_batchnorm:
            distributed.synchronize_batchnorm(model)
        if train_batchnorm:
            calibrate_batchnorm(model.backbone, epochs.batches(0))
        callbacks = list(callbacks)
        if train_batchnorm:
            callbacks.append(_CalibrateBeforeValidation(model.backbone, epochs))
        settings = {
            "data_dir": str(Path(data_dir).resolve()), "data": {"classes": class_names, "images": epochs.count},
            "preset": str(preset), "image_size": image_size, "batch_size": batch_size, "head_epochs": head_epochs,
            "fine_tune_epochs": fine_tune_epochs, "unfreeze_blocks": unfreeze_blocks,
            "train_batchnorm": train_batchnorm, "head_learning_rate": head_learning_rate,
            "fine_tune_learning_rate": fine_tune_learning_rate, "weight_decay": weight_decay, "dropout": dropout,
            "drop_path_rate": drop_path_rate, "dtype": None if dtype is None else str(dtype), "augment": augment,
            "validation_split": validation_split, "seed": seed, "bn_momentum": bn_momentum,
            "sync_batchnorm": sync_batchnorm, "processes": distributed.num_processes(),
        }
        run = _Run(model, epochs, validation, checkpoint_dir, checkpoint_every_steps, callbacks, verbose, settings)
        run.total_epochs = head_epochs + fine_tune_epochs
        state = run.resume_state() if resume else None

        freeze_backbone(model.backbone)
        _compile(model, head_learning_rate, weight_decay)
        with distributed.stall_watchdog():
            head = run.phase("head", 0, head_epochs, state)
            fine_history: dict[str, list[float]] = {}
            if fine_tune_epochs:
                unfreeze_top_blocks(model.backbone, unfreeze_blocks, train_batchnorm)
                saved_momentum = _set_batchnorm_momentum(model.backbone, bn_momentum if train_batchnorm else None)
                _compile(model, fine_tune_learning_rate, weight_decay)
                fine_history = run.phase("fine_tune", head_epochs, head_epochs + fine_tune_epochs, state)
                _restore_batchnorm_momentum(saved_momentum)
                if train_batchnorm:
                    calibrate_batchnorm(model.backbone, epochs.batches(0))
            check_finite_weights(model, out)
            val_accuracy = float(model.evaluate(validation, verbose=0, return_dict=True)["accuracy"])
            distributed.heartbeat("evaluated; writing the classifier")
            if out is not None:
                distributed.run_on_chief(lambda: _save_or_rescue(model, out, class_names))  # every process calls
    return FineTuneResult(model, class_names, head, fine_history, val_accuracy)


def tf_autotune() -> int:
    import tensorflow as tf

    return tf.data.AUTOTUNE


def _image_folder_examples(
    data_dir: str | os.PathLike, image_size: tuple[int, int], validation_split: float, seed: int
) -> tuple[Any, Any, list[str]]:
    """Unbatched, cached training and validation examples of an image folder,
    read by `images.open_training_image` (unusable files are skipped and
    reported)."""
    import tensorflow as tf

    class_names = _check_image_folder(data_dir)
    if not 0 < validation_split < 1:
        raise ValueError(f"`validation_split` must be in (0, 1); got {validation_split!r}.")
    pixels, labels = _read_class_folders(Path(data_dir), class_names, tuple(image_size))
    order = np.random.RandomState(seed).permutation(len(labels))
    held_out = int(validation_split * len(labels))
    if not 0 < held_out < len(labels):
        raise ValueError(
            f"`validation_split` {validation_split} of {len(labels)} readable images leaves no "
            "training or no validation image; add images or change the split."
        )

    def dataset(index: np.ndarray) -> Any:
        data = tf.data.Dataset.from_tensor_slices((pixels[index], labels[index]))
        return data.map(lambda image, label: (tf.cast(image, "float32"), label)).cache()

    return dataset(order[:-held_out]), dataset(order[-held_out:]), class_names


def _validation_batches(examples: Any, batch_size: int, pad: bool) -> Any:
    """Validation batches; with `pad` (a multi-process job) the last one is
    padded to `batch_size` with blank examples of sample weight 0, so every
    process gets an equal share of every batch (an uneven or missing share
    leaves the others waiting in the step's collective forever). Accuracy is
    exact (weight 0 examples do not count); the loss, averaged over whole
    batches, reads low by the padded fraction."""
    if not pad:
        return examples.batch(batch_size)
    import tensorflow as tf

    missing = -int(examples.cardinality()) % batch_size
    weighted = examples.map(lambda image, label: (image, label, tf.constant(1.0)))
    image_spec, label_spec = examples.element_spec
    blank = (tf.zeros(image_spec.shape, image_spec.dtype), tf.zeros(label_spec.shape, label_spec.dtype), tf.constant(0.0))
    padding = tf.data.Dataset.from_tensors(blank).repeat(missing)
    return weighted.concatenate(padding).batch(batch_size, drop_remainder=True)


class _EpochData:
    """The training batches of each epoch, in an order fixed by (seed, epoch):
    a resumed run sees the same batches as an uninterrupted one.

    With `drop_remainder` (a multi-process job) the last incomplete batch
    of each epoch is left out, so that every process runs the same number of
    equal steps: an uneven share of a batch (or none) leaves the others
    waiting forever in the step's collective. Dropping, rather than padding
    or masking, keeps BatchNorm's batch statistics and the loss scale those
    of real examples; each epoch is shuffled anew, so the examples left out
    change from epoch to epoch.
    """

    def __init__(self, examples: Any, batch_size: int, seed: int, augment: bool, drop_remainder: bool = False) -> None:
        self.examples, self.batch_size, self.seed, self.augment = examples, batch_size, seed, augment
        self.drop_remainder = drop_remainder
        count = self.count = int(examples.cardinality())
        if drop_remainder and 0 < count < batch_size:
            raise ValueError(
                f"The {count} training images do not fill one global batch of {batch_size}: in a multi-process "
                "job each epoch trains whole global batches only; lower `batch_size` or add images."
            )
        steps = count // batch_size if drop_remainder else -(-count // batch_size)
        self.steps_per_epoch = steps if count > 0 else 0

    def batches(self, epoch: int, skip: int = 0) -> Any:
        epoch_seed = self.seed * 1_000_003 + epoch
        data = self.examples.shuffle(1024, seed=epoch_seed, reshuffle_each_iteration=False)
        data = data.batch(self.batch_size, drop_remainder=self.drop_remainder)
        if self.augment:
            data = _augmented(data, epoch_seed)
        return shard_by_data(data.skip(skip).prefetch(tf_autotune()))


def shard_by_data(dataset: Any) -> Any:
    """Split each global batch across the processes of a TensorFlow
    multi-worker job (not by input file): every process then gets its part
    of the same global batch."""
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


class _CalibrateBeforeValidation(keras.callbacks.Callback):
    """Precise BatchNorm before each validation of `fit`: while BatchNorm layers
    train, their moving statistics lag the quickly changing weights (momentum
    0.999 averages ~1000 steps), so validation would use stale statistics and
    report nonsense (e.g. loss 1e5, accuracy below chance) although the model,
    recalibrated, is good. Recalibrating shows what the model really does."""

    def __init__(self, backbone: MobileNetV3Backbone, epochs: _EpochData, max_batches: int = 10) -> None:
        super().__init__()
        self.backbone, self.epochs, self.max_batches = backbone, epochs, max_batches
        self.epoch = 0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.epoch = epoch

    def on_test_begin(self, logs: dict | None = None) -> None:
        calibrate_batchnorm(self.backbone, self.epochs.batches(self.epoch), self.max_batches)


_PHASES = ("head", "fine_tune")


class _Run:
    """Runs `fit` one epoch at a time, checkpointing and resuming."""

    def __init__(self, model, epochs, validation, checkpoint_dir, every_steps, callbacks, verbose, settings) -> None:  # noqa: ANN001
        self.model, self.epochs, self.validation = model, epochs, validation
        self.settings = json.loads(json.dumps(settings))  # as the checkpoint records them
        self.checkpoint_dir = None if checkpoint_dir is None else Path(checkpoint_dir)
        self.every_steps, self.callbacks, self.verbose = every_steps, callbacks, verbose
        self.history: dict[str, dict[str, list[float]]] = {}
        self.total_epochs = 0  # for the progress lines: "head 2/5, epoch 2/10"

    def resume_state(self) -> checkpointing.TrainingState | None:
        state = checkpointing.read_state(self.checkpoint_dir)
        distributed.check_same_on_every_process(
            "checkpoint_dir", None if state is None else dataclasses.asdict(state),
            "every process of a job resumes from the same checkpoint, so it must be a folder all of them read "
            "(process 0 writes it), e.g. on a shared filesystem",
        )
        if state is not None:
            if state.seed != self.epochs.seed:
                raise ValueError(f"The checkpoint was written with seed {state.seed}; got `seed={self.epochs.seed}`.")
            _check_resumed_settings(self.checkpoint_dir, state.settings, self.settings)
            self.history = state.history
        return state

    def phase(self, name: str, first: int, last: int, resumed: checkpointing.TrainingState | None) -> dict:
        """Epochs `first` to `last - 1`; skips what a resumed checkpoint holds."""
        history = self.history.setdefault(name, {})
        start, skip = first, 0
        if resumed is not None:
            if _PHASES.index(resumed.phase) > _PHASES.index(name):
                return history  # finished before the checkpoint (which holds its weights)
            if resumed.phase == name:
                checkpointing.restore_checkpoint(self.checkpoint_dir, self.model)
                start, skip = resumed.epoch, resumed.step
        for epoch in range(start, last):
            state = checkpointing.TrainingState(name, epoch, skip, self.epochs.seed, self.history, self.settings)
            callbacks = [*self.callbacks, distributed.ProgressCallback()]
            if self.checkpoint_dir is not None:
                callbacks.append(
                    checkpointing.CheckpointCallback(
                        self.checkpoint_dir, state, self.every_steps, self.epochs.steps_per_epoch
                    )
                )
            if self.verbose:
                label = f"{name.replace('_', '-')} phase, epoch {epoch - first + 1}/{last - first}"
                callbacks.append(_LabelledProgress(f"{label} (overall {epoch + 1}/{max(self.total_epochs, last)})"))
            fitted = self.model.fit(
                self.epochs.batches(epoch, skip),
                validation_data=self.validation,
                epochs=epoch + 1,
                initial_epoch=epoch,
                callbacks=callbacks,
                verbose=self.verbose,
                shuffle=False,  # `batches` shuffles each epoch itself (seeded, resumable)
            )
            for key, values in fitted.history.items():
                history.setdefault(key, []).extend(float(v) for v in values)
            skip = 0
            if self.checkpoint_dir is not None:  # every process: the chief writes
                checkpointing.save_checkpoint(
                    self.checkpoint_dir,
                    self.model,
                    checkpointing.TrainingState(name, epoch + 1, 0, self.epochs.seed, self.history, self.settings),
                )
        return history


class _LabelledProgress(keras.callbacks.ProgbarLogger):
    """Keras' progress bar with the phase and the overall epoch as its title,
    instead of the "Epoch k/k" of a one-epoch `fit` call."""

    def __init__(self, label: str) -> None:
        super().__init__()
        self.label = label

    def set_params(self, params: dict) -> None:
        super().set_params({**params, "epochs": 1})  # no "Epoch k/k" line of its own

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        print(self.label)
        super().on_epoch_begin(epoch, logs)


# Settings a resume may change: more or fewer fine-tuning epochs only extend
# or shorten the last phase (the epochs already trained are the same).
_RESUMABLE_CHANGES = ("fine_tune_epochs",)


def _check_resumed_settings(folder: Path, saved: dict[str, Any], current: dict[str, Any]) -> None:
    """Refuse a resume whose settings differ from those the checkpoint was
    started with (one line naming each change, old -> new); the data folder
    may move as long as it holds the same classes and image count. A change
    in `_RESUMABLE_CHANGES` is allowed and named in a warning. Checkpoints
    written before settings were recorded are not checked."""
    changed = [
        f"{key} {saved[key]!r} -> {current.get(key)!r}"
        for key in saved
        if saved[key] != current.get(key) and not (key == "data_dir" and saved["data"] == current["data"])
    ]
    refused = [change for change in changed if change.split(" ", 1)[0] not in _RESUMABLE_CHANGES]
    if refused:
        raise ValueError(
            f"The checkpoint in {str(folder)!r} was started with other settings: {'; '.join(refused)}. Resume with "
            "the original settings, or start a new run in another checkpoint folder."
        )
    if changed:
        warnings.warn(f"Resuming {str(folder)!r} with {'; '.join(changed)}.", stacklevel=3)


def _set_batchnorm_momentum(backbone: MobileNetV3Backbone, momentum: float | None) -> list[tuple[Any, float]]:
    """Set the momentum of the trainable BatchNorm layers; returns the old values."""
    if momentum is None:
        return []
    if not 0 <= momentum < 1:
        raise ValueError(f"`bn_momentum` must be in [0, 1); got {momentum!r}.")
    saved = []
    for layer in internals.all_layers(backbone):
        if _is_batch_norm(layer) and layer.trainable:
            saved.append((layer, layer.momentum))
            layer.momentum = momentum
    return saved


def _restore_batchnorm_momentum(saved: list[tuple[Any, float]]) -> None:
    for layer, momentum in saved:
        layer.momentum = momentum


def _save_or_rescue(model: MobileNetV3ImageClassifier, out: str | os.PathLike, class_names: Sequence[str]) -> None:
    """`save_classifier`; when `out`'s disk is full, the trained classifier
    goes to a new folder under `$TMPDIR` instead (another filesystem, as a
    rule) and the `DiskFullError` says where: hours of training are not lost
    to a full disk at the last write."""
    try:
        save_classifier(model, out, class_names)
    except DiskFullError as error:
        rescue = Path(tempfile.mkdtemp(prefix="mobilenetv3-unsaved-")) / Path(out).name
        try:
            save_classifier(model, rescue, class_names)
        except OSError as second:
            shutil.rmtree(rescue.parent, ignore_errors=True)
            raise DiskFullError(
                f"{error} The trained classifier could not be written to {str(rescue.parent)!r} either ({second}); "
                "it is lost unless a checkpoint holds it."
            ) from None
        raise DiskFullError(
            f"{error} The trained classifier was written to {str(rescue)!r} instead: move it to {str(out)!r} "
            "once there is room."
        ) from None


def save_classifier(model: MobileNetV3ImageClassifier, path: str | os.PathLike, class_names: Sequence[str]) -> None:
    """Write `model` as a preset folder with its class names (`labels.txt`
    and `metadata.json`'s "class_names"), atomically."""
    if len(class_names) != model.num_classes:
        raise ValueError(
            f"`class_names` has {len(class_names)} names for a model with {model.num_classes} classes."
        )
    # The images were squashed to the model's input size (`_read_class_folders`).
    folders.save_preset(
        model, path, class_names=list(class_names), preprocessing=ImagePolicy.of_model(model, recorded=False)
    )
