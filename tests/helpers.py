"""Small helpers shared by tests: configs and weight randomization."""

from __future__ import annotations

import keras
import numpy as np

from mobilenetv3 import presets

SMALL = presets.PRESETS["mobilenet_v3_small"].config
LARGE = presets.PRESETS["mobilenet_v3_large"].config


def config(preset: str, **overrides) -> dict:
    return {**presets.PRESETS[preset].config, **overrides}


def randomize(model: keras.Model, seed: int = 0) -> None:
    """Give every variable random values, BN statistics included, so that a
    wrong mapping or a wrong epsilon cannot go unnoticed."""
    rng = np.random.default_rng(seed)
    for v in model.weights:
        shape = tuple(v.shape)
        if v.path.endswith("moving_variance"):
            value = rng.uniform(0.5, 1.5, shape)
        elif v.path.endswith(("gamma", "moving_mean", "beta", "bias")):
            value = rng.normal(0.0, 0.3, shape) + (1.0 if v.path.endswith("gamma") else 0.0)
        else:
            fan_in = np.prod(shape[:-1]) if len(shape) > 1 else 1
            value = rng.normal(0.0, 1.0 / np.sqrt(fan_in), shape)
        v.assign(value.astype("float32"))


def images(batch: int, height: int, width: int, seed: int = 0, scale: float = 1.0) -> np.ndarray:
    return (np.random.default_rng(seed).uniform(0, 1, (batch, height, width, 3)) * scale).astype("float32")


def max_abs_diff(a, b) -> float:
    return float(np.max(np.abs(keras.ops.convert_to_numpy(a) - keras.ops.convert_to_numpy(b))))
