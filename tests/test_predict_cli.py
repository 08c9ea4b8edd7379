"""`mobilenetv3 predict`, end to end: a preset folder saved from a classifier
whose weights came from a tf-keras `.h5` file; printed probabilities are
checked against tf-keras itself on the same resized images."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys

import keras
import numpy as np
import pytest
from PIL import Image

from mobilenetv3 import MobileNetV3ImageClassifier
from mobilenetv3.cli import predict
from mobilenetv3.core import decode

TF_ONLY = pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="tf-keras oracle needs TF")
PRESET = "mobilenet_v3_small_imagenet_classifier"
LINE = re.compile(r"^  (\d)\. (.+) \((n\d{8})\) +([01]\.\d{4})$")


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    from tests.keras_applications_oracle import write_file

    if keras.backend.backend() != "tensorflow":
        pytest.skip("tf-keras writes the test file; needs TF")
    return write_file(tmp_path_factory.mktemp("ka") / "small.h5", "small", include_top=True)


@pytest.fixture(scope="module")
def preset_folder(weights_file, tmp_path_factory):
    model = MobileNetV3ImageClassifier.from_preset(PRESET, weights_file=weights_file, verify_weights_file=False)
    folder = tmp_path_factory.mktemp("presets") / "small_classifier"
    model.save_to_preset(folder)
    return folder


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Two images of different sizes and modes (RGB PNG, grayscale JPEG),
    made of large blobs: pixel noise gives near-uniform probabilities."""
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(1)
    paths = [folder / "blocks.png", folder / "gray.jpg"]
    blocks = Image.fromarray(rng.integers(0, 256, (6, 4, 3), dtype=np.uint8))
    blocks.resize((200, 300), Image.NEAREST).save(paths[0])
    smooth = Image.fromarray(rng.integers(0, 256, (5, 8), dtype=np.uint8))
    smooth.resize((260, 150), Image.BILINEAR).save(paths[1])
    return paths


def _run(argv, capsys):
    parser = argparse.ArgumentParser()
    predict.register(parser.add_subparsers())
    args = parser.parse_args(["predict", *map(str, argv)])
    code = args.func(args)
    return code, capsys.readouterr().out


def _parse(output):
    """{image: [(rank, name, wnid, probability), ...]} from the printed text."""
    result, current = {}, None
    for line in output.splitlines():
        match = LINE.match(line)
        if match:
            rank, name, wnid, probability = match.groups()
            result[current].append((int(rank), name.strip(), wnid, float(probability)))
        else:
            assert line.endswith(":"), f"unexpected line {line!r}"
            current = line[:-1]
            result[current] = []
    return result


def _tf_keras_probabilities(weights_file, paths):
    """tf-keras' own model on the images resized as the preset says
    (bilinear squash to 224x224, 0..255, the model maps to [-1, 1])."""
    from tests.keras_applications_oracle import tf_keras_model

    reference = tf_keras_model("small", (224, 224, 3), include_top=True)
    reference.load_weights(str(weights_file))
    batch = np.stack(
        [np.asarray(Image.open(p).convert("RGB").resize((224, 224), Image.BILINEAR), "float32") for p in paths]
    )
    return keras.ops.convert_to_numpy(keras.ops.softmax(reference(batch)))


@TF_ONLY
def test_predict_prints_top5_matching_tf_keras(preset_folder, images, weights_file, capsys):
    code, output = _run(["--preset", preset_folder, *images], capsys)
    assert code == 0
    parsed = _parse(output)
    assert list(parsed) == [str(p) for p in images]
    names = dict(decode.imagenet_classes())
    expected = _tf_keras_probabilities(weights_file, images)
    for row, lines in zip(expected, parsed.values()):
        assert [rank for rank, *_ in lines] == [1, 2, 3, 4, 5]
        assert [wnid for _, _, wnid, _ in lines] == [decode.imagenet_classes()[i][0] for i in np.argsort(-row)[:5]]
        assert all(names[wnid] == name for _, name, wnid, _ in lines)
        np.testing.assert_allclose([p for *_, p in lines], np.sort(row)[::-1][:5], atol=6e-5)


@TF_ONLY
def test_weights_file_with_a_registered_preset(preset_folder, images, weights_file, capsys):
    _, from_folder = _run(["--preset", preset_folder, images[0]], capsys)
    code, from_file = _run(["--preset", PRESET, "--weights-file", weights_file, "--no-verify-weights-file", images[0]], capsys)
    assert code == 0 and from_file == from_folder


@TF_ONLY
def test_top_option_and_missing_image(preset_folder, images, tmp_path, capsys):
    _, output = _run(["--preset", preset_folder, "--top", "2", images[1]], capsys)
    assert len(output.splitlines()) == 3
    with pytest.raises(ValueError, match="Cannot read image"):
        _run(["--preset", preset_folder, tmp_path / "missing.png"], capsys)


