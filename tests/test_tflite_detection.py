"""The SSDLite detector's `.tflite` ending in LiteRT's
`TFLite_Detection_PostProcess` (`export --format tflite --postprocess`):
the op really is in the file with the attributes we chose, its detections
in LiteRT equal the Keras detector's `predict` (fp32 tightly, int8 within
stated tolerances), MediaPipe's `ObjectDetector` runs the files (which
carry MediaPipe's metadata) with no options and reports `predict`'s
detections (fp32) and LiteRT's (int8), and the
console script writes the int8 file.

One tiny detector (Small, 96x96, 3 foreground classes, random weights,
BatchNorm statistics from the images: 300 detections per image, scores
from 0.001 to about 0.9, different on every image), exported twice: fp32 in this process, int8
by the console script. Images: the four real images of ../shared/fixtures,
else generated shapes, resized to 96x96 (the file's input), fed to both.

`predict` keeps up to 300 detections and the op 100 (its `max_detections`,
see `tflite_detection.DEFAULT_MAX_DETECTIONS`): the file's detections are
compared with `predict`'s best 100.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
from conftest import SHARED_FIXTURES
from console_script import run_script
from helpers import randomize

from mobilenetv3 import MobileNetV3ImageClassifier, MobileNetV3ObjectDetector, MobileNetV3SmallBackbone
from mobilenetv3.export import export_model
from mobilenetv3.export.tflite_detection import (
    OP_NAME,
    OUTPUTS,
    op_attributes,
    open_tflite_detector,
    time_tflite_detector,
)

Interpreter = pytest.importorskip("ai_edge_litert.interpreter").Interpreter
pytestmark = pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TFLite export needs TensorFlow")

SIZE = 96
TOP = 100  # the op's max_detections
FP32_SCORE_TOLERANCE = 1e-4  # LiteRT's float kernels vs TensorFlow's: 4e-5 measured
FP32_BOX_TOLERANCE = 1e-4  # normalized, 0.01 pixel at 96
# int8: the network's activations in int8 (about 1/256 of their range):
# scores within 0.05, boxes IoU > 0.8 with a `predict` box of the same class.
INT8_SCORE_TOLERANCE = 0.05
INT8_IOU = 0.8
INT8_TOP = 20
INT8_MIN_MATCHED = 0.7  # measured: 74 of 80 (93%) over the 4 images; 81% of the best 100
# MediaPipe reports integer pixels (truncated).
MEDIAPIPE_PIXEL_TOLERANCE = 1.0


@pytest.fixture(scope="module")
def detector(images) -> MobileNetV3ObjectDetector:
    """Random weights, BatchNorm statistics those of the test images (one
    training-mode pass with momentum 0): `randomize`'s statistics alone
    leave this small network's outputs the same for every image (their
    spread across images is 1e-8), these make them depend on the image."""
    backbone = MobileNetV3SmallBackbone(reduced_tail=True, preprocessing="symmetric")
    model = MobileNetV3ObjectDetector(backbone, num_classes=4, image_size=SIZE)
    randomize(model, seed=3)
    batch_norms = [layer for layer in model._flatten_layers() if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in batch_norms:
        layer.momentum = 0.0
    model(images, training=True)
    for layer in batch_norms:
        layer.momentum = 0.97
    return model


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    """The real images (else generated shapes), 96x96 float32 0..255."""
    from PIL import Image

    folder = SHARED_FIXTURES / "images"
    files = sorted(folder.glob("*.bmp")) if folder.is_dir() else []
    if not files:
        from mobilenetv3.datasets import synthetic_detection

        return synthetic_detection(4, SIZE, seed=2)[0]
    resized = [Image.open(f).convert("RGB").resize((SIZE, SIZE), Image.BILINEAR) for f in files]
    return np.stack([np.asarray(image, np.float32) for image in resized])


@pytest.fixture(scope="module")
def expected(detector, images) -> dict:
    return detector.predict(images, verbose=0)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("tflite_detection")


@pytest.fixture(scope="module")
def fp32_file(detector, folder):
    return export_model(detector, folder / "det.tflite", "tflite", postprocess=True)


@pytest.fixture(scope="module")
def int8_file(detector, images, folder):
    """The console script: `export PRESET det_int8.tflite --format tflite
    --postprocess --int8 --calibration DIR --input-size 96`, calibrated on
    the test images written as PNG."""
    from PIL import Image

    preset = folder / "preset"
    detector.save_to_preset(preset)
    calibration = folder / "calibration"
    calibration.mkdir()
    for i, image in enumerate(images):
        Image.fromarray(image.astype(np.uint8)).save(calibration / f"{i}.png")
    out = folder / "det_int8.tflite"
    result = run_script("export", preset, out, "--format", "tflite", "--postprocess", "--int8", "--calibration",
                        calibration, "--input-size", SIZE, cwd=folder)
    assert f"wrote tflite int8 model to {out}" in result.stdout
    return out


def _run(path, image: np.ndarray) -> dict:
    runner = Interpreter(str(path)).get_signature_runner("serving_default")
    return runner(images=image[None].astype(np.float32))


def _predict_top(expected: dict, b: int) -> tuple:
    """Image `b` of `predict`: boxes as normalized yxyx, labels as the op's
    class index (label - 1), confidences; all `num_detections` of them."""
    count = int(expected["num_detections"][b])
    boxes = expected["boxes"][b, :count][:, [1, 0, 3, 2]] / SIZE
    return boxes, expected["labels"][b, :count] - 1, expected["confidence"][b, :count]


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    low = np.maximum(box[:2], boxes[:, :2])
    high = np.minimum(box[2:], boxes[:, 2:])
    inter = np.prod(np.clip(high - low, 0, None), axis=1)
    area = lambda b: np.prod(b[..., 2:] - b[..., :2], axis=-1)  # noqa: E731
    return inter / (area(box) + area(boxes) - inter)


def _set_match(got: dict, expected: dict, b: int) -> tuple[float, float]:
    """fp32: the file gives `predict`'s best `TOP` detections: each of its
    detections has its own `predict` detection (one to one) of the same
    class, score within 1e-4 and box within 1e-4 (normalized); none scores
    below `predict`'s TOP-th. Returns the largest box and score differences."""
    boxes, labels, scores = _predict_top(expected, b)
    count = int(got["num_detections"][0])
    assert count == min(TOP, len(scores)) and count > 0
    used = np.zeros(len(scores), bool)
    box_diff = score_diff = 0.0
    for i in range(count):
        box_error = np.abs(boxes - got["locations"][0, i]).max(axis=1)
        score_error = np.abs(scores - got["scores"][0, i])
        close = ~used & (labels == got["classes"][0, i]) & (score_error <= FP32_SCORE_TOLERANCE)
        close &= box_error <= FP32_BOX_TOLERANCE
        assert close.any(), f"image {b}: detection {i} {got['locations'][0, i]} has no predict() match"
        j = int(np.argmax(close))
        used[j] = True
        box_diff, score_diff = max(box_diff, box_error[j]), max(score_diff, score_error[j])
    assert got["scores"][0, count - 1] >= scores[count - 1] - FP32_SCORE_TOLERANCE
    assert np.all(got["scores"][0, count:] == 0)
    return box_diff, score_diff


