"""Variants against real oracles: minimalistic (keras.applications), output
stride 16 by dilation and reduced tail (torchvision), multi-scale features
(torchvision's SSDLite extractor, timm `features_only`)."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from torch_oracle import (
    images_nchw,
    keras_forward,
    max_abs_diff,
    randomized,
    save_state_dict,
    torch,
    torch_forward,
    torchvision,
    trainable_count,
)

from mobilenetv3 import MobileNetV3Backbone, presets, weights
from mobilenetv3.presets import loader

TOLERANCE = 1e-4


def _config(preset: str, **overrides) -> dict:
    return {**presets.PRESETS[preset].config, "include_rescaling": False, **overrides}


def _port_torchvision(tmp_path, family: str, backbone_overrides=None, **torch_kwargs):
    """(torchvision model, our backbone) holding the same random weights."""
    factory = getattr(torchvision.models, f"mobilenet_v3_{family}")
    oracle = randomized(factory(weights=None, **torch_kwargs), seed=4)
    checkpoint = weights.read(save_state_dict(oracle, tmp_path), "torchvision")
    ours = loader.build_model(checkpoint, include_rescaling=False, **(backbone_overrides or {}))
    return oracle, getattr(ours, "backbone", ours)


def _randomize_keras(model: keras.Model, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        shape, path = tuple(variable.shape), variable.path
        if path.endswith("moving_variance"):
            value = rng.uniform(0.5, 1.5, shape)
        elif path.endswith("gamma"):
            value = rng.uniform(0.5, 1.5, shape)
        elif path.endswith(("beta", "moving_mean", "bias")):
            value = rng.uniform(-0.5, 0.5, shape)
        else:
            value = rng.normal(0, np.prod(shape[:-1]) ** -0.5, shape)
        variable.assign(value.astype("float32"))


# -- minimalistic ----------------------------------------------------------


@pytest.mark.parametrize(
    "family, params", [("small", 441_000), ("large", 1_437_608)], ids=["small", "large"]
)
def test_minimalistic_matches_keras_applications(family, params):
    ours = MobileNetV3Backbone(**_config(f"mobilenet_v3_{family}_minimalistic", input_shape=(160, 160, 3)))
    application = getattr(keras.applications, f"MobileNetV3{family.title()}")
    oracle = application(
        input_shape=(160, 160, 3),
        minimalistic=True,
        include_top=False,
        include_preprocessing=False,
        weights=None,
    )
    assert ours.count_params() == oracle.count_params() == params
    _randomize_keras(ours, seed=5)
    assert [tuple(v.shape) for v in ours.weights] == [tuple(v.shape) for v in oracle.weights]
    for source, target in zip(ours.weights, oracle.weights):
        target.assign(source)
    x = np.random.default_rng(0).normal(size=(2, 160, 160, 3)).astype("float32")
    diff = max_abs_diff(keras.ops.convert_to_numpy(ours(x)), keras.ops.convert_to_numpy(oracle(x)))
    assert diff <= 1e-5, f"minimalistic {family}: max abs diff {diff:.2e}"


def test_minimalistic_is_serialized():
    model = MobileNetV3Backbone(**_config("mobilenet_v3_small_minimalistic"))
    config = model.get_config()
    assert set(config["stackwise_kernel_size"]) == {3} and set(config["stackwise_se_ratio"]) == {None}
    assert (config["stem_activation"], config["last_activation"]) == ("relu", "relu")
    assert MobileNetV3Backbone.from_config(config).count_params() == 441_000


# -- output stride (dilation) ----------------------------------------------


@pytest.mark.parametrize("family", ["small", "large"])
def test_output_stride_16_matches_torchvision_dilated(tmp_path, family):
    oracle, ours = _port_torchvision(
        tmp_path, family, {"output_stride": 16, "dilation_style": "torchvision"}, dilated=True
    )
    for size in [(224, 224), (193, 257)]:
        x = images_nchw(*size)
        expected = torch_forward(oracle.features, x)
        diff = max_abs_diff(keras_forward(ours, x), expected)
        assert diff <= TOLERANCE, f"{family} dilated {size}: max abs diff {diff:.2e}"
    assert expected.shape[1:3] == (13, 17)  # 193x257 at output stride 16


def test_deeplab_dilation_style_differs_from_torchvision(tmp_path):
    """torchvision dilates the first block of the last stage too (its
    `InvertedResidualConfig` gets dilation 2 along with stride 1); the
    DeepLab style keeps that block at the previous rate, so it differs."""
    oracle, ours = _port_torchvision(tmp_path, "small", {"output_stride": 16, "dilation_style": "deeplab"}, dilated=True)
    x = images_nchw(96, 96)
    assert max_abs_diff(keras_forward(ours, x), torch_forward(oracle.features, x)) > 1e-2
    assert ours.get_layer("expanded_conv_8_depthwise").dilation_rate == (1, 1)
    assert ours.get_layer("expanded_conv_9_depthwise").dilation_rate == (2, 2)


@pytest.mark.parametrize("output_stride, size", [(32, 7), (16, 14), (8, 28)])
def test_output_stride_keeps_parameters_and_sets_resolution(output_stride, size):
    model = MobileNetV3Backbone(**_config("mobilenet_v3_large", output_stride=output_stride))
    assert model.count_params() == 2_996_352
    assert model.output_stride == model.get_config()["output_stride"] == output_stride
    assert tuple(model(np.zeros((1, 224, 224, 3), "float32")).shape) == (1, size, size, 960)


# -- reduced tail ----------------------------------------------------------


@pytest.mark.parametrize(
    "family, trainable, channels", [("small", 438_704, 288), ("large", 1_620_512, 480)], ids=["small", "large"]
)
def test_reduced_tail_matches_torchvision(tmp_path, family, trainable, channels):
    oracle, ours = _port_torchvision(tmp_path, family, reduced_tail=True)
    assert ours.reduced_tail is True and ours.get_config()["reduced_tail"] is True
    assert trainable_count(ours) == trainable == sum(p.numel() for p in oracle.features.parameters())
    x = images_nchw(224, 224)
    expected = torch_forward(oracle.features, x)
    assert expected.shape[-1] == channels
    diff = max_abs_diff(keras_forward(ours, x), expected)
    assert diff <= TOLERANCE, f"{family} reduced tail: max abs diff {diff:.2e}"


def test_reduced_tail_preset_config_builds():
    model = MobileNetV3Backbone(**_config("mobilenet_v3_large", reduced_tail=True))
    assert model.output.shape[-1] == 480
    assert MobileNetV3Backbone.from_config(model.get_config()).count_params() == model.count_params()


# -- multi-scale features --------------------------------------------------


@pytest.mark.parametrize("family", ["small", "large"])
def test_detection_taps_match_torchvision_ssdlite_extractor(tmp_path, family):
    """C4 / C5 are exactly what torchvision's SSDLite feature extractor
    returns from the same backbone (expansion of the /16 -> /32 block, and
    the last 1x1 conv)."""
    from torchvision.models.detection.ssdlite import _mobilenet_extractor

    oracle, ours = _port_torchvision(tmp_path, family)
    extractor = _mobilenet_extractor(oracle, 6, torch.nn.BatchNorm2d).eval()
    x = images_nchw(160, 192)
    c4 = torch_forward(extractor.features[0], x)
    with torch.no_grad():
        c5 = extractor.features[1](torch.from_numpy(c4.transpose(0, 3, 1, 2))).numpy().transpose(0, 2, 3, 1)
    features = ours.feature_extractor(["C4", "C5"])(x.transpose(0, 2, 3, 1))
    assert max_abs_diff(keras.ops.convert_to_numpy(features["C4"]), c4) <= TOLERANCE
    assert max_abs_diff(keras.ops.convert_to_numpy(features["C5"]), c5) <= TOLERANCE
    assert c4.shape[1:] == (10, 12, 672 if family == "large" else 288)


def _timm_shapes(name: str, **kwargs) -> list[tuple[int, int]]:
    """(channels, reduction) of each timm feature, measured at 224x224."""
    timm = pytest.importorskip("timm")
    model = timm.create_model(name, features_only=True, pretrained=False, **kwargs).eval()
    with torch.no_grad():
        outputs = model(torch.zeros(1, 3, 224, 224))
    return [(o.shape[1], 224 // o.shape[-1]) for o in outputs]


def _our_shapes(backbone: MobileNetV3Backbone, levels: list[str]) -> list[tuple[int, int]]:
    outputs = backbone.feature_extractor(levels)(np.zeros((1, 224, 224, 3), "float32"))
    return [(outputs[k].shape[-1], 224 // outputs[k].shape[1]) for k in levels]


# timm's taps in our names. "bottleneck": the end of each stage, then the
# last conv. "expansion": the expansion (= depthwise width) of the block
# *before* each reduction; Large's first block has no expansion, so its tap
# is the stem-width depthwise output, the same shape as our `stem`.
TIMM_TAPS = {
    ("large", "bottleneck"): ["P1", "P2", "P3", "P4", "C5"],
    ("small", "bottleneck"): ["P1", "P2", "P3", "P4", "C5"],
    ("large", "expansion"): ["stem", "expand_2", "expand_5", "expand_11", "C5"],
}


@pytest.mark.parametrize(
    "family, location, output_stride, minimal",
    [
        ("large", "bottleneck", 32, False),
        ("large", "bottleneck", 16, False),
        ("large", "bottleneck", 8, False),
        ("small", "bottleneck", 32, False),
        ("small", "bottleneck", 16, False),
        ("large", "expansion", 32, False),
        ("large", "expansion", 16, False),
        ("large", "bottleneck", 32, True),
        ("small", "expansion", 32, False),
    ],
)
def test_feature_shapes_match_timm(family, location, output_stride, minimal):
    if (family, location) == ("small", "expansion"):
        pytest.skip("timm 1.0.31 raises KeyError: 'hook_type' for Small with feature_location='expansion'")
    timm_name = f"tf_mobilenetv3_{family}_minimal_100" if minimal else f"mobilenetv3_{family}_100"
    expected = _timm_shapes(timm_name, feature_location=location, output_stride=output_stride)
    preset = f"mobilenet_v3_{family}" + ("_minimalistic" if minimal else "")
    ours = MobileNetV3Backbone(**_config(preset, output_stride=output_stride))
    assert _our_shapes(ours, TIMM_TAPS[(family, location)]) == expected


@pytest.mark.parametrize(
    "preset, overrides, c4, c5",
    [
        ("mobilenet_v3_large", {}, (672, 16), (960, 32)),
        ("mobilenet_v3_small", {}, (288, 16), (576, 32)),
        ("mobilenet_v3_large", {"reduced_tail": True}, (672, 16), (480, 32)),
        ("mobilenet_v3_large", {"output_stride": 16}, (672, 16), (960, 16)),
        ("mobilenet_v3_small_minimalistic", {"output_stride": 8}, (288, 8), (576, 8)),
    ],
)
def test_detection_taps_for_every_variant(preset, overrides, c4, c5):
    ours = MobileNetV3Backbone(**_config(preset, **overrides))
    assert _our_shapes(ours, ["C4", "C5"]) == [c4, c5]


def test_unknown_level_names_the_argument_and_choices():
    backbone = MobileNetV3Backbone(**_config("mobilenet_v3_small"))
    with pytest.raises(ValueError, match=r"`levels`.*'P6'.*Available: \[.*'C4'"):
        backbone.feature_extractor(["P3", "P6"])
    with pytest.raises(ValueError, match="expand_0"):
        backbone.feature_extractor(["expand_0"])  # Small's block 0 has no expand conv


@pytest.mark.parametrize("output_stride", [4, 64, "16", True])
def test_bad_output_stride(output_stride):
    with pytest.raises(ValueError, match=r"`output_stride` must be one of \[8, 16, 32\]"):
        MobileNetV3Backbone(**_config("mobilenet_v3_small", output_stride=output_stride))


def test_bad_dilation_style():
    with pytest.raises(ValueError, match=r"`dilation_style` must be one of \['torchvision', 'deeplab'\]"):
        MobileNetV3Backbone(**_config("mobilenet_v3_small", dilation_style="tf"))
