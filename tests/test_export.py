"""Export parity against the real runtimes: onnxruntime, LiteRT, TF SavedModel."""

from __future__ import annotations

import collections

import keras
import numpy as np
import pytest
from helpers import keras_outputs, pixel_images, trained_looking

import mobilenetv3
from mobilenetv3.export import export_onnx, export_saved_model, export_tflite, quantize_onnx
from mobilenetv3.tasks.segmenter import MobileNetV3ImageSegmenter

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

TOLERANCE = 1e-4
TF_ONLY = pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="SavedModel/TFLite need TensorFlow")








def _op_counts(path) -> collections.Counter:
    return collections.Counter(node.op_type for node in onnx.load(str(path)).graph.node)


def _onnx_run(path, images: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"images": images})[0]


@pytest.fixture(scope="module")
def small_classifier(small_backbone) -> keras.Model:
    keras.utils.set_random_seed(0)
    model = mobilenetv3.MobileNetV3ImageClassifier(small_backbone, num_classes=10)
    return model


# -- ONNX ---------------------------------------------------------------------


@pytest.mark.core
def test_onnx_backbone_matches_keras_at_two_sizes_and_batches(small_backbone, tmp_path):
    path = export_onnx(small_backbone, tmp_path / "backbone.onnx")
    for shape in [(1, 224, 224, 3), (3, 193, 257, 3)]:  # dynamic batch and spatial size
        images = pixel_images(shape)
        expected = keras_outputs(small_backbone, images)
        assert np.abs(expected).max() > 0.5  # the comparison is not vacuous
        np.testing.assert_allclose(_onnx_run(path, images), expected, atol=TOLERANCE, rtol=0)


@pytest.mark.core
def test_onnx_graph_is_native_hard_swish_with_bn_and_pads_folded(small_classifier, tmp_path):
    path = export_onnx(small_classifier, tmp_path / "classifier.onnx")
    ops = _op_counts(path)
    assert onnx.load(str(path)).opset_import[0].version >= 14
    # Small: stem + 8 hard-swish blocks (expand and depthwise) + Conv_1 + Conv_2 = 19
    assert ops["HardSwish"] == 19
    assert ops["HardSigmoid"] == 9  # one per squeeze-and-excite
    for banned in ("BatchNormalization", "Clip", "Min", "Max", "Div", "Pad", "Sub"):
        assert banned not in ops, ops
    assert ops["Transpose"] == 1  # only at the NHWC input
    # The pooled head (Conv_2, Logits: 1x1 convs on a 1x1 map) is two Gemms.
    assert ops["Gemm"] == 2 and ops["Flatten"] == 1
    assert ops["Conv"] == 52  # stem + 11 blocks' expand/depthwise/project + 9 SE x 2 + Conv_1


@pytest.mark.core
def test_onnx_classifier_and_large_symmetric_padding_match(tmp_path):
    keras.utils.set_random_seed(0)
    backbone = trained_looking(
        mobilenetv3.MobileNetV3LargeBackbone(include_rescaling=True, padding="symmetric", preprocessing="imagenet")
    )
    model = mobilenetv3.MobileNetV3ImageClassifier(backbone, num_classes=7, activation="softmax")
    path = export_onnx(model, tmp_path / "large.onnx")
    assert "Pad" not in _op_counts(path)  # ZeroPadding2D folded into the convs' pads
    images = pixel_images((2, 224, 224, 3))
    np.testing.assert_allclose(_onnx_run(path, images), keras_outputs(model, images), atol=TOLERANCE, rtol=0)
    logits_model = mobilenetv3.MobileNetV3ImageClassifier(backbone, num_classes=7)
    path = export_onnx(logits_model, tmp_path / "logits.onnx")
    expected = keras_outputs(logits_model, images)
    assert np.abs(expected).max() > 0.1
    np.testing.assert_allclose(_onnx_run(path, images), expected, atol=TOLERANCE, rtol=0)


@pytest.mark.core
def test_onnx_channels_first_fixed_size_has_no_transpose(small_classifier, tmp_path):
    path = export_onnx(small_classifier, tmp_path / "nchw.onnx", channels_first=True, input_size=224)
    assert "Transpose" not in _op_counts(path)
    images = pixel_images((2, 224, 224, 3))
    result = _onnx_run(path, images.transpose(0, 3, 1, 2))
    np.testing.assert_allclose(result, keras_outputs(small_classifier, images), atol=TOLERANCE, rtol=0)


@pytest.mark.core
def test_onnx_segmenter_matches_keras(small_backbone, tmp_path):
    keras.utils.set_random_seed(0)
    model = trained_looking(MobileNetV3ImageSegmenter(small_backbone, num_classes=4), seed=3)
    path = export_onnx(model, tmp_path / "segmenter.onnx")
    assert "Resize" in _op_counts(path)
    images = pixel_images((1, 200, 232, 3))
    expected = keras_outputs(model, images)
    assert expected.shape == (1, 200, 232, 4)
    np.testing.assert_allclose(_onnx_run(path, images), expected, atol=TOLERANCE, rtol=0)