def _operators(path) -> tuple:
    """(the model, the subgraph, {op index: op name}) read with TFLite's schema."""
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(path.read_bytes()), 0)
    builtin = {code: name for name, code in vars(schema.BuiltinOperator).items() if name.isupper()}
    names = {}
    graph = model.subgraphs[0]
    for index, op in enumerate(graph.operators):
        code = model.operatorCodes[op.opcodeIndex]
        names[index] = code.customCode.decode() if code.customCode else builtin[max(code.builtinCode,
                                                                                     code.deprecatedBuiltinCode)]
    return model, graph, names


@pytest.mark.slow
def test_fp32_file_ends_in_the_op_and_equals_predict(detector, images, expected, fp32_file):
    """The flatbuffer's last op is `TFLite_Detection_PostProcess` with our
    attributes (custom options read back as a flexbuffer), its 4 outputs are
    the subgraph's, in the op's order; LiteRT's detections are `predict`'s
    best 100 on every image (`_set_match`)."""
    from flatbuffers import flexbuffers

    _, graph, names = _operators(fp32_file)
    (index,) = [i for i, name in names.items() if name == OP_NAME]
    op = graph.operators[index]
    assert index == len(graph.operators) - 1
    assert list(graph.outputs) == list(op.outputs)
    options = flexbuffers.Loads(bytes(op.customOptions))
    chosen = op_attributes(detector)
    assert options["max_detections"] == TOP and options["use_regular_nms"] == 1  # stored as an int
    assert options["num_classes"] == 3 and "detections_per_class" not in options  # the kernel's 100
    for key in ("nms_iou_threshold", "nms_score_threshold", "y_scale", "x_scale", "h_scale", "w_scale"):
        assert np.float32(options[key]) == np.float32(chosen[key]), key
    assert (options["y_scale"], options["h_scale"]) == (10.0, 5.0)
    assert np.float32(options["nms_score_threshold"]) > np.float32(detector.score_threshold)

    interpreter = Interpreter(str(fp32_file))
    assert [tuple(d["shape"]) for d in interpreter.get_input_details()] == [(1, SIZE, SIZE, 3)]
    assert interpreter.get_signature_list()["serving_default"]["outputs"] == sorted(OUTPUTS)
    for b, image in enumerate(images):
        got = _run(fp32_file, image)
        assert got["locations"].shape == (1, TOP, 4) and got["num_detections"].shape == (1,)
        _set_match(got, expected, b)


