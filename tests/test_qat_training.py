"""`mobilenetv3 train --qat`: quantization-aware training of a trained
classifier's twin on a folder of images, run as the installed console
script; by distillation from the float classifier on unlabelled images,
checked against a twin calibrated on the same images and the float model."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from console_script import run_script
from helpers import trained_looking
from PIL import Image

import mobilenetv3
from mobilenetv3.presets import folders, loader
from mobilenetv3.presets.preprocessing import load_images
from mobilenetv3.quantization import QATModel, calibrate_ranges, fake_quant_layers, quantize_aware
from mobilenetv3.training.qat import random_crop

CLASSES = ["red", "green", "blue"]


@pytest.fixture(scope="module")
def float_preset(tmp_path_factory):
    """A tiny classifier preset whose outputs depend on its input, and a
    folder of unlabelled images (no class sub-folders)."""
    root = tmp_path_factory.mktemp("qat")
    backbone = mobilenetv3.MobileNetV3SmallBackbone(input_shape=(32, 32, 3), alpha=0.35)
    model = trained_looking(mobilenetv3.MobileNetV3ImageClassifier(backbone, num_classes=3), seed=1)
    folders.save_preset(model, root / "float", class_names=CLASSES)
    rng = np.random.default_rng(0)
    (root / "photos").mkdir()
    for index in range(10):
        pixels = rng.uniform(0, 255, (50, 60, 3)).astype("uint8")
        Image.fromarray(pixels).save(root / "photos" / f"{index}.jpg")
    return root


def _logit_error(model: keras.Model, reference: np.ndarray, images: np.ndarray) -> float:
    outputs = keras.ops.convert_to_numpy(model(images, training=False))
    return float(np.abs(outputs - reference).mean() / reference.std())


@pytest.mark.slow
def test_train_qat_distills_the_float_classifier_on_unlabelled_images(float_preset):
    root = float_preset
    result = run_script("train", "--qat", root / "photos", "--preset", root / "float", "--out", root / "qat",
                        "--epochs", "3", "--qat-crops", "8", "--batch-size", "8", "--learning-rate", "1e-5",
                        "--validation-split", "0", "--qat-target", "onnxruntime", "--quiet", cwd=root)
    assert "quantization-aware training by distillation" in result.stdout
    assert "wrote quantization-aware preset" in result.stdout

    twin = loader.load_model(root / "qat")
    assert isinstance(twin, QATModel) and twin.class_names == CLASSES
    options = {"hard_swish": "add_mul", "quantize_after_rescaling": True}  # --qat-target onnxruntime
    assert {name: twin.options[name] for name in options} == options
    assert all(float(keras.ops.convert_to_numpy(q.initialized)) == 1 for q in fake_quant_layers(twin))
    float_model = loader.load_model(root / "float")
    # The twin calibrated on the same photos, untrained: what distillation must improve on.
    calibrated = quantize_aware(float_model, **options)
    calibrate_ranges(calibrated, load_images(sorted((root / "photos").glob("*.jpg")), twin.image_policy))
    # New random crops of the photos (the training crops' distribution, other draws).
    rng = np.random.default_rng(123)
    photos = [Image.open(p).convert("RGB") for p in sorted((root / "photos").glob("*.jpg"))]
    images = np.stack([random_crop(photos[i % len(photos)], 32, rng) for i in range(64)])
    reference = keras.ops.convert_to_numpy(float_model(images, training=False))
    trained, untrained = _logit_error(twin, reference, images), _logit_error(calibrated, reference, images)
    print(f"logit error vs float (float-logit std units): calibrated {untrained:.4f}, distilled {trained:.4f}")
    # Training keeps the twin as close to the float model as calibration left it (0.030 -> 0.032 measured;
    # ranges that drift with small batches gave 1.1). Whether distillation improves on it is measured on the
    # real weights (benchmarks): this random tiny model's quantization error is already at the noise floor.
    assert 0 < trained < 1.5 * untrained


def test_train_qat_bad_input_fails_clearly(float_preset):
    root = float_preset
    result = run_script("train", "--qat", "--task", "detect", root / "photos", "--out", root / "x", cwd=root,
                        expect=2)
    assert "--qat" in result.stderr
    result = run_script("train", "--qat", root / "photos", "--preset", "mobilenet_v3_small", "--out", root / "x",
                        cwd=root, expect=2)
    assert "`preset` must be a float classifier" in result.stderr
    assert not (root / "x").exists()


@pytest.mark.heavy
def test_quantize_classifier_with_labels(float_preset, tmp_path):
    """A folder whose sub-folders are the classifier's classes trains on its labels."""
    from mobilenetv3.training.qat import quantize_classifier

    rng = np.random.default_rng(1)
    for label, name in enumerate(CLASSES):
        (tmp_path / name).mkdir()
        for index in range(6):
            pixels = rng.uniform(0, 100, (40, 40, 3))
            pixels[..., label] += 150
            Image.fromarray(pixels.astype("uint8")).save(tmp_path / name / f"{index}.png")
    result = quantize_classifier(float_preset / "float", tmp_path, epochs=1, batch_size=8, validation_split=0.2,
                                 verbose=0)
    assert result.loss == "labels" and result.accuracy is not None and result.held_out == 4
