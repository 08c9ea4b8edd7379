"""`serving.predictor` and `serving.stream`: a task model on Keras and on an
exported runtime gives what the Keras model's own `predict` gives on the
same prepared images; unreadable files are failures of their batch."""

from __future__ import annotations

import importlib.util

import keras
import numpy as np
import pytest
from PIL import Image

import mobilenetv3
from mobilenetv3.serving.predictor import open_predictor
from mobilenetv3.serving.stream import stream_batches

ONNXRUNTIME = importlib.util.find_spec("onnxruntime") is not None and importlib.util.find_spec("onnx") is not None


def _perturbed(model: keras.Model) -> keras.Model:
    """Random weights with BatchNorm statistics moved, so outputs depend on the input."""
    rng = np.random.default_rng(1)
    for weight in model.weights:
        value = keras.ops.convert_to_numpy(weight)
        if "moving_variance" in weight.path:
            value = rng.uniform(0.5, 1.5, value.shape)
        else:
            value = value + rng.normal(0, 0.05, value.shape)
        weight.assign(value.astype(value.dtype if value.dtype != "float64" else "float32"))
    return model


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    paths = []
    for index, (height, width) in enumerate([(50, 70), (90, 60), (64, 64), (40, 100), (77, 55)]):
        path = folder / f"{index}.jpg"
        Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype="uint8")).save(path)
        paths.append(str(path))
    (folder / "broken.jpg").write_bytes(b"not an image")
    paths.insert(2, str(folder / "broken.jpg"))
    return paths


def _small(input_shape: tuple) -> mobilenetv3.MobileNetV3Backbone:
    return mobilenetv3.MobileNetV3SmallBackbone(input_shape=input_shape, alpha=0.35)


@pytest.fixture(scope="module")
def models() -> tuple:
    """A classifier and a detector, built once for every runtime."""
    classifier = _perturbed(mobilenetv3.MobileNetV3ImageClassifier(_small((64, 64, 3)), 4))
    detector = _perturbed(mobilenetv3.MobileNetV3ObjectDetector(
        _small((None, None, 3)), 3, image_size=96, score_threshold=0.05, max_detections=20))
    return classifier, detector


def test_stream_keeps_order_reports_failures_and_checks_arguments(files: list[str]) -> None:
    prepare = lambda path: (np.asarray(Image.open(path).convert("RGB").resize((8, 8)), "float32"), (1, 1))  # noqa: E731
    batches = list(stream_batches(files, prepare, batch_size=4, workers=2))
    assert [b.paths for b in batches] == [[files[0], files[1], files[3]], files[4:]]
    assert [p for b in batches for p, _ in b.failures] == [files[2]]
    assert batches[0].images.shape == (3, 8, 8, 3) and sum(b.span for b in batches) == len(files)
    with pytest.raises(ValueError, match="batch_size"):
        next(stream_batches(files, prepare, batch_size=0))


def _needs(module: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(importlib.util.find_spec(module) is None, reason=f"{module} is not installed")


TF_ONLY = pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="the TFLite export needs TensorFlow")


@pytest.mark.parametrize("runtime", [
    "keras",
    pytest.param("onnxruntime", marks=pytest.mark.skipif(not ONNXRUNTIME, reason="onnxruntime is not installed")),
    pytest.param("openvino", marks=_needs("openvino")),
    pytest.param("litert", marks=[_needs("ai_edge_litert"), TF_ONLY, pytest.mark.heavy]),  # 30-110 s
])
def test_classifier_and_detector_match_keras_predict(files: list[str], models: tuple, runtime: str) -> None:
    classifier, detector = models
    with open_predictor(classifier, runtime, log=lambda _: None) as predictor:
        batch = next(stream_batches(files, predictor.prepare, batch_size=8))
        results = predictor.run(batch.images, batch.sizes)
    expected = keras.ops.softmax(classifier.predict(batch.images, verbose=0)) \
        if classifier.activation != "softmax" else classifier.predict(batch.images, verbose=0)
    np.testing.assert_allclose(np.stack([r["probabilities"] for r in results]), expected, atol=1e-5)

    with open_predictor(detector, runtime, log=lambda _: None) as predictor:
        batch = next(stream_batches(files, predictor.prepare, batch_size=8))
        results = predictor.run(batch.images, batch.sizes)
    assert batch.images.shape[1:] == (96, 96, 3)
    found = detector.predict(batch.images, verbose=0)  # boxes in the 96x96 inputs' pixels
    for index, ((height, width), result) in enumerate(zip(batch.sizes, results)):
        count = int(found["num_detections"][index])
        assert count > 0 and len(result["boxes"]) == count
        scale = np.asarray([width / 96, height / 96] * 2)
        np.testing.assert_allclose(result["boxes"], found["boxes"][index, :count] * scale, atol=1e-3)
        np.testing.assert_allclose(result["scores"], found["confidence"][index, :count], atol=1e-5)
        np.testing.assert_array_equal(result["labels"], found["labels"][index, :count])


def test_segmenter_masks_come_back_at_each_image_size(files: list[str]) -> None:
    segmenter = _perturbed(mobilenetv3.MobileNetV3ImageSegmenter(_small((None, None, 3)), 3))
    with open_predictor(segmenter, "keras") as predictor:
        predictor.policy = predictor.policy.resized_to(64)
        predictor.image_size = 64
        batch = next(stream_batches(files, predictor.prepare, batch_size=8))
        results = predictor.run(batch.images, batch.sizes)
    scores = segmenter.predict(batch.images, verbose=0)
    for (height, width), result, score in zip(batch.sizes, results, scores):
        assert result["mask"].shape == (height, width)
        if (height, width) == (64, 64):
            np.testing.assert_array_equal(result["mask"], np.argmax(score, axis=-1))


def test_a_backbone_is_refused_with_the_kinds_it_takes() -> None:
    with pytest.raises(ValueError, match="classifier, segmenter or detector"):
        open_predictor(_small((32, 32, 3)))
    with pytest.raises(ValueError, match="runtime"):
        open_predictor(mobilenetv3.MobileNetV3ImageClassifier(_small((32, 32, 3)), 2), "tensorrt")