@pytest.mark.slow
def test_int8_console_script_file_matches_predict(expected, images, int8_file):
    """The console script's int8 file: the network in int8 (its
    convolutions' weights are int8), the postprocessing float (the op's
    inputs float32, no int8 softmax); on each image, at least 70% of
    `predict`'s best 20 detections have an int8 detection of the same class
    with IoU > 0.8 and a score within 0.05."""
    model, graph, names = _operators(int8_file)
    types = {graph.tensors[op.outputs[0]].type for i, op in enumerate(graph.operators) if names[i] == "CONV_2D"}
    assert types == {9}  # INT8
    (op,) = [op for i, op in enumerate(graph.operators) if names[i] == OP_NAME]
    assert all(graph.tensors[t].type == 0 for t in op.inputs)  # FLOAT32
    assert "SOFTMAX" not in names.values()
    for b, image in enumerate(images):
        got = _run(int8_file, image)
        boxes, labels, scores = _predict_top(expected, b)
        count = int(got["num_detections"][0])
        matched = 0
        for j in range(min(INT8_TOP, len(scores))):
            close = (got["classes"][0, :count] == labels[j]) & (
                np.abs(got["scores"][0, :count] - scores[j]) <= INT8_SCORE_TOLERANCE)
            close &= _iou(boxes[j], got["locations"][0, :count]) > INT8_IOU
            matched += bool(close.any())
        assert matched >= INT8_MIN_MATCHED * min(INT8_TOP, len(scores)), f"image {b}: {matched} matched"


@pytest.mark.slow
def test_mediapipe_object_detector_gives_predicts_detections(images, expected, fp32_file, int8_file):
    """The exported files themselves (they carry MediaPipe's metadata) in
    MediaPipe's own `vision.ObjectDetector` with no options but the file.
    fp32: `predict`'s best 100 detections (a box detected in two classes is
    one MediaPipe Detection with two categories), class names ("1".."3",
    the detector's labels), scores within 1e-4, boxes within one pixel
    (MediaPipe's boxes are integer pixels). The console script's int8 file:
    what LiteRT gives for that file, likewise."""
    mp = pytest.importorskip("mediapipe")
    from mediapipe.tasks.python import BaseOptions, vision

    for path in (fp32_file, int8_file):
        options = vision.ObjectDetectorOptions(base_options=BaseOptions(model_asset_path=str(path)))
        with vision.ObjectDetector.create_from_options(options) as mediapipe_detector:
            for b, image in enumerate(images):
                frame = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(image.astype(np.uint8)))
                found = [(d.bounding_box, c) for d in mediapipe_detector.detect(frame).detections for c in d.categories]
                if path == fp32_file:
                    reference = _predict_top(expected, b)
                else:
                    got = _run(path, image)
                    count = int(got["num_detections"][0])
                    reference = got["locations"][0, :count], got["classes"][0, :count], got["scores"][0, :count]
                _check_mediapipe(found, *reference, f"{path.name} image {b}")


