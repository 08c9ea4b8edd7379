"""A quantization-aware classifier preset (kind "qat", what `train --qat`
writes) deploys as its float classifier preset does: `mobilenetv3 predict`
and `evaluate` with its class names and its float model's input scaling,
on Keras and on its LiteRT int8 export (the QAT exporter, not post-training
quantization); `io_dtype` through `export_model` and `export --io-dtype`;
MediaPipe's ImageClassifier runs its uint8 LiteRT file with the metadata
the export writes. The oracle is the twin called on the images directly."""

from __future__ import annotations

import json
import re

import keras
import numpy as np
import pytest
from console_script import run_script
from helpers import litert_uint8_outputs, lively
from PIL import Image

import mobilenetv3
from mobilenetv3.presets import folders
from mobilenetv3.quantization import calibrate_ranges, quantize_aware

pytestmark = pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="LiteRT export and console scripts")
CLASSES = ["red", "green", "blue"]
SIZE = 32


def _twin(include_rescaling: bool, seed: int):
    """The calibrated twin of a tiny classifier with image-dependent outputs;
    raw-pixel ranges 0..255 exactly (the calibration images hold a 0 and a 255)."""
    keras.utils.set_random_seed(seed)
    # Two blocks of MobileNetV3 (squeeze-excite, hard-swish, a residual add): quick to trace and convert.
    backbone = mobilenetv3.MobileNetV3Backbone(
        stackwise_expansion=[1, 4], stackwise_filters=[16, 16], stackwise_kernel_size=[3, 3], stackwise_stride=[2, 1],
        stackwise_se_ratio=[0.25, 0.25], stackwise_activation=["relu", "hard_swish"],
        include_rescaling=include_rescaling, input_shape=(SIZE, SIZE, 3))
    images = _colored(16, (SIZE, SIZE), seed).astype("float32")
    images[0, 0, 0], images[0, 0, 1] = 0, 255
    images = images if include_rescaling else images / 255
    model = lively(mobilenetv3.MobileNetV3ImageClassifier(backbone, num_classes=len(CLASSES)), images, seed)
    twin = quantize_aware(model)
    calibrate_ranges(twin, images)
    return twin


def _colored(count: int, shape: tuple, seed: int) -> np.ndarray:
    """uint8 images, each a random color with noise (the tiny model's outputs differ between them)."""
    rng = np.random.default_rng(seed)
    colors = rng.integers(0, 256, (count, 1, 1, 3))
    return np.clip(colors + rng.normal(0, 25, (count, *shape, 3)), 0, 255).astype("uint8")


def _photos(folder, count: int, seed: int) -> list:
    folder.mkdir(parents=True)
    paths = [folder / f"{index}.png" for index in range(count)]
    for path, pixels in zip(paths, _colored(count, (40, 48), seed)):
        Image.fromarray(pixels).save(path)
    return paths


def _prepared(paths: list) -> np.ndarray:
    """The images as a 32-pixel classifier preset prepares them: squashed bilinearly, 0..255."""
    return np.stack([np.asarray(Image.open(p).convert("RGB").resize((SIZE, SIZE), Image.BILINEAR), "float32")
                     for p in paths])


def _probabilities(twin, images: np.ndarray) -> np.ndarray:
    logits = keras.ops.convert_to_numpy(twin(images, training=False)).astype("float64")
    shifted = np.exp(logits - logits.max(-1, keepdims=True))
    return shifted / shifted.sum(-1, keepdims=True)


@pytest.fixture(scope="module")
def unscaled(tmp_path_factory):
    """A twin of a classifier that takes [0, 1] input (`include_rescaling=False`,
    "unit" mode) saved as a QAT preset, and a labelled folder of images."""
    root = tmp_path_factory.mktemp("qat_deploy")
    twin = _twin(include_rescaling=False, seed=3)
    folders.save_preset(twin, root / "qat", class_names=CLASSES)
    files = [path for label, name in enumerate(CLASSES) for path in _photos(root / "data" / name, 2, label)]
    expected = _probabilities(twin, _prepared(files) / 255)  # the preset's "unit" scaling, by hand
    return root, files, expected


