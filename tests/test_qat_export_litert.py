"""The LiteRT int8 export of a quantization-aware twin
(`mobilenetv3.export.tflite_qat`): LiteRT's interpreter runs the file, and
its output is the twin's within one output quantization step (the scale of
the twin's last FakeQuant), on images other than the calibration images,
with float and with int8 input and output; the graph keeps hard-swish float.

The oracle model is shallow (every kind of quantization point once: the
input with its Rescaling, conv+BN+hard-swish, depthwise+BN+relu,
squeeze-excite, a residual add, pooling, dense): the runtime's integer
requantization rounds a few values a step away from the twin's float
simulation, and a deep random network amplifies each such step layer after
layer, which a test of the export itself must not measure.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
from helpers import pixel_images, trained_looking

pytest.importorskip("ai_edge_litert")
tensorflow_only = pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                                     reason="the other backends' test is the child-process one")


def _model() -> keras.Model:
    from mobilenetv3.nets.layers import BatchNormalization, Conv2D, DepthwiseConv2D, SqueezeAndExcite2D

    keras.utils.set_random_seed(11)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Rescaling(1 / 255, name="rescaling")(inputs)
    x = Conv2D(16, 3, strides=2, padding="same", use_bias=False, name="stem")(x)
    x = BatchNormalization(name="stem_bn")(x)
    x = keras.layers.Activation("hard_swish", name="stem_hs")(x)
    y = DepthwiseConv2D(3, padding="same", use_bias=False, name="dw")(x)
    y = BatchNormalization(name="dw_bn")(y)
    y = keras.layers.ReLU(name="dw_relu")(y)
    y = SqueezeAndExcite2D(16, 8, name="se")(y)
    y = Conv2D(16, 1, use_bias=False, name="project")(y)
    y = BatchNormalization(name="project_bn")(y)
    x = keras.layers.Add(name="add")([x, y])
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(3, name="logits")(x)
    return trained_looking(keras.Model(inputs, outputs), seed=5)


@pytest.fixture(scope="module")
def twin():
    from mobilenetv3.quantization import calibrate_ranges, quantize_aware

    twin = quantize_aware(_model())
    calibrate_ranges(twin, pixel_images((8, 32, 32, 3), seed=1))
    return twin


def _output_step(twin) -> float:
    from mobilenetv3.quantization import fake_quant_layers, quantization_grid

    last = fake_quant_layers(twin)[-1]
    return float(keras.ops.convert_to_numpy(quantization_grid(last.range_min, last.range_max)[0]))


def _run(path, images: np.ndarray) -> np.ndarray:
    """The file's float outputs: an integer input is quantized and an
    integer output dequantized with the file's own scale and zero point."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(str(path))
    source, target = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    outputs = []
    for image in images:
        interpreter.resize_tensor_input(source["index"], (1, *image.shape))
        interpreter.allocate_tensors()
        if source["dtype"] != np.float32:
            scale, zero_point = source["quantization"]
            info = np.iinfo(source["dtype"])
            image = np.clip(np.round(image / scale) + zero_point, info.min, info.max)
        interpreter.set_tensor(source["index"], image[None].astype(source["dtype"]))
        interpreter.invoke()
        output = interpreter.get_tensor(target["index"])[0]
        if target["dtype"] != np.float32:
            scale, zero_point = target["quantization"]
            output = (output.astype(np.float32) - zero_point) * scale
        outputs.append(output)
    return np.stack(outputs)


def _op_names(path) -> list[str]:
    from ai_edge_litert.interpreter import Interpreter

    return [op["op_name"] for op in Interpreter(str(path))._get_ops_details()]


