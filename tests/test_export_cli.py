"""`mobilenetv3 export`: every kind of preset (backbone, classifier and
segmenter names and folders) to every format, and its flag rules."""

from __future__ import annotations

import dataclasses
import importlib.util

import keras
import numpy as np
import pytest

import mobilenetv3
from mobilenetv3 import presets
from mobilenetv3.cli import main
from mobilenetv3.export import EXPORTERS, export_model

pytest.importorskip("onnxruntime")


def test_cli_export_writes_onnx_and_refuses_bad_flags(tmp_path, capsys):
    import onnx

    assert main(["export", "mobilenet_v3_small", str(tmp_path / "m.onnx"), "--format", "onnx"]) == 0
    ops = {node.op_type for node in onnx.load(str(tmp_path / "m.onnx")).graph.node}
    assert "HardSwish" in ops and "BatchNormalization" not in ops
    assert main(["export", "mobilenet_v3_small", str(tmp_path / "q.onnx"), "--format", "onnx", "--int8"]) == 2
    assert "--calibration" in capsys.readouterr().err
    assert main(["export", "mobilenet_v3_small", str(tmp_path / "s"), "--format", "saved_model", "--int8",
                 "--calibration", str(tmp_path)]) == 2
    assert main(["export", "mobilenet_v3_small", str(tmp_path / "f.onnx"), "--format", "onnx", "--full-integer"]) == 2
    assert "--full-integer applies to --format tflite with --int8" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TFLite export needs TensorFlow")
@pytest.mark.parametrize("full_integer", [False, True])
def test_cli_export_tflite_int8_keeps_hard_swish_float_unless_full_integer(tmp_path, full_integer):
    from ai_edge_litert.interpreter import Interpreter
    from PIL import Image

    folder = tmp_path / "calibration"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for index in range(3):
        Image.fromarray(rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)).save(folder / f"{index}.png")
    out = tmp_path / "q.tflite"
    flags = ["--full-integer"] if full_integer else []
    assert main(["export", "mobilenet_v3_small", str(out), "--format", "tflite", "--int8",
                 "--calibration", str(folder), "--input-size", "96", *flags]) == 0
    interpreter = Interpreter(str(out))
    tensors = {t["index"]: t["dtype"] for t in interpreter.get_tensor_details()}
    kinds = {tensors[op["outputs"][0]] for op in interpreter._get_ops_details() if op["op_name"] == "HARD_SWISH"}
    assert kinds == {np.int8 if full_integer else np.float32}


def _onnx_outputs(path, images: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: images})[0]


def test_cli_export_takes_a_classifier_preset_name(tmp_path, monkeypatch):
    name = "mobilenet_v3_small_imagenet_classifier"
    # The registered preset with random weights (its weights need the network).
    monkeypatch.setitem(presets.CLASSIFIER_PRESETS, name,
                        dataclasses.replace(presets.CLASSIFIER_PRESETS[name], weights=None))
    out = tmp_path / "classifier.onnx"
    assert main(["export", name, str(out), "--format", "onnx", "--input-size", "64"]) == 0
    scores = _onnx_outputs(out, np.zeros((2, 64, 64, 3), np.float32))
    assert scores.shape == (2, 1000)


def test_cli_export_takes_a_segmenter_folder(tmp_path):
    backbone = mobilenetv3.MobileNetV3SmallBackbone(input_shape=(None, None, 3))
    model = mobilenetv3.MobileNetV3ImageSegmenter(backbone, num_classes=3)
    model.save_to_preset(tmp_path / "segmenter")
    out = tmp_path / "segmenter.onnx"
    assert main(["export", str(tmp_path / "segmenter"), str(out), "--format", "onnx", "--input-size", "64"]) == 0
    images = np.random.default_rng(0).uniform(0, 255, (1, 64, 64, 3)).astype(np.float32)
    expected = keras.ops.convert_to_numpy(model(images))
    exported = _onnx_outputs(out, images)
    assert exported.shape == (1, 64, 64, 3)
    np.testing.assert_allclose(exported, expected, atol=1e-4)


def test_export_model_refuses_options_its_format_lacks(tmp_path):
    model = mobilenetv3.MobileNetV3SmallBackbone(input_shape=(64, 64, 3))
    with pytest.raises(ValueError, match=r"`channels_first` applies to formats \['onnx', 'openvino', 'executorch'\], not 'tflite'"):
        export_model(model, tmp_path / "m.tflite", "tflite", channels_first=True)
    with pytest.raises(ValueError, match="`format` must be one of"):
        export_model(model, tmp_path / "m.bin", "caffe")
    assert not any(tmp_path.iterdir())
    assert {name for name, e in EXPORTERS.items() if e.needs_tensorflow} == {"tflite", "saved_model"}


# -- dynamic-size segmenters (LR-ASPP, DeepLabV3) to every runtime -----------

DYNAMIC_TOLERANCE = 1e-4  # float32 runtimes against Keras, absolute, on O(1) logits
DYNAMIC_SIZES = [(1, 64, 96), (2, 97, 65)]  # two sizes (one odd) and two batch sizes


