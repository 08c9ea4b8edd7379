"""`mobilenetv3 convert` and `conversion.convert`: every source to a preset folder.

Each conversion is checked against its source's own runtime (timm,
torchvision, keras-cv, the TFLite runtime) after the preset folder is
loaded back with `from_preset`.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

import mobilenetv3
from mobilenetv3.cli import main
from mobilenetv3.presets import conversion

torch = pytest.importorskip("torch")

TOLERANCE = 1e-4
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406])
IMAGENET_STD = np.array([0.229, 0.224, 0.225])


def _pixels(size: int = 96, batch: int = 2) -> np.ndarray:
    return np.random.default_rng(3).uniform(0, 255, (batch, size, size, 3)).astype("float32")


def _nchw(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images.astype("float32").transpose(0, 3, 1, 2))


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_cli_converts_the_tf_slim_tflite_release(shared_fixtures: Path, tmp_path: Path, capsys) -> None:
    litert = pytest.importorskip("ai_edge_litert.interpreter")
    image_module = pytest.importorskip("PIL.Image")
    source = shared_fixtures / "tflite" / "v3-small_224_1.0_uint8.tflite"
    output = tmp_path / "small_tflite"
    assert main(["convert", str(source), str(output)]) == 0
    printed = capsys.readouterr().out
    for fact in ("format: tflite", "family: small", "alpha: 1.0", "padding: same", "1001 classes"):
        assert fact in printed, fact

    model = mobilenetv3.MobileNetV3ImageClassifier.from_preset(str(output))
    image = image_module.open(shared_fixtures / "images" / "grace_hopper.bmp").convert("RGB")
    pixels = np.asarray(image.resize((224, 224), image_module.BILINEAR))
    interpreter = litert.Interpreter(model_path=str(source))
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], pixels[None])
    interpreter.invoke()
    runtime = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])[0]
    ours = keras.ops.convert_to_numpy(model(pixels[None].astype("float32")))[0]
    assert int(np.argmax(ours)) == int(np.argmax(runtime))


def test_timm_checkpoint_round_trips_through_a_preset(tmp_path: Path) -> None:
    timm = pytest.importorskip("timm")
    safetensors_torch = pytest.importorskip("safetensors.torch")
    name = "tf_mobilenetv3_small_minimal_100"
    torch.manual_seed(0)
    reference = timm.create_model(name).eval()
    source = tmp_path / f"{name}.safetensors"
    safetensors_torch.save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, str(source))

    conversion.convert(str(source), str(tmp_path / "preset"))
    model = mobilenetv3.MobileNetV3ImageClassifier.from_preset(str(tmp_path / "preset"))
    assert model.head_activation == "relu"
    pixels = _pixels()
    with torch.no_grad():
        expected = reference(_nchw(pixels / 127.5 - 1.0)).numpy()  # tf_ models: mean = std = 0.5
    ours = keras.ops.convert_to_numpy(model(pixels))
    assert np.abs(ours - expected).max() <= TOLERANCE


def test_torchvision_state_dict_is_detected_and_converted(tmp_path: Path, capsys) -> None:
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    reference = torchvision.models.mobilenet_v3_small().eval()
    source = tmp_path / "mobilenet_v3_small.pth"
    torch.save(reference.state_dict(), str(source))
    assert main(["convert", str(source), str(tmp_path / "preset")]) == 0
    printed = capsys.readouterr().out
    assert "format: torchvision" in printed and "preprocessing: imagenet" in printed
    model = mobilenetv3.MobileNetV3ImageClassifier.from_preset(str(tmp_path / "preset"))
    pixels = _pixels()
    with torch.no_grad():
        expected = reference(_nchw((pixels / 255.0 - IMAGENET_MEAN) / IMAGENET_STD)).numpy()
    assert np.abs(keras.ops.convert_to_numpy(model(pixels)) - expected).max() <= TOLERANCE


def test_keras_cv_preset_folder_is_resaved(tmp_path: Path) -> None:
    keras_cv = pytest.importorskip("keras_cv")
    from keras_cv.src.utils import preset_utils

    config = mobilenetv3.MobileNetV3SmallBackbone().get_config()
    stackwise = {k: v for k, v in config.items() if k.startswith("stackwise_")}
    reference = keras_cv.models.MobileNetV3Backbone(**stackwise, include_rescaling=True)
    for variable in reference.weights:
        variable.assign(np.random.default_rng(0).normal(0, 0.1, variable.shape) + (1.0 if "variance" in variable.path else 0.0))
    source = tmp_path / "keras_cv_small"
    preset_utils.save_to_preset(reference, str(source))

    assert main(["convert", str(source), str(tmp_path / "preset"), "--from", "keras-cv"]) == 0
    model = mobilenetv3.MobileNetV3Backbone.from_preset(str(tmp_path / "preset"))
    pixels = _pixels()
    expected = keras.ops.convert_to_numpy(reference(pixels))
    assert np.abs(keras.ops.convert_to_numpy(model(pixels)) - expected).max() <= TOLERANCE
    # "auto" recognises the keras-cv folder too.
    assert conversion.resolve_format(str(source)) == "keras-cv"


def test_unknown_format_lists_the_formats(tmp_path: Path, capsys) -> None:
    source = tmp_path / "weights.pth"
    source.write_bytes(b"\x00" * 64)
    # Checked when the command runs (its parser imports no Keras): exit status 2, the formats listed.
    assert main(["convert", str(source), str(tmp_path / "out"), "--from", "caffe"]) == 2
    assert "timm" in capsys.readouterr().err
    with pytest.raises(ValueError, match="tflite"):
        conversion.convert(str(source), str(tmp_path / "out"), format="caffe")
    assert not (tmp_path / "out").exists()


def test_corrupted_source_gives_clear_error_and_writes_nothing(tmp_path: Path, capsys) -> None:
    source = tmp_path / "tf_mobilenetv3_large_100.pth"
    source.write_bytes(b"PK\x03\x04 this is not a complete zip archive")
    output = tmp_path / "out"
    assert main(["convert", str(source), str(output)]) == 2
    assert "Could not recognise" in capsys.readouterr().err
    assert main(["convert", str(source), str(output), "--from", "timm"]) == 2
    assert "truncated or corrupted" in capsys.readouterr().err
    assert _leftovers(tmp_path) == [source.name]


def test_failed_conversion_leaves_no_partial_folder(tmp_path: Path, capsys) -> None:
    """A checkpoint missing one tensor fails while loading, before writing."""
    timm = pytest.importorskip("timm")
    safetensors_torch = pytest.importorskip("safetensors.torch")
    state = {k: v.contiguous() for k, v in timm.create_model("mobilenetv3_small_100").state_dict().items()}
    del state["blocks.2.1.bn2.running_var"]
    source = tmp_path / "mobilenetv3_small_100.safetensors"
    safetensors_torch.save_file(state, str(source))
    assert main(["convert", str(source), str(tmp_path / "out")]) == 2
    assert "expanded_conv_4_depthwise_BatchNorm/moving_variance" in capsys.readouterr().err
    assert _leftovers(tmp_path) == [source.name]


def test_existing_output_is_not_overwritten_without_flag(tmp_path: Path, capsys) -> None:
    output = tmp_path / "out"
    output.mkdir()
    (output / "keep.txt").write_text("mine")
    source = tmp_path / "weights.pth"
    source.write_bytes(b"\x00")
    assert main(["convert", str(source), str(output)]) == 2
    assert "not empty" in capsys.readouterr().err
    assert _leftovers(output) == ["keep.txt"]


def test_timm_without_family_hint_asks_for_it(tmp_path: Path, capsys) -> None:
    timm = pytest.importorskip("timm")
    safetensors_torch = pytest.importorskip("safetensors.torch")
    state = timm.create_model("mobilenetv3_small_100", num_classes=0).state_dict()
    source = tmp_path / "weights.safetensors"
    safetensors_torch.save_file({k: v.contiguous() for k, v in state.items()}, str(source))
    assert main(["convert", str(source), str(tmp_path / "out")]) == 2
    assert "--variant" in capsys.readouterr().err
    assert main(["convert", str(source), str(tmp_path / "out"), "--no-tf-padding"]) == 0
    printed = capsys.readouterr().out
    assert "padding: symmetric" in printed and "head: none" in printed
    backbone = mobilenetv3.MobileNetV3Backbone.from_preset(str(tmp_path / "out"))
    assert backbone.bn_epsilon == 1e-5


def test_convert_command_learns_the_lraspp_layout(tmp_path, capsys):
    """`mobilenetv3 convert` on a torchvision LR-ASPP .pth writes a segmenter
    preset whose logits equal torchvision's (the preset rescales 0..255
    pixels with the ImageNet mean/std, as torchvision's transforms do)."""
    from torch_oracle import lraspp_oracle, max_abs_diff, torch_forward

    oracle, path = lraspp_oracle(tmp_path)
    assert main(["convert", path, str(tmp_path / "lraspp")]) == 0
    assert "torchvision" in capsys.readouterr().out
    model = mobilenetv3.MobileNetV3ImageSegmenter.from_preset(str(tmp_path / "lraspp"))
    pixels = np.random.default_rng(2).uniform(0, 255, (1, 96, 128, 3)).astype("float32")
    normalized = ((pixels / 255 - IMAGENET_MEAN) / IMAGENET_STD).astype("float32").transpose(0, 3, 1, 2)
    expected = torch_forward(oracle, normalized)
    assert max_abs_diff(keras.ops.convert_to_numpy(model(pixels)), expected) <= TOLERANCE