@tensorflow_only
@pytest.mark.parametrize("io_dtype", ["float32", "int8", "uint8"])
def test_litert_runs_the_twin_within_one_output_step(twin, tmp_path, io_dtype):
    from mobilenetv3.export import export_tflite

    path = export_tflite(twin, tmp_path / "twin.tflite", io_dtype=io_dtype)
    images = pixel_images((16, 32, 32, 3), seed=2)  # not the calibration images
    expected = keras.ops.convert_to_numpy(twin(images, training=False))
    steps = np.abs(_run(path, images) - expected) / _output_step(twin)
    assert steps.max() <= 1.0 + 1e-3, f"max {steps.max():.2f} output steps, {np.mean(steps > 0.5):.0%} differ"
    ops = _op_names(path)
    # the Rescaling is folded into the stem's weights; hard-swish stays float between DEQUANTIZE and QUANTIZE
    assert "MUL" in ops and ops.count("MUL") == 2, ops  # the gate's / 6 and the squeeze-excite product only
    assert ops[ops.index("HARD_SWISH") - 1] == "DEQUANTIZE" and ops[ops.index("HARD_SWISH") + 1] == "QUANTIZE", ops
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(str(path))
    types = {np.dtype(d[0]["dtype"]) for d in (interpreter.get_input_details(), interpreter.get_output_details())}
    assert types == {np.dtype(io_dtype)}, types
    if io_dtype == "int8":  # the file's own int8 input and output tensors: no conversion at either end
        assert ops[0] != "QUANTIZE" and ops[-1] != "DEQUANTIZE", ops


@pytest.mark.core
@pytest.mark.skipif(keras.backend.backend() == "tensorflow", reason="JAX and PyTorch: the export's child process")
def test_twin_of_another_backend_exports_through_a_tensorflow_process(twin, tmp_path):
    from mobilenetv3.export import export_tflite

    path = export_tflite(twin, tmp_path / "twin.tflite")
    images = pixel_images((8, 32, 32, 3), seed=2)
    expected = keras.ops.convert_to_numpy(twin(images, training=False))
    steps = np.abs(_run(path, images) - expected) / _output_step(twin)
    assert steps.max() <= 1.0 + 1e-3, f"max {steps.max():.2f} output steps"


@tensorflow_only
def test_bad_arguments_are_named(twin, tmp_path):
    from mobilenetv3.export import export_model, export_tflite

    with pytest.raises(ValueError, match="io_dtype"):
        export_tflite(twin, tmp_path / "x.tflite", io_dtype="int16")
    with pytest.raises(ValueError, match="calibration"):
        export_tflite(twin, tmp_path / "x.tflite", calibration=pixel_images((2, 32, 32, 3)))
    with pytest.raises(ValueError, match="QATModel"):
        export_model(twin, tmp_path / "x.onnx", "saved_model")
    with pytest.raises(ValueError, match="int8"):
        export_model(twin, tmp_path / "x.tflite", "tflite", int8=True)
    with pytest.raises(ValueError, match="io_dtype"):
        export_tflite(_model(), tmp_path / "x.tflite", io_dtype="int8")
    from mobilenetv3.quantization import quantize_aware

    for option, value in (("hard_swish", "add_mul"), ("quantize_after_rescaling", True)):
        with pytest.raises(ValueError, match=option):  # onnxruntime's forms: refused before converting
            export_tflite(quantize_aware(_model(), **{option: value}), tmp_path / "x.tflite")
    assert not list(tmp_path.iterdir())


@tensorflow_only
@pytest.mark.slow
def test_export_command_writes_a_qat_keras_file_as_its_int8_twin(twin, tmp_path, capsys):
    from console_script import run_script

    from mobilenetv3.cli import main

    twin.save(tmp_path / "twin.keras")
    result = run_script("export", tmp_path / "twin.keras", tmp_path / "twin.tflite", "--format", "tflite", cwd=tmp_path)
    assert "wrote tflite int8 model" in result.stdout, result.stdout
    images = pixel_images((8, 32, 32, 3), seed=3)
    expected = keras.ops.convert_to_numpy(twin(images, training=False))
    steps = np.abs(_run(tmp_path / "twin.tflite", images) - expected) / _output_step(twin)
    assert steps.max() <= 1.0 + 1e-3, f"max {steps.max():.2f} output steps"
    # the refusal by the same command's `main` in this process (one TensorFlow start less)
    assert main(["export", str(tmp_path / "twin.keras"), str(tmp_path / "twin.onnx"), "--format", "saved_model"]) != 0
    stderr = capsys.readouterr().err
    assert "QATModel" in stderr, stderr
