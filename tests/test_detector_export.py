"""Detector export: the raw network in onnxruntime, LiteRT and OpenVINO
against Keras (1e-4), the end-to-end ONNX graph (decoding + per-class
`NonMaxSuppression`) against the Keras detector's `predict` on real images,
the default boxes written beside every export, and bad options."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from helpers import randomize
from test_detector import IMAGES, _image, _oracle

from mobilenetv3 import MobileNetV3ObjectDetector, MobileNetV3SmallBackbone, weights
from mobilenetv3.export import EXPORTERS, export_model
from mobilenetv3.export.detector_export import anchors_path, decode_raw_outputs
from mobilenetv3.nets.backbone import MobileNetV3Backbone
from mobilenetv3.weights import torchvision as torchvision_weights

ort = pytest.importorskip("onnxruntime")

RAW_TOLERANCE = 1e-4
SCORE_TOLERANCE = 1e-4
BOX_TOLERANCE = 0.01  # pixels of the input image
TOP_DETECTIONS = 100
RAW_OUTPUTS = ("bbox_regression", "cls_logits")


@pytest.fixture(scope="module")
def ported() -> MobileNetV3ObjectDetector:
    """The Large SSDLite with test_detector's random torchvision weights
    (BatchNorm perturbed, class logits x3 so detections are confident)."""
    checkpoint = torchvision_weights.read_state_dict(_oracle().state_dict(), "random SSDLite")
    model = MobileNetV3ObjectDetector(MobileNetV3Backbone(**checkpoint.backbone_config), checkpoint.num_classes)
    weights.load_into(model, checkpoint)
    return model


@pytest.fixture(scope="module")
def small() -> MobileNetV3ObjectDetector:
    """A Small SSDLite at 128x128, every variable random."""
    backbone = MobileNetV3SmallBackbone(reduced_tail=True, preprocessing="symmetric")
    model = MobileNetV3ObjectDetector(backbone, num_classes=5, image_size=128)
    randomize(model, seed=3)
    return model


def _keras_raw(model: keras.Model, images: np.ndarray) -> dict:
    return {k: keras.ops.convert_to_numpy(v) for k, v in model(images, training=False).items()}


def _check_raw(got: dict, expected: dict, what: str) -> None:
    for key in RAW_OUTPUTS:
        assert got[key].shape == expected[key].shape, (what, key)
        assert np.abs(expected[key]).max() > 0.1, f"{key} too small to test"
        diff = np.abs(got[key] - expected[key]).max()
        assert diff <= RAW_TOLERANCE, f"{what} {key}: max abs diff {diff:.2e}"


def _images(shape: tuple, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, shape).astype("float32")


def _session(path) -> dict:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return lambda images: dict(zip(names, session.run(None, {"images": images}), strict=True))


def _check_detections(got: dict, expected: dict, what: str, b: int = 0) -> None:
    """Image `b`: same count; each of the best `TOP_DETECTIONS` of `got`
    has its own detection in `expected` (one to one) with the same label, a
    score within 1e-4 and a box within 0.01 pixel (matched as sets: equal
    scores may come in another order); padding -1 after the count."""
    count = int(expected["num_detections"][b])
    assert count > 0 and int(got["num_detections"][b]) == count, what
    used = np.zeros(count, bool)
    for i in range(min(TOP_DETECTIONS, count)):
        close = (
            ~used
            & (expected["labels"][b, :count] == got["labels"][b, i])
            & (np.abs(expected["confidence"][b, :count] - got["confidence"][b, i]) <= SCORE_TOLERANCE)
            & (np.abs(expected["boxes"][b, :count] - got["boxes"][b, i]).max(axis=1) <= BOX_TOLERANCE)
        )
        assert close.any(), f"{what}: detection {i} {got['boxes'][b, i]} has no Keras match"
        used[np.argmax(close)] = True
    assert np.all(got["labels"][b, count:] == -1) and np.all(got["confidence"][b, count:] == -1)


@pytest.mark.slow
def test_onnx_raw_and_end_to_end_match_keras(ported, shared_fixtures, tmp_path):
    """Raw ONNX: both outputs within 1e-4 of Keras on real images of their
    own sizes. End-to-end ONNX (`postprocess=True`): the detections of
    `predict` (see `_check_detections`)."""
    raw = _session(export_model(ported, tmp_path / "raw.onnx", "onnx"))
    end_to_end = _session(export_model(ported, tmp_path / "e2e.onnx", "onnx", postprocess=True))
    assert np.array_equal(np.load(anchors_path(tmp_path / "raw.onnx")), ported.anchors)
    for name in IMAGES[:2]:
        image = _image(shared_fixtures, name)[None]
        _check_raw(raw(image), _keras_raw(ported, image), name)
        got = end_to_end(image)
        assert got["boxes"].shape == (1, 300, 4) and got["labels"].dtype == np.int32
        assert got["confidence"][0, 0] > 0.2, "detections too flat to test"
        _check_detections(got, ported.predict(image, verbose=0), name)


@pytest.mark.slow
def test_tflite_raw_matches_keras_and_decodes_like_predict(small, tmp_path):
    """LiteRT runs the raw network within 1e-4 of Keras (batch 2, 100x150
    images); `decode_raw_outputs` with the `.anchors.npy` file gives
    `predict`'s detections."""
    interpreter_cls = pytest.importorskip("ai_edge_litert.interpreter").Interpreter
    path = export_model(small, tmp_path / "det.tflite", "tflite")
    images = _images((2, 100, 150, 3))
    runner = interpreter_cls(str(path)).get_signature_runner("serving_default")
    got = runner(images=images)
    _check_raw(got, _keras_raw(small, images), "litert")
    small.score_threshold = 0.2  # few, clearly ordered detections
    try:
        decoded = decode_raw_outputs(got["cls_logits"], got["bbox_regression"], anchors_path(path), (128, 128),
                                     (100, 150), score_threshold=0.2)
        expected = small.predict(images, verbose=0)
    finally:
        small.score_threshold = 0.001
    for b in range(2):
        _check_detections(decoded, expected, f"litert image {b}", b)