@pytest.fixture(scope="module", params=["lraspp", "deeplabv3"])
def dynamic_segmenter(request, tmp_path_factory):
    """A segmenter preset folder of input shape (None, None, 3) and its model."""
    from helpers import trained_looking

    keras.utils.set_random_seed(0)
    model = mobilenetv3.MobileNetV3ImageSegmenter(
        mobilenetv3.MobileNetV3SmallBackbone(), num_classes=3, head=request.param,
        aux_classifier=request.param == "deeplabv3",
    )
    trained_looking(model, seed=3)
    assert tuple(model.inputs[0].shape) == (None, None, None, 3)
    folder = tmp_path_factory.mktemp(request.param) / "segmenter"
    model.save_to_preset(folder)
    return folder, model


def _runtime_outputs(fmt: str, path, images: np.ndarray) -> np.ndarray:
    if fmt == "onnx":
        return _onnx_outputs(path, images)
    if fmt == "openvino":
        from mobilenetv3.export import compile_openvino

        return compile_openvino(path)(images)[0]
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(str(path))
    entry = interpreter.get_input_details()[0]
    assert list(entry["shape_signature"]) == [-1, -1, -1, 3]  # written resizable
    interpreter.resize_tensor_input(entry["index"], images.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(entry["index"], images)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


@pytest.mark.parametrize("fmt", [pytest.param("tflite", marks=pytest.mark.slow), "onnx", "openvino"])
def test_cli_export_dynamic_size_segmenter_matches_keras_at_two_sizes(dynamic_segmenter, fmt, tmp_path):
    if fmt == "tflite" and keras.backend.backend() != "tensorflow":
        pytest.skip("TFLite export needs TensorFlow")
    if fmt == "openvino":
        pytest.importorskip("openvino")
    folder, model = dynamic_segmenter
    out = tmp_path / {"tflite": "s.tflite", "onnx": "s.onnx", "openvino": "s.xml"}[fmt]
    assert main(["export", str(folder), str(out), "--format", fmt]) == 0  # no --input-size
    for batch, height, width in DYNAMIC_SIZES:
        images = np.random.default_rng(height).uniform(0, 255, (batch, height, width, 3)).astype(np.float32)
        expected = keras.ops.convert_to_numpy(model(images, training=False))
        assert expected.shape == (batch, height, width, 3) and np.abs(expected).max() > 0.1
        exported = _runtime_outputs(fmt, out, images)
        assert exported.shape == expected.shape
        np.testing.assert_allclose(exported, expected, atol=DYNAMIC_TOLERANCE, rtol=0)


# -- a classifier of any input size exports at its preset's image size ---------

PRESET_SIZE = 48  # the preset's recorded image size (preprocessor.json), not the backbone's default


@pytest.fixture(scope="module")
def dynamic_classifier(tmp_path_factory):
    """A tiny classifier preset folder of input shape (None, None, 3) whose
    `preprocessor.json` records image size PRESET_SIZE."""
    from mobilenetv3.core.normalization import ImagePolicy
    from mobilenetv3.presets import folders

    keras.utils.set_random_seed(0)
    backbone = mobilenetv3.MobileNetV3SmallBackbone(alpha=0.35)
    model = mobilenetv3.MobileNetV3ImageClassifier(backbone, num_classes=3, head="dense")
    assert tuple(model.inputs[0].shape) == (None, None, None, 3)
    folder = tmp_path_factory.mktemp("dynamic_classifier") / "classifier"
    folders.save_preset(model, folder, preprocessing=ImagePolicy("unit", PRESET_SIZE))
    return folder


@pytest.mark.slow
@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TFLite export needs TensorFlow")
def test_console_export_of_a_dynamic_classifier_has_the_preset_input_size(dynamic_classifier, tmp_path):
    """`mobilenetv3 export` (the console script) to TFLite; ONNX and OpenVINO by the same `main` in-process."""
    import onnx
    from ai_edge_litert.interpreter import Interpreter
    from test_console_script import run_script

    tflite = run_script("export", str(dynamic_classifier), "c.tflite", "--format", "tflite", cwd=tmp_path)
    assert f"input {PRESET_SIZE}x{PRESET_SIZE} (the preset's image size" in tflite.stdout
    entry = Interpreter(str(tmp_path / "c.tflite")).get_input_details()[0]
    assert list(entry["shape"]) == [1, PRESET_SIZE, PRESET_SIZE, 3]
    assert list(entry["shape_signature"])[1:] == [PRESET_SIZE, PRESET_SIZE, 3]

    # the same command in this process (one TensorFlow import less; the console script's entry is proved above)
    assert main(["export", str(dynamic_classifier), str(tmp_path / "c.onnx"), "--format", "onnx"]) == 0
    dims = onnx.load(str(tmp_path / "c.onnx")).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims][1:] == [PRESET_SIZE, PRESET_SIZE, 3]
    assert _onnx_outputs(tmp_path / "c.onnx", np.zeros((2, PRESET_SIZE, PRESET_SIZE, 3), np.float32)).shape == (2, 3)

    # --input-size still wins over the preset's size.
    assert main(["export", str(dynamic_classifier), str(tmp_path / "c64.onnx"), "--format", "onnx",
                 "--input-size", "64"]) == 0
    dims = onnx.load(str(tmp_path / "c64.onnx")).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims][1:3] == [64, 64]

    if importlib.util.find_spec("openvino") is not None:
        import openvino as ov

        assert main(["export", str(dynamic_classifier), str(tmp_path / "c.xml"), "--format", "openvino"]) == 0
        shape = ov.Core().read_model(str(tmp_path / "c.xml")).inputs[0].get_partial_shape()
        assert [shape[i].get_length() for i in (1, 2, 3)] == [PRESET_SIZE, PRESET_SIZE, 3]
