"""A preset's preprocessor is data: written to `preprocessor.json`, read back
by the loader, the same transform as the source library's own.

The timm check compares with `timm.data.create_transform` (timm's own eval
transform from its data config), the torchvision one with the weights'
`transforms()`; folders written before `preprocessor.json` existed still
load, with the preprocessing their metadata implies.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import mobilenetv3
from mobilenetv3.core.normalization import ImagePolicy
from mobilenetv3.presets import folders, loader, preprocessing
from mobilenetv3.weights import timm as timm_weights

# A non-square photo-like image whose crop offsets and rounding matter.
HEIGHT, WIDTH = 301, 437


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    from PIL import Image

    rng = np.random.default_rng(5)
    smooth = rng.uniform(0, 255, (HEIGHT // 8 + 1, WIDTH // 8 + 1, 3)).repeat(8, 0).repeat(8, 1)[:HEIGHT, :WIDTH]
    pixels = np.clip(smooth + rng.normal(0, 12, smooth.shape), 0, 255).astype("uint8")
    path = tmp_path / "photo.png"
    Image.fromarray(pixels).save(path)
    return path


def _normalized(image: np.ndarray, policy: ImagePolicy) -> np.ndarray:
    """Our 0..255 image as timm / torchvision feed it: (x / 255 - mean) / std, CHW."""
    return ((image / 255.0 - np.array(policy.mean)) / np.array(policy.std)).transpose(2, 0, 1)


@pytest.mark.core
def test_policy_round_trips_through_json() -> None:
    policy = ImagePolicy("imagenet", 224, "center_crop", 256, "bicubic")
    assert ImagePolicy.from_dict(json.loads(json.dumps(policy.to_dict()))) == policy
    with pytest.raises(ValueError, match="at least 'mode'"):
        ImagePolicy.from_dict({"image_size": 224})


@pytest.mark.parametrize("tag", ["mobilenetv3_large_100.ra_in1k", "mobilenetv3_large_100.ra4_e3600_r224_in1k",
                                 "tf_mobilenetv3_small_100.in1k"])
def test_timm_data_config_matches_timms_own_transform(photo: Path, tag: str) -> None:
    timm = pytest.importorskip("timm")
    from PIL import Image

    model = timm.create_model(tag.split(".")[0], pretrained=False, pretrained_cfg=tag.split(".")[1])
    config = timm.data.resolve_data_config({}, model=model)
    reference = timm.data.create_transform(**config)(Image.open(photo).convert("RGB")).numpy()
    policy = timm_weights.data_config(tag)
    ours = _normalized(preprocessing.load_image(photo, policy), policy)
    assert ours.shape == reference.shape
    assert np.abs(ours - reference).max() < 1e-5  # measured 3.4e-7 at most (float32 rounding)


def test_torchvision_weights_transform_matches(photo: Path) -> None:
    torchvision = pytest.importorskip("torchvision")
    from PIL import Image

    from mobilenetv3.weights.torchvision import CLASSIFIER_TRANSFORM

    transform = torchvision.models.MobileNet_V3_Small_Weights.IMAGENET1K_V1.transforms()
    reference = transform(Image.open(photo).convert("RGB")).numpy()
    ours = _normalized(preprocessing.load_image(photo, CLASSIFIER_TRANSFORM), CLASSIFIER_TRANSFORM)
    assert ours.shape == reference.shape
    assert np.abs(ours - reference).max() < 1e-5  # measured 3.4e-7 (both resize the PIL image)


def test_a_converted_timm_folder_carries_and_reloads_its_data_config(tmp_path: Path) -> None:
    timm = pytest.importorskip("timm")
    from safetensors.torch import save_file

    from mobilenetv3.presets import conversion

    path = tmp_path / "mobilenetv3_small_100.lamb_in1k.safetensors"
    save_file(timm.create_model("mobilenetv3_small_100", num_classes=3).state_dict(), str(path))
    conversion.convert(path, tmp_path / "preset")
    expected = timm_weights.data_config("mobilenetv3_small_100.lamb_in1k")
    assert folders.read_preprocessing(tmp_path / "preset") == expected
    model = loader.load_model(str(tmp_path / "preset"))
    assert preprocessing.preprocessing_for_model(model) == expected
    # Re-saved as it is, or with a new head on its backbone, the policy stays.
    model.save_to_preset(tmp_path / "again")
    assert folders.read_preprocessing(tmp_path / "again") == expected
    head = mobilenetv3.MobileNetV3ImageClassifier.from_preset(str(tmp_path / "preset"), num_classes=2)
    assert preprocessing.preprocessing_for_model(head) == expected
    # Folders written before preprocessor.json existed: the tag in metadata.json decides.
    (tmp_path / "preset" / folders.PREPROCESSOR_FILE).unlink()
    assert folders.read_preprocessing(tmp_path / "preset") == expected


@pytest.mark.core
@pytest.mark.parametrize("kind", ["backbone", "classifier", "segmenter", "detector"])
def test_folders_in_the_format_before_preprocessor_json_still_load(tmp_path: Path, kind: str) -> None:
    """Today's folders minus `preprocessor.json`: config.json, model.weights.h5,
    metadata.json (and labels.txt for a classifier)."""
    backbone = mobilenetv3.MobileNetV3SmallBackbone(input_shape=(64, 64, 3), preprocessing="symmetric")
    builders = {
        "backbone": lambda: backbone,
        "classifier": lambda: mobilenetv3.MobileNetV3ImageClassifier(backbone, 2),
        "segmenter": lambda: mobilenetv3.MobileNetV3ImageSegmenter(backbone, 2),
        "detector": lambda: mobilenetv3.MobileNetV3ObjectDetector(backbone, 3, image_size=64),
    }
    model = builders[kind]()
    folders.save_preset(model, tmp_path / "old", class_names=["a", "b"] if kind == "classifier" else None)
    (tmp_path / "old" / folders.PREPROCESSOR_FILE).unlink()
    again = loader.load_model(str(tmp_path / "old"))
    assert type(again) is type(model)
    assert preprocessing.preprocessing_for_model(again) == ImagePolicy("symmetric", 64, "squash")
    assert all(np.array_equal(a, b) for a, b in zip(again.get_weights(), model.get_weights()))
    if kind == "classifier":
        assert again.class_names == ["a", "b"]