@pytest.mark.slow
def test_openvino_raw_matches_keras(small, tmp_path):
    pytest.importorskip("openvino")
    from mobilenetv3.export import compile_openvino

    path = export_model(small, tmp_path / "det.xml", "openvino")
    assert np.array_equal(np.load(anchors_path(path)), small.anchors)
    compiled = compile_openvino(path)
    images = _images((2, 100, 150, 3))
    result = compiled(images)
    got = {key: result[compiled.output(key)] for key in RAW_OUTPUTS}
    _check_raw(got, _keras_raw(small, images), "openvino")


@pytest.mark.parametrize("size", [160, 128])  # 128: the model's own size, no Resize in the graph
def test_onnx_raw_of_small_matches_keras_at_a_fixed_size(small, tmp_path, size):
    path = export_model(small, tmp_path / "det.onnx", "onnx", input_size=size, channels_first=True)
    import onnx

    assert any(n.op_type == "Resize" for n in onnx.load(str(path)).graph.node) == (size != 128)
    run = _session(path)
    images = _images((2, size, size, 3))
    _check_raw(run(images.transpose(0, 3, 1, 2).copy()), _keras_raw(small, images), "onnx nchw")


def test_bad_detector_export_options(small, tmp_path):
    classifier_like = MobileNetV3SmallBackbone()
    with pytest.raises(ValueError, match="`postprocess` applies to a MobileNetV3ObjectDetector"):
        export_model(classifier_like, tmp_path / "b.onnx", "onnx", postprocess=True)
    with pytest.raises(ValueError, match=r"`postprocess` applies to formats \['onnx', 'tflite'\]"):
        export_model(small, tmp_path / "d", "saved_model", postprocess=True)
    with pytest.raises(ValueError, match=r"`int8` export of a MobileNetV3ObjectDetector applies to formats \['tflite'\]"):
        export_model(small, tmp_path / "d.onnx", "onnx", int8=True, calibration=_images((2, 128, 128, 3)))
    assert not list(tmp_path.iterdir())
    assert [name for name, e in EXPORTERS.items() if e.postprocess] == ["onnx", "tflite"]
