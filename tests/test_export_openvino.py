"""OpenVINO IR export against Keras, run by the real OpenVINO runtime."""

from __future__ import annotations

import sys

import keras
import numpy as np
import pytest
from helpers import keras_outputs, pixel_images, trained_looking

import mobilenetv3
from mobilenetv3.cli import main
from mobilenetv3.export import compile_openvino, export_openvino
from mobilenetv3.tasks.segmenter import MobileNetV3ImageSegmenter

ov = pytest.importorskip("openvino")

TOLERANCE = 1e-4








def _element_types(path) -> set[str]:
    model = ov.Core().read_model(str(path))
    return {op.get_output_element_type(0).get_type_name() for op in model.get_ops() if op.get_type_name() == "Constant"}


def _op_types(path) -> set[str]:
    return {op.get_type_name() for op in ov.Core().read_model(str(path)).get_ops()}


@pytest.fixture(scope="module")
def small_classifier(small_backbone) -> keras.Model:
    keras.utils.set_random_seed(0)
    return trained_looking(mobilenetv3.MobileNetV3ImageClassifier(small_backbone, num_classes=10), seed=2)


@pytest.mark.core
def test_openvino_fp32_backbone_matches_keras_at_two_sizes_and_batches(small_backbone, tmp_path):
    path = export_openvino(small_backbone, tmp_path / "backbone.xml")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["backbone.bin", "backbone.xml"]
    assert "f16" not in _element_types(path)  # OpenVINO's default fp16 weight compression is off
    assert "HSwish" in _op_types(path)
    compiled = compile_openvino(path)
    assert compiled.get_property("INFERENCE_PRECISION_HINT") == ov.Type.f32
    for shape in [(1, 224, 224, 3), (3, 160, 192, 3)]:  # dynamic batch and spatial size
        images = pixel_images(shape)
        expected = keras_outputs(small_backbone, images)
        assert np.abs(expected).max() > 0.5  # the comparison is not vacuous
        np.testing.assert_allclose(compiled(images)[0], expected, atol=TOLERANCE, rtol=0)


@pytest.mark.core
def test_openvino_fp32_classifier_channels_first_and_segmenter_match_keras(small_backbone, small_classifier,
                                                                            tmp_path):
    images = pixel_images((2, 128, 128, 3))
    path = export_openvino(small_classifier, tmp_path / "classifier.xml", channels_first=True, input_size=128)
    logits = compile_openvino(path)(images.transpose(0, 3, 1, 2))[0]
    np.testing.assert_allclose(logits, keras_outputs(small_classifier, images), atol=TOLERANCE, rtol=0)
    keras.utils.set_random_seed(0)
    segmenter = trained_looking(MobileNetV3ImageSegmenter(small_backbone, num_classes=4), seed=3)
    path = export_openvino(segmenter, tmp_path / "segmenter.xml")
    images = pixel_images((1, 200, 232, 3))
    expected = keras_outputs(segmenter, images)
    assert expected.shape == (1, 200, 232, 4)
    np.testing.assert_allclose(compile_openvino(path)(images)[0], expected, atol=TOLERANCE, rtol=0)


@pytest.mark.slow
def test_openvino_bf16_and_int8_run_and_track_float(small_classifier, tmp_path):
    images = pixel_images((8, 96, 96, 3), seed=4)
    expected = keras_outputs(small_classifier, images)
    scale = np.abs(expected).max()
    assert scale > 0.1  # the comparisons below are relative to it
    bf16 = compile_openvino(export_openvino(small_classifier, tmp_path / "bf16.xml", precision="bf16"))
    assert bf16.get_property("INFERENCE_PRECISION_HINT") in (ov.Type.bf16, ov.Type.f32)  # f32 without bf16 CPU
    np.testing.assert_allclose(bf16(images)[0], expected, atol=0.05 * scale, rtol=0)
    path = export_openvino(small_classifier, tmp_path / "int8.xml", precision="int8",
                           calibration=pixel_images((16, 96, 96, 3), seed=5), input_size=96)
    assert "FakeQuantize" in _op_types(path)
    assert "i8" in _element_types(path)  # int8 weights on disk
    int8 = compile_openvino(path)(images)[0]
    assert np.abs(int8 - expected).max() < 0.25 * scale
    assert np.corrcoef(int8.ravel(), expected.ravel())[0, 1] > 0.97


@pytest.mark.core
def test_openvino_bad_arguments_write_nothing(small_backbone, tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="`precision` must be one of"):
        export_openvino(small_backbone, tmp_path / "m.xml", precision="fp16")
    with pytest.raises(ValueError, match="`calibration` is required"):
        export_openvino(small_backbone, tmp_path / "m.xml", precision="int8")
    with pytest.raises(ValueError, match=r"`calibration` must be images"):
        export_openvino(small_backbone, tmp_path / "m.xml", precision="int8", calibration=np.zeros((4, 96, 96)))
    with pytest.raises(ValueError, match=r"\.xml"):
        export_openvino(small_backbone, tmp_path / "m.onnx")
    monkeypatch.setitem(sys.modules, "openvino", None)
    with pytest.raises(ImportError, match=r"mobilenetv3\[openvino\]"):
        export_openvino(small_backbone, tmp_path / "m.xml")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_cli_export_openvino_fp32_and_bf16(tmp_path, capsys):
    out = tmp_path / "m.xml"
    assert main(["export", "mobilenet_v3_small", str(out), "--format", "openvino", "--input-size", "96"]) == 0
    assert "wrote openvino model" in capsys.readouterr().out
    compiled = compile_openvino(out)
    assert compiled(pixel_images((2, 96, 96, 3)))[0].shape == (2, 3, 3, 576)
    assert main(["export", "mobilenet_v3_small", str(tmp_path / "b.xml"), "--format", "openvino", "--bf16"]) == 0
    model = ov.Core().read_model(str(tmp_path / "b.xml"))
    assert model.get_rt_info(["runtime_options", "INFERENCE_PRECISION_HINT"]).astype(str) == "bf16"
    assert main(["export", "mobilenet_v3_small", str(tmp_path / "x.onnx"), "--format", "onnx", "--bf16"]) == 2
    assert "--bf16 applies to --format openvino" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.bin", "b.xml", "m.bin", "m.xml"]