@pytest.mark.core
def test_onnx_unsupported_layer_fails_loudly_and_writes_nothing(tmp_path):
    inputs = keras.Input((32, 32, 3))
    outputs = keras.layers.MaxPooling2D(name="my_pool")(inputs)
    with pytest.raises(NotImplementedError, match="'my_pool' of type MaxPooling2D"):
        export_onnx(keras.Model(inputs, outputs), tmp_path / "bad.onnx")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.core
def test_onnx_bad_arguments(small_backbone, tmp_path):
    with pytest.raises(ValueError, match="input_size"):
        export_onnx(small_backbone, tmp_path / "a.onnx", input_size=(16, 16))
    with pytest.raises(ValueError, match="functional"):
        export_onnx(keras.Sequential([keras.layers.Dense(2)]), tmp_path / "b.onnx")
    assert list(tmp_path.iterdir()) == []


def test_onnx_int8_runs_and_tracks_float(small_classifier, tmp_path):
    float_path = export_onnx(small_classifier, tmp_path / "f.onnx", input_size=224)
    calibration = pixel_images((8, 224, 224, 3), seed=5)
    int8_path = quantize_onnx(float_path, tmp_path / "q.onnx", calibration)
    ops = _op_counts(int8_path)
    assert ops["QuantizeLinear"] > 0 and ops["DequantizeLinear"] > 0
    images = pixel_images((4, 224, 224, 3), seed=6)
    reference, quantized = _onnx_run(float_path, images), _onnx_run(int8_path, images)
    correlation = np.corrcoef(reference.ravel(), quantized.ravel())[0, 1]
    assert correlation > 0.9, correlation


# -- SavedModel and TFLite ----------------------------------------------------------


@TF_ONLY
def test_saved_model_float_and_uint8_signatures(small_classifier, tmp_path):
    import tensorflow as tf

    path = export_saved_model(small_classifier, tmp_path / "saved")
    signatures = tf.saved_model.load(str(path)).signatures
    assert set(signatures) == {"serving_default", "serving_uint8"}
    pixels = pixel_images((2, 224, 224, 3)).round()
    expected = keras_outputs(small_classifier, pixels)
    assert np.abs(expected).max() > 0.1
    for name, dtype in (("serving_default", tf.float32), ("serving_uint8", tf.uint8)):
        (result,) = signatures[name](images=tf.cast(pixels, dtype)).values()
        np.testing.assert_allclose(result.numpy(), expected, atol=TOLERANCE, rtol=0)


@TF_ONLY
def test_tflite_float_matches_keras_and_uses_fused_hard_swish(small_classifier, tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    path = export_tflite(small_classifier, tmp_path / "m.tflite")
    interpreter = Interpreter(str(path))
    ops = collections.Counter(op["op_name"] for op in interpreter._get_ops_details())
    assert ops["HARD_SWISH"] == 19, ops
    assert "RSQRT" not in ops and "RELU6" not in ops  # BN folded, hard-swish not a relu6 chain
    images = pixel_images((2, 224, 224, 3))
    entry = interpreter.get_input_details()[0]["index"]
    interpreter.resize_tensor_input(entry, images.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(entry, images)
    interpreter.invoke()
    result = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    np.testing.assert_allclose(result, keras_outputs(small_classifier, images), atol=TOLERANCE, rtol=0)


def _op_output_types(interpreter) -> dict[str, set]:
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    kinds: dict[str, set] = collections.defaultdict(set)
    for op in interpreter._get_ops_details():
        kinds[op["op_name"]].add(tensors[op["outputs"][0]]["dtype"])
    return kinds


@TF_ONLY
@pytest.mark.parametrize("full_integer", [True, False])
def test_tflite_int8_quantizes_every_conv(small_backbone, tmp_path, full_integer):
    from ai_edge_litert.interpreter import Interpreter

    with pytest.raises(ValueError, match="calibration"):
        export_tflite(small_backbone, tmp_path / "q.tflite", int8=True)
    for wrong in ("HARD_SWISH", ["HARDSWISH"]):  # a bare string; a name TFLite does not have
        with pytest.raises(ValueError, match="float_ops"):
            export_tflite(small_backbone, tmp_path / "q.tflite", int8=True, calibration=pixel_images((1, 224, 224, 3)),
                          float_ops=wrong)
    assert list(tmp_path.iterdir()) == []
    path = export_tflite(small_backbone, tmp_path / "q.tflite", int8=True, calibration=pixel_images((4, 224, 224, 3)),
                         float_ops=() if full_integer else ("HARD_SWISH",))
    interpreter = Interpreter(str(path))
    kinds = _op_output_types(interpreter)
    for name in ("CONV_2D", "DEPTHWISE_CONV_2D", "MEAN", "ADD"):
        assert kinds[name] == {np.int8}, (name, kinds)
    # Hard-swish: int8 in a full-integer model, else float between DEQUANTIZE and QUANTIZE.
    assert kinds["HARD_SWISH"] == {np.int8 if full_integer else np.float32}, kinds
    interpreter.allocate_tensors()
    images = pixel_images((1, 224, 224, 3), seed=7)
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], images)
    interpreter.invoke()
    result = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    correlation = np.corrcoef(result.ravel(), keras_outputs(small_backbone, images).ravel())[0, 1]
    assert correlation > 0.9, correlation