@pytest.mark.core
def test_folder_class_names_are_printed(tmp_path, capsys):
    from mobilenetv3 import MobileNetV3Backbone
    from mobilenetv3.presets import folders

    backbone = MobileNetV3Backbone.from_preset("mobilenet_v3_small", input_shape=(64, 64, 3))
    model = MobileNetV3ImageClassifier(backbone, 3)
    folders.save_preset(model, tmp_path / "three", class_names=["ant", "bee", "cat"])
    image = tmp_path / "x.png"
    Image.fromarray(np.full((80, 90, 3), 120, np.uint8)).save(image)
    code, output = _run(["--preset", tmp_path / "three", "--top", "3", image], capsys)
    lines = output.splitlines()
    assert code == 0 and lines[0] == f"{image}:"
    assert sorted(line.split()[1] for line in lines[1:]) == ["ant", "bee", "cat"]
    probabilities = [float(line.split()[-1]) for line in lines[1:]]
    assert probabilities == sorted(probabilities, reverse=True) and abs(sum(probabilities) - 1) < 1e-3


@TF_ONLY
def test_command_line_entry_point(preset_folder, images):
    result = subprocess.run(
        [sys.executable, "-m", "mobilenetv3", "predict", "--preset", str(preset_folder), str(images[0])],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    assert lines[0] == f"{images[0]}:" and len(lines) == 6
    assert all(LINE.match(line) for line in lines[1:])


# -- decode_predictions and image loading --------------------------------------------


@pytest.mark.core
def test_label_names_match_the_tf_slim_label_file(shared_fixtures):
    """Our names are the first name of each TF-slim label (index 0 = background)."""
    lines = (shared_fixtures / "images" / "imagenet_labels.txt").read_text().splitlines()
    assert lines[0] == "background" and len(lines) == 1001
    assert [name for _, name in decode.imagenet_classes()] == [line.split(",")[0].strip() for line in lines[1:]]


@pytest.mark.core
def test_decode_predictions_1000_and_1001_columns():
    from mobilenetv3 import decode_predictions

    scores = np.zeros((2, 1000), "float32")
    scores[0, [285, 281, 7]] = [0.5, 0.3, 0.1]
    scores[1, 19] = 2.0
    decoded = decode_predictions(keras.ops.convert_to_tensor(scores), top=3)
    assert decoded[0] == [("n02124075", "Egyptian cat", 0.5), ("n02123045", "tabby", 0.30000001192092896),
                          ("n01514668", "cock", 0.10000000149011612)]
    assert decoded[1][0] == ("n01592084", "chickadee", 2.0)
    slim = np.concatenate([np.full((2, 1), 0.05, "float32"), scores], axis=1)  # background first
    assert decode_predictions(slim, top=3)[0] == decoded[0]
    assert decode_predictions(slim, top=2)[1] == [decoded[1][0], ("background", "background", pytest.approx(0.05))]


@pytest.mark.core
@pytest.mark.parametrize("shape,top", [((2, 10), 5), ((1000,), 5), ((1, 1000), 0), ((1, 1000), 1001)])
def test_decode_predictions_rejects_bad_input(shape, top):
    from mobilenetv3 import decode_predictions

    with pytest.raises(ValueError, match="`preds`|`top`"):
        decode_predictions(np.zeros(shape), top=top)


@pytest.mark.core
def test_load_image_policies(tmp_path):
    from mobilenetv3.presets import Preprocessing
    from mobilenetv3.presets.preprocessing import load_image, preprocessing_for

    path = tmp_path / "wide.png"
    pixels = np.zeros((100, 300, 3), np.uint8)
    pixels[:, 100:200] = 255  # a white middle third
    Image.fromarray(pixels).save(path)
    squashed = load_image(path, PRESET)
    assert squashed.shape == (224, 224, 3) and squashed.dtype == np.float32
    assert squashed[:, :60].max() == 0 and squashed[:, 90:134].min() == 255  # the whole width kept
    cropped = load_image(path, Preprocessing("imagenet", 64, "center_crop", resize_size=72))
    assert cropped.shape == (64, 64, 3) and cropped.min() == 255  # only the middle survives the crop
    assert preprocessing_for(PRESET).mode == "symmetric"
    with pytest.raises(ValueError, match="`resize`"):
        Preprocessing("symmetric", 224, "stretch")


# -- real weights: the official TF-slim uint8 release (1001 classes, background first)

# Top-3 of the official TFLite runtime on these images (shared/fixtures/PROVENANCE.md).
TFLITE_TOP3 = {
    "cat": ["Egyptian cat", "tabby", "tiger cat"],
    "bird": ["chickadee", "bulbul", "water ouzel"],
    "dragonfly": ["damselfly", "dragonfly", "whiptail"],
    "grace_hopper": ["military uniform", "bow tie", "pickelhaube"],
}


@TF_ONLY
def test_predict_with_real_tf_slim_weights(shared_fixtures, tmp_path, capsys):
    """Dequantized float weights will not match the integer runtime exactly:
    our top-1 must be in its top-2, and two of our top-3 in its top-3."""
    from mobilenetv3.presets import loader
    from mobilenetv3.weights import tflite

    checkpoint = tflite.read(str(shared_fixtures / "tflite" / "v3-small_224_1.0_uint8.tflite"))
    loader.build_model(checkpoint).save_to_preset(tmp_path / "slim")
    paths = [shared_fixtures / "images" / f"{name}.bmp" for name in TFLITE_TOP3]
    code, output = _run(["--preset", tmp_path / "slim", "--top", "3", *paths], capsys)
    assert code == 0
    for (name, expected), lines in zip(TFLITE_TOP3.items(), _parse(output).values()):
        ours = [class_name for _, class_name, _, _ in lines]
        assert ours[0] in expected[:2], (name, ours, expected)
        assert len(set(ours) & set(expected)) >= 2, (name, ours, expected)
