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
            # A depthwise kernel (kh, kw, channels, 1) sees kh * kw inputs per
            # output: counting the channels too shrank the signal ~sqrt(C)-fold
            # per block until every image gave the same output.
            depthwise = "depthwise" in v.path and len(shape) == 4
            fan_in = np.prod(shape[:2]) if depthwise else np.prod(shape[:-1]) if len(shape) > 1 else 1
            value = rng.normal(0.0, 1.0 / np.sqrt(fan_in), shape)
        v.assign(value.astype("float32"))


def images(batch: int, height: int, width: int, seed: int = 0, scale: float = 1.0) -> np.ndarray:
    return (np.random.default_rng(seed).uniform(0, 1, (batch, height, width, 3)) * scale).astype("float32")


def max_abs_diff(a, b) -> float:
    return float(np.max(np.abs(keras.ops.convert_to_numpy(a) - keras.ops.convert_to_numpy(b))))


def trained_looking(model: keras.Model, seed: int = 0) -> keras.Model:
    """Give BatchNorm non-trivial statistics so activations are O(1) and the
    folded weights differ from the raw ones (a fresh model has mean 0, var 1)."""
    rng = np.random.default_rng(seed)
    for layer in model._flatten_layers():
        if isinstance(layer, keras.layers.BatchNormalization):
            shape = layer.moving_mean.shape
            layer.gamma.assign(rng.uniform(0.5, 1.5, shape))
            layer.beta.assign(rng.normal(0, 0.2, shape))
            layer.moving_mean.assign(rng.normal(0, 0.2, shape))
            layer.moving_variance.assign(rng.uniform(0.5, 1.5, shape))
    return model


def pixel_images(shape: tuple, seed: int = 1) -> np.ndarray:
    """Random raw pixels in 0..255, float32."""
    return np.random.default_rng(seed).uniform(0, 255, shape).astype("float32")


def litert_uint8_outputs(path, images: np.ndarray) -> tuple[np.ndarray, dict, dict]:
    """A uint8-input LiteRT file run on uint8 `images` one at a time: its
    dequantized outputs and its input and output details."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(str(path))
    interpreter.allocate_tensors()
    source, target = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    scale, zero_point = target["quantization"]
    outputs = []
    for image in images:
        interpreter.set_tensor(source["index"], image[None])
        interpreter.invoke()
        outputs.append(scale * (interpreter.get_tensor(target["index"])[0].astype("float32") - zero_point))
    return np.array(outputs), source, target


def keras_outputs(model: keras.Model, images: np.ndarray) -> np.ndarray:
    """The model's inference outputs as numpy."""
    return keras.ops.convert_to_numpy(model(images, training=False))


def lively(model: keras.Model, images: np.ndarray, seed: int) -> keras.Model:
    """Random weights (`randomize`), then BatchNorm statistics measured on `images` (one
    training-mode call with momentum 0) with the variances scaled by U(0.5, 1.5)."""
    randomize(model, seed=seed)
    norms = [layer for layer in model._flatten_layers() if isinstance(layer, keras.layers.BatchNormalization)]
    momenta = [layer.momentum for layer in norms]
    for layer in norms:
        layer.momentum = 0.0
    model(images, training=True)
    rng = np.random.default_rng(seed)
    for layer, momentum in zip(norms, momenta):
        layer.momentum = momentum
        variance = keras.ops.convert_to_numpy(layer.moving_variance)
        layer.moving_variance.assign(variance * rng.uniform(0.5, 1.5, variance.shape).astype("float32"))
    return model
