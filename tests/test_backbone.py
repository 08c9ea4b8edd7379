"""The backbone's architecture: parameter counts, shapes, levels, keras-cv's examples."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import LARGE, SMALL, config, images, max_abs_diff

import mobilenetv3
from mobilenetv3 import MobileNetV3Backbone

pytestmark = pytest.mark.core


@pytest.mark.parametrize(
    "preset, alpha, total, trainable",
    [
        ("mobilenet_v3_small", 1.0, 939_120, 927_008),
        ("mobilenet_v3_large", 1.0, 2_996_352, 2_971_952),
        ("mobilenet_v3_small", 0.75, 583_160, None),
        ("mobilenet_v3_small", 1.25, 1_456_760, None),
        ("mobilenet_v3_large", 0.75, 1_808_736, None),
        ("mobilenet_v3_large", 1.25, 4_764_160, None),
    ],
)
def test_parameter_counts_match_facts(preset, alpha, total, trainable):
    model = MobileNetV3Backbone(**config(preset, alpha=alpha))
    assert model.count_params() == total
    if trainable is not None:
        assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == trainable


def test_keras_cv_docstring_example_runs_verbatim():
    model = mobilenetv3.MobileNetV3Backbone(
        stackwise_expansion=[1, 72.0 / 16, 88.0 / 24, 4, 6, 6, 3, 3, 6, 6, 6],
        stackwise_filters=[16, 24, 24, 40, 40, 40, 48, 48, 96, 96, 96],
        stackwise_kernel_size=[3, 3, 3, 5, 5, 5, 5, 5, 5, 5, 5],
        stackwise_stride=[2, 2, 1, 2, 1, 1, 1, 1, 2, 1, 1],
        stackwise_se_ratio=[0.25, None, None, 0.25, 0.25, 0.25, 0.25, 0.25, 0.25, 0.25, 0.25],
        stackwise_activation=["relu", "relu", "relu", "hard_swish", "hard_swish", "hard_swish", "hard_swish", "hard_swish", "hard_swish", "hard_swish", "hard_swish"],
        include_rescaling=False,
    )
    output = model(np.ones((8, 224, 224, 3), "float32"))
    assert tuple(output.shape) == (8, 7, 7, 576)


def test_aliases_build_offline_with_keras_cv_signature():
    small = mobilenetv3.MobileNetV3SmallBackbone(include_rescaling=False, input_shape=(96, 96, 3))
    large = mobilenetv3.MobileNetV3LargeBackbone()
    assert isinstance(small, MobileNetV3Backbone) and isinstance(large, MobileNetV3Backbone)
    assert small.count_params() == 939_120 and large.count_params() == 2_996_352
    assert tuple(small(images(1, 96, 96)).shape) == (1, 3, 3, 576)
    assert tuple(large(images(1, 64, 64)).shape) == (1, 2, 2, 960)


def test_alias_presets_list_only_their_family():
    assert set(mobilenetv3.MobileNetV3SmallBackbone.presets) == {
        n for n in MobileNetV3Backbone.presets if "small" in n
    }
    assert all("large" in n for n in mobilenetv3.MobileNetV3LargeBackbone.presets)
    assert {"mobilenet_v3_small", "mobilenet_v3_large", "mobilenet_v3_small_imagenet", "mobilenet_v3_large_imagenet"} <= set(MobileNetV3Backbone.presets)
    assert set(MobileNetV3Backbone.presets_with_weights) >= {"mobilenet_v3_small_imagenet", "mobilenet_v3_large_imagenet"}
    assert "mobilenet_v3_small" not in MobileNetV3Backbone.presets_with_weights


def test_preset_metadata_parameter_counts_are_exact():
    for name, entry in MobileNetV3Backbone.presets.items():
        model = MobileNetV3Backbone(**entry["config"])
        assert model.count_params() == entry["metadata"]["params"], name


@pytest.mark.parametrize(
    "cfg, expected",
    [
        (SMALL, {"P1": (128, 16), "P2": (64, 16), "P3": (32, 24), "P4": (16, 48), "P5": (8, 96)}),
        (LARGE, {"P1": (128, 16), "P2": (64, 24), "P3": (32, 40), "P4": (16, 112), "P5": (8, 160)}),
    ],
)
def test_pyramid_levels_follow_keras_cv_rule_with_stable_names(cfg, expected):
    model = MobileNetV3Backbone(**cfg)
    features = model.feature_extractor()(images(1, 256, 256))
    assert {k: (v.shape[1], v.shape[3]) for k, v in features.items()} == expected
    again = MobileNetV3Backbone(**cfg)
    assert model.pyramid_level_inputs == again.pyramid_level_inputs
    for name in model.pyramid_level_inputs.values():
        assert not name.startswith(("multiply", "add", "re_lu", "activation")), name
    assert set(model.pyramid_outputs) == set(expected)


def test_feature_extractor_selects_levels_and_shares_weights():
    model = MobileNetV3Backbone(**SMALL)
    extractor = model.feature_extractor(["P3", "P5", "last"])
    out = extractor(images(2, 224, 224))
    assert set(out) == {"P3", "P5", "last"}
    assert max_abs_diff(out["last"], model(images(2, 224, 224))) < 1e-6


def test_expand_conv_exists_exactly_when_width_changes():
    cfg = dict(SMALL, stackwise_expansion=[2] + SMALL["stackwise_expansion"][1:])
    model = MobileNetV3Backbone(**cfg)
    names = {layer.name for layer in model.layers}
    assert "expanded_conv_expand" in names  # keras-cv silently drops this one
    plain = MobileNetV3Backbone(**SMALL)
    assert "expanded_conv_expand" not in {layer.name for layer in plain.layers}
    # Large block 8 has expansion 2.3 of 80 = 184 channels.
    large = MobileNetV3Backbone(**LARGE)
    assert large.get_layer("expanded_conv_8_expand").filters == 184


def test_include_rescaling_divides_by_255():
    with_rescaling = MobileNetV3Backbone(**config("mobilenet_v3_small", include_rescaling=True))
    without = MobileNetV3Backbone(**config("mobilenet_v3_small", include_rescaling=False))
    without.set_weights(with_rescaling.get_weights())
    x = images(1, 64, 64, scale=255.0)
    assert max_abs_diff(with_rescaling(x), without(x / 255.0)) < 1e-5


def test_input_tensor_accepts_keras_and_plain_tensors():
    import keras

    keras_input = keras.layers.Input((96, 96, 3))
    model = MobileNetV3Backbone(**config("mobilenet_v3_small", input_tensor=keras_input))
    assert model.input is keras_input
    plain = keras.ops.ones((2, 64, 80, 3))
    model = MobileNetV3Backbone(**config("mobilenet_v3_small", input_tensor=plain))
    assert tuple(model.input_shape) == (2, 64, 80, 3)


def test_kwargs_reach_keras_model():
    model = MobileNetV3Backbone(**config("mobilenet_v3_small", name="my_backbone", trainable=False))
    assert model.name == "my_backbone" and not model.trainable and not model.trainable_weights


@pytest.mark.parametrize("activation", ["relu", "hard_swish", "gelu", "silu"])
def test_any_keras_activation_name(activation):
    cfg = dict(SMALL, stackwise_activation=[activation] * 11)
    assert tuple(MobileNetV3Backbone(**cfg)(images(1, 32, 32)).shape) == (1, 1, 1, 576)


def test_macs_at_224_match_published_figures_with_head():
    from mobilenetv3.nets.macs import count_macs

    large, small = MobileNetV3Backbone(**LARGE), MobileNetV3Backbone(**SMALL)
    assert round(count_macs(large, 224) / 1e5) == 2141  # backbone alone
    # The published 217M / 56.5M include the 1000-class head.
    with_head = mobilenetv3.MobileNetV3ImageClassifier(large, 1000)
    assert round(count_macs(with_head, 224) / 1e6) == 217
    with_head = mobilenetv3.MobileNetV3ImageClassifier(small, 1000)
    assert round(count_macs(with_head, 224) / 1e5) == 565