@pytest.mark.slow  # `predict` in-process, `evaluate` by the console script, converting to LiteRT: ~25 s
def test_predict_and_evaluate_a_qat_preset_as_its_classifier(unscaled, capsys, monkeypatch):
    """`predict` on Keras prints the twin's probabilities under its class
    names; `evaluate --runtime litert` runs its int8 export (the QAT
    exporter) and scores what the twin scores."""
    from mobilenetv3.cli import main

    root, files, expected = unscaled
    monkeypatch.chdir(root)  # `predict` by the command's `main` in this process: one TensorFlow start less
    assert main(["predict", "--preset", str(root / "qat"), *map(str, files), "--top", "3"]) == 0
    stdout = capsys.readouterr().out
    blocks = stdout.split(".png:")[1:]
    assert len(blocks) == len(files), stdout
    for block, row in zip(blocks, expected):
        printed = re.findall(r"\d\. (\w+)\s+([\d.]+)", block)
        assert [name for name, _ in printed] == [CLASSES[i] for i in np.argsort(-row)], block
        np.testing.assert_allclose([float(p) for _, p in printed], np.sort(row)[::-1], atol=2e-4)
    result = run_script("evaluate", "--preset", root / "qat", root / "data", "--runtime", "litert", "--report",
                        root / "report.json", "--predictions", root / "p.jsonl", "--no-progress", cwd=root)
    assert "exporting the quantization-aware classifier (int8, its own ranges) to tflite" in result.stdout
    rows = {row["path"]: row["probabilities"] for row in map(json.loads, open(root / "p.jsonl"))}
    litert = np.array([rows[str(path)] for path in files])
    np.testing.assert_array_equal(litert.argmax(-1), expected.argmax(-1))  # the twin's top-1
    assert np.abs(litert - expected).max() < 0.02  # within a few of the output's int8 steps
    report = json.loads((root / "report.json").read_text())
    assert report["model"]["class"] == "QATModel" and sorted(report["metrics"]["per_class"]) == sorted(CLASSES)
    truth = np.repeat(np.arange(len(CLASSES)), 2)
    assert report["metrics"]["top1"] == pytest.approx(100 * np.mean(expected.argmax(-1) == truth))


def test_io_dtype_is_refused_where_it_does_not_apply(unscaled, tmp_path, capsys):
    from mobilenetv3.cli import main
    from mobilenetv3.export import export_model
    from mobilenetv3.presets import loader

    root = unscaled[0]
    twin = loader.load_model(root / "qat")
    with pytest.raises(ValueError, match=r"`io_dtype` must be one of \['float32', 'int8', 'uint8'\]"):
        export_model(twin, tmp_path / "x.tflite", "tflite", io_dtype="int16")
    with pytest.raises(ValueError, match=r"`io_dtype` 'int8' applies to formats \['tflite'\], not 'onnx'"):
        export_model(twin, tmp_path / "x.onnx", "onnx", io_dtype="int8")
    with pytest.raises(ValueError, match="applies to a QATModel"):
        export_model(twin.float_model(), tmp_path / "x.tflite", "tflite", io_dtype="uint8")
    assert main(["export", str(root / "qat"), str(tmp_path / "x.onnx"), "--format", "onnx", "--io-dtype", "int8"]) == 2
    assert "--io-dtype applies to --format tflite only" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


@pytest.mark.slow  # two in-process exports, MediaPipe's start: ~25 s
def test_mediapipe_classifies_a_uint8_qat_export_as_litert_and_the_twin(tmp_path):
    import mediapipe as mp
    from ai_edge_litert.interpreter import Interpreter
    from mediapipe.tasks.python import vision

    from mobilenetv3.cli import main
    from mobilenetv3.export import export_model

    twin = _twin(include_rescaling=True, seed=4)
    folders.save_preset(twin, tmp_path / "qat", class_names=CLASSES)
    # the command's `main` in this process (one TensorFlow start less; `evaluate` above runs the console script)
    assert main(["export", str(tmp_path / "qat"), str(tmp_path / "qat.tflite"), "--format", "tflite",
                 "--io-dtype", "uint8"]) == 0
    images = _colored(6, (SIZE, SIZE), seed=5)
    litert, source, target = litert_uint8_outputs(tmp_path / "qat.tflite", images)
    assert source["dtype"] == np.uint8 and source["quantization"] == (1.0, 0)  # the raw pixels
    with vision.ImageClassifier.create_from_model_path(str(tmp_path / "qat.tflite")) as classifier:
        results = [classifier.classify(mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(image)))
                   .classifications[0].categories for image in images]
    expected = keras.ops.convert_to_numpy(twin(images.astype("float32"), training=False))
    assert len(set(expected.argmax(-1))) > 1  # outputs that depend on the image
    for categories, scores, reference in zip(results, litert, expected):
        assert categories[0].index == scores.argmax()  # MediaPipe runs the file as LiteRT does
        assert categories[0].category_name == CLASSES[scores.argmax()]
        np.testing.assert_allclose(sorted(c.score for c in categories), np.sort(scores), atol=1e-6)
        top2 = np.sort(reference)[-2:]
        if top2[1] - top2[0] > 2 * target["quantization"][0]:  # not a tie one int8 step can swap
            assert scores.argmax() == reference.argmax()
    assert np.abs(litert - expected).max() < 3 * target["quantization"][0]
    # int8 input: MediaPipe feeds uint8 or float32 only; the file is written without metadata, with a warning.
    with pytest.warns(UserWarning, match="without MediaPipe metadata: MediaPipe feeds uint8 or float32"):
        export_model(twin, tmp_path / "int8.tflite", "tflite", io_dtype="int8")
    assert Interpreter(str(tmp_path / "int8.tflite")).get_input_details()[0]["dtype"] == np.int8
