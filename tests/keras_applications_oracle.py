"""tf-keras MobileNetV3 models with random weights, saved in the official
keras.applications `.h5` layout (tf-keras writes exactly that layout)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def tf_keras_model(family: str, input_shape: tuple, include_top: bool, **kwargs):
    """`tf_keras.applications.MobileNetV3{Small,Large}` with no weights,
    returning logits, rescaling 0..255 inputs to [-1, 1] itself."""
    import tf_keras

    build = getattr(tf_keras.applications, f"MobileNetV3{family.title()}")
    return build(
        weights=None,
        input_shape=input_shape,
        include_top=include_top,
        classifier_activation=None,
        include_preprocessing=True,
        **kwargs,
    )


def randomize(model, seed: int = 0) -> None:
    """Give every variable random values, then set each BatchNorm's moving
    statistics to the batch statistics of random images.

    Without that calibration the signal of random weights fades out within a
    few blocks and the output no longer depends on the input, so a wrong
    padding or mapping would go unnoticed. The calibrated statistics are
    non-trivial (means far from 0, variances far from 1).
    """
    rng = np.random.default_rng(seed)
    for weight in model.weights:
        shape, name = tuple(weight.shape), weight.name
        if "gamma" in name:
            value = rng.uniform(0.25, 0.75, shape)
        elif "beta" in name or "bias" in name:
            value = rng.normal(0.0, 0.2, shape)
        elif "moving_" in name:
            continue
        else:
            value = weight.numpy() * rng.uniform(0.8, 1.2, shape)
        weight.assign(value.astype("float32"))
    batch_norms = [layer for layer in model.layers if "BatchNorm" in type(layer).__name__]
    for layer in batch_norms:
        layer.momentum = 0.0  # moving statistics := this batch's statistics
    images = rng.uniform(0, 255, (4, *model.input_shape[1:])).astype("float32")
    model(images, training=True)
    for layer in batch_norms:
        layer.momentum = 0.999


def write_file(path: Path, family: str, include_top: bool, seed: int = 0, **kwargs) -> Path:
    """A random-weights tf-keras model saved with `save_weights(path)`."""
    model = tf_keras_model(family, (224, 224, 3), include_top, **kwargs)
    randomize(model, seed)
    model.save_weights(str(path))
    return path