def _check_mediapipe(found: list, boxes: np.ndarray, labels: np.ndarray, scores: np.ndarray, what: str) -> None:
    """MediaPipe's (box, category) pairs against the first `TOP` reference
    detections, one to one (normalized yxyx boxes, class index from 0)."""
    assert len(found) == min(TOP, len(scores)), what
    used = np.zeros(len(scores), bool)
    for box, category in found:
        corner = np.array([box.origin_y, box.origin_x]) / SIZE
        extent = np.array([box.height, box.width]) / SIZE
        close = ~used & (labels + 1 == int(category.category_name))
        close &= np.abs(scores - category.score) <= FP32_SCORE_TOLERANCE
        close &= np.abs(boxes[:, :2] - corner).max(axis=1) <= MEDIAPIPE_PIXEL_TOLERANCE / SIZE
        close &= np.abs(boxes[:, 2:] - boxes[:, :2] - extent).max(axis=1) <= MEDIAPIPE_PIXEL_TOLERANCE / SIZE
        assert close.any(), f"{what}: MediaPipe's {box} {category} has no match"
        used[np.argmax(close)] = True


@pytest.mark.slow
def test_open_and_time_the_file(expected, images, fp32_file):
    """`open_tflite_detector` gives `predict`'s own format (pixel `xyxy`,
    labels from 1, padded with -1) for the file's detections;
    `time_tflite_detector` runs it."""
    got = open_tflite_detector(fp32_file, threads=1)(images[0])
    count = int(got["num_detections"][0])
    assert count == TOP and got["boxes"].shape == (1, TOP, 4)
    for i in range(count):
        close = (expected["labels"][0] == got["labels"][0, i])
        close &= np.abs(expected["confidence"][0] - got["confidence"][0, i]) <= FP32_SCORE_TOLERANCE
        close &= np.abs(expected["boxes"][0] - got["boxes"][0, i]).max(axis=1) <= FP32_BOX_TOLERANCE * SIZE
        assert close.any(), f"detection {i} {got['boxes'][0, i]} has no predict() match"
    timing = time_tflite_detector(fp32_file, runs=3, threads=1)
    assert timing["median_ms"] > 0 and timing["num_detections"] == TOP


def test_bad_options_are_named(detector, tmp_path):
    """int8 for a detector only where the format can (TFLite); the op's
    limits (`max_detections` >= 1, an IoU threshold in (0, 1]); postprocess
    only for a detector. Nothing is written."""
    for format in ("onnx", "openvino"):
        with pytest.raises(ValueError, match=r"int8.*MobileNetV3ObjectDetector.*\['tflite'\]"):
            export_model(detector, tmp_path / "det", format, int8=True)
    with pytest.raises(ValueError, match="max_detections"):
        op_attributes(detector, max_detections=0)
    detector.iou_threshold = 0.0
    try:
        with pytest.raises(ValueError, match="iou_threshold"):
            op_attributes(detector)
    finally:
        detector.iou_threshold = 0.55
    classifier = MobileNetV3ImageClassifier(MobileNetV3SmallBackbone(input_shape=(64, 64, 3)), num_classes=3)
    with pytest.raises(ValueError, match="postprocess.*MobileNetV3ObjectDetector"):
        export_model(classifier, tmp_path / "c.tflite", "tflite", postprocess=True)
    assert list(tmp_path.iterdir()) == []
