"""`MobileNetV3ImageSegmenter` (LR-ASPP) against torchvision, serialization,
errors, the `segment` command, and a training run on generated shapes."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from PIL import Image
from torch_oracle import (
    images_nchw,
    keras_forward,
    lraspp_oracle,
    max_abs_diff,
    torch,
    torch_forward,
    torch_param_count,
    trainable_count,
)

from mobilenetv3 import MobileNetV3Backbone, MobileNetV3ImageSegmenter, presets, weights
from mobilenetv3.datasets import SEGMENTATION_CLASSES, mean_iou, synthetic_segmentation
from mobilenetv3.presets import loader
from mobilenetv3.tasks.segmenter import ResizeLike

TOLERANCE = 1e-4


def _backbone(preset: str = "mobilenet_v3_small", **overrides) -> MobileNetV3Backbone:
    return MobileNetV3Backbone(**{**presets.PRESETS[preset].config, "include_rescaling": False, **overrides})


@pytest.fixture(scope="module")
def lraspp(tmp_path_factory):
    """(torchvision LR-ASPP, its .pth path, our segmenter) with the same random weights."""
    oracle, path = lraspp_oracle(tmp_path_factory.mktemp("lraspp"))
    model = loader.build_model(weights.read(path, "torchvision"), include_rescaling=False)
    return oracle, path, model


def test_lraspp_checkpoint_builds_a_segmenter(lraspp):
    oracle, path, model = lraspp
    checkpoint = weights.read(path, "torchvision")
    assert (checkpoint.task, checkpoint.num_classes, checkpoint.head) == ("segmenter", 21, "lraspp")
    assert checkpoint.backbone_config["output_stride"] == 16
    assert isinstance(model, MobileNetV3ImageSegmenter)
    # torchvision taps the output of block 3 (40 channels, /8) and the last conv.
    assert (model.low_level, model.high_level) == ("block_3", "last")
    assert trainable_count(model) == torch_param_count(oracle) == 3_221_538


@pytest.mark.parametrize("size", [(224, 224), (193, 257)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_lraspp_logits_match_torchvision(lraspp, size):
    oracle, _, model = lraspp
    x = images_nchw(*size)
    expected = torch_forward(oracle, x)
    assert expected.shape == (1, *size, 21)
    diff = max_abs_diff(keras_forward(model, x), expected)
    assert diff <= TOLERANCE, f"LR-ASPP logits {size}: max abs diff {diff:.2e}"


@pytest.mark.core
@pytest.mark.parametrize("source, target", [((7, 9), (13, 17)), ((13, 17), (193, 257)), ((20, 24), (7, 9))])
def test_resize_like_matches_torch_bilinear(source, target):
    """torchvision upsamples with F.interpolate(bilinear, align_corners=False)."""
    x = np.random.default_rng(0).normal(size=(2, 5, *source)).astype("float32")
    with torch.no_grad():
        expected = torch.nn.functional.interpolate(
            torch.from_numpy(x), size=target, mode="bilinear", align_corners=False
        ).numpy()
    ours = ResizeLike()([x.transpose(0, 2, 3, 1), np.zeros((2, *target, 1), "float32")])
    assert max_abs_diff(keras.ops.convert_to_numpy(ours), expected.transpose(0, 2, 3, 1)) <= 1e-5


@pytest.mark.core
def test_any_input_size_no_divisibility_needed():
    model = MobileNetV3ImageSegmenter(_backbone(output_stride=16, input_shape=(97, 131, 3)), num_classes=3)
    assert tuple(model(np.zeros((1, 97, 131, 3), "float32")).shape) == (1, 97, 131, 3)
    dynamic = MobileNetV3ImageSegmenter(_backbone(), num_classes=2, activation="softmax")
    out = keras.ops.convert_to_numpy(dynamic(np.zeros((2, 64, 80, 3), "float32")))
    assert out.shape == (2, 64, 80, 2) and np.allclose(out.sum(-1), 1, atol=1e-5)


@pytest.mark.core
def test_small_default_taps_and_custom_levels():
    model = MobileNetV3ImageSegmenter(_backbone(output_stride=16), num_classes=4)
    assert model.low_level == "block_1"  # Small reaches /8 at block 1 (24 channels)
    custom = MobileNetV3ImageSegmenter(_backbone(), num_classes=4, low_level="P3", high_level="C4")
    assert tuple(custom(np.zeros((1, 64, 64, 3), "float32")).shape) == (1, 64, 64, 4)


def test_serialization_round_trips(tmp_path):
    model = MobileNetV3ImageSegmenter(_backbone(output_stride=16), num_classes=3, inter_channels=32)
    x = np.random.default_rng(1).uniform(0, 1, (1, 64, 64, 3)).astype("float32")
    expected = keras.ops.convert_to_numpy(model(x))
    rebuilt = MobileNetV3ImageSegmenter.from_config(model.get_config())
    assert rebuilt.get_config() == model.get_config()
    assert rebuilt.backbone.output_stride == 16 and rebuilt.inter_channels == 32
    path = tmp_path / "segmenter.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, MobileNetV3ImageSegmenter)
    assert max_abs_diff(keras.ops.convert_to_numpy(loaded(x)), expected) <= 1e-6
    model.save_to_preset(tmp_path / "preset")
    from_preset = MobileNetV3ImageSegmenter.from_preset(str(tmp_path / "preset"))
    assert max_abs_diff(keras.ops.convert_to_numpy(from_preset(x)), expected) <= 1e-6


def test_from_backbone_preset_needs_num_classes():
    model = MobileNetV3ImageSegmenter.from_preset("mobilenet_v3_small", num_classes=3, output_stride=16)
    assert model.backbone.output_stride == 16 and model.num_classes == 3
    with pytest.raises(ValueError, match="num_classes"):
        MobileNetV3ImageSegmenter.from_preset("mobilenet_v3_small")


@pytest.mark.parametrize("num_classes", [0, -1, 2.5, True, None])
def test_bad_num_classes(num_classes):
    with pytest.raises(ValueError, match=r"`num_classes` must be an integer >= 1"):
        MobileNetV3ImageSegmenter(_backbone(), num_classes=num_classes)


def test_bad_levels_and_widths():
    backbone = _backbone()
    with pytest.raises(ValueError, match=r"`low_level` must be one of .*'block_1'.*got 'P9'"):
        MobileNetV3ImageSegmenter(backbone, 3, low_level="P9")
    with pytest.raises(ValueError, match=r"`high_level` must be one of"):
        MobileNetV3ImageSegmenter(backbone, 3, high_level="expand_0")
    with pytest.raises(ValueError, match=r"`inter_channels` must be an integer >= 1"):
        MobileNetV3ImageSegmenter(backbone, 3, inter_channels=0)


def test_segment_command_writes_overlay_png(tmp_path):
    from mobilenetv3.cli import main

    model = MobileNetV3ImageSegmenter(_backbone(include_rescaling=True), num_classes=4)
    model.save_to_preset(tmp_path / "preset")
    image_path = tmp_path / "shapes.png"
    pixels, _ = synthetic_segmentation(num_images=1, size=72, seed=3)
    Image.fromarray(pixels[0, :, :60].astype("uint8")).save(image_path)  # 72 high, 60 wide
    out = tmp_path / "overlay.png"
    assert main(["segment", "--preset", str(tmp_path / "preset"), str(image_path), "--out", str(out)]) == 0
    with Image.open(out) as written:
        assert written.format == "PNG" and written.size == (60, 72) and written.mode == "RGB"


def test_segment_command_refuses_a_classifier_preset(tmp_path, capsys):
    from mobilenetv3 import MobileNetV3ImageClassifier
    from mobilenetv3.cli import main

    MobileNetV3ImageClassifier(_backbone(), 3).save_to_preset(tmp_path / "classifier")
    image_path = tmp_path / "image.png"
    Image.fromarray(np.zeros((40, 40, 3), "uint8")).save(image_path)
    code = main(["segment", "--preset", str(tmp_path / "classifier"), str(image_path), "--out", str(tmp_path / "o.png")])
    assert code != 0 and "segmenter" in capsys.readouterr().err.lower()


def test_synthetic_dataset_is_deterministic_and_labelled():
    images, masks = synthetic_segmentation(num_images=6, size=48, seed=5)
    again, same_masks = synthetic_segmentation(num_images=6, size=48, seed=5)
    assert np.array_equal(images, again) and np.array_equal(masks, same_masks)
    assert images.shape == (6, 48, 48, 3) and 0 <= images.min() and images.max() <= 255
    assert set(np.unique(masks)) <= set(range(len(SEGMENTATION_CLASSES))) and masks.max() > 0
    with pytest.raises(ValueError, match="`size` must be an integer >= 32"):
        synthetic_segmentation(size=16)


@pytest.mark.heavy  # in CI, tests/test_claims.py trains the segmenter on the same shapes through `train`
def test_lraspp_learns_generated_shapes():
    """From random initialization, a few epochs on 320 generated 96x96 images
    reach a foreground mean IoU the all-background answer (0.0) cannot."""
    train_x, train_y = synthetic_segmentation(num_images=320, size=96, seed=0)
    test_x, test_y = synthetic_segmentation(num_images=64, size=96, seed=1)
    keras.utils.set_random_seed(0)
    model = MobileNetV3ImageSegmenter(
        _backbone(include_rescaling=True, output_stride=16, input_shape=(96, 96, 3)), len(SEGMENTATION_CLASSES)
    )
    for layer in model._flatten_layers():
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.9  # moving statistics must settle within a few hundred steps
    model.compile(keras.optimizers.Adam(5e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(train_x, train_y, batch_size=16, epochs=8, verbose=0)
    predicted = np.argmax(model.predict(test_x, verbose=0), axis=-1)
    assert mean_iou(test_y, np.zeros_like(test_y), 4, ignore_background=True) == 0.0
    score = mean_iou(test_y, predicted, 4, ignore_background=True)
    print(f"foreground mean IoU {score:.3f}")
    assert score >= 0.7, f"foreground mean IoU {score:.3f}"  # measured 0.788
