"""Bad input gets an error naming the argument and what is allowed."""

from __future__ import annotations

import pytest
from helpers import SMALL, config

from mobilenetv3 import MobileNetV3Backbone

pytestmark = pytest.mark.core


def build(**overrides):
    return MobileNetV3Backbone(**{**SMALL, **overrides})


@pytest.mark.parametrize(
    "overrides, pattern",
    [
        ({"stackwise_filters": SMALL["stackwise_filters"][:-1]}, r"stackwise_\*.*equal length.*'stackwise_filters': 10"),
        ({k: [] for k in SMALL if k.startswith("stackwise")}, r"non-empty"),
        ({"stackwise_kernel_size": [0] + SMALL["stackwise_kernel_size"][1:]}, r"stackwise_kernel_size\[0\].*integer >= 1"),
        ({"stackwise_stride": [2, -1] + SMALL["stackwise_stride"][2:]}, r"stackwise_stride\[1\].*one of \[1, 2\]"),
        ({"stackwise_filters": [16, 0] + SMALL["stackwise_filters"][2:]}, r"stackwise_filters\[1\].*integer >= 1"),
        ({"stackwise_filters": [16.5] + SMALL["stackwise_filters"][1:]}, r"stackwise_filters\[0\].*integer"),
        ({"stackwise_se_ratio": [1.5] + SMALL["stackwise_se_ratio"][1:]}, r"stackwise_se_ratio\[0\].*\(0, 1\]"),
        ({"stackwise_se_ratio": [0] + SMALL["stackwise_se_ratio"][1:]}, r"stackwise_se_ratio\[0\]"),
        ({"stackwise_activation": ["relu", "swishy"] + SMALL["stackwise_activation"][2:]}, r"stackwise_activation\[1\].*'swishy'.*hard_swish"),
        ({"alpha": 0}, r"`alpha` must be a positive number"),
        ({"alpha": -0.5}, r"`alpha`"),
        ({"input_shape": (224, 224, 0)}, r"`input_shape`.*channel"),
        ({"input_shape": (224, 224, None)}, r"`input_shape`.*channel"),
        ({"input_shape": (224, 224)}, r"`input_shape` must be \(height, width, channels\)"),
        ({"input_shape": (16, 224, 3)}, r"`input_shape` height .*from 32"),
        ({"padding": "valid"}, r"`padding` must be one of \['same', 'symmetric'\]"),
        ({"output_stride": 4}, r"`output_stride` must be one of \[8, 16, 32\]"),
        ({"preprocessing": "caffe"}, r"`preprocessing` must be one of"),
    ],
)
def test_invalid_arguments_name_the_argument(overrides, pattern):
    with pytest.raises(ValueError, match=pattern):
        build(**overrides)


def test_activation_must_be_a_name():
    with pytest.raises(TypeError, match=r"stackwise_activation\[0\].*activation name"):
        build(stackwise_activation=[lambda x: x] + SMALL["stackwise_activation"][1:])


def test_unknown_preset_lists_valid_names():
    with pytest.raises(ValueError, match=r"Unknown preset 'mobilenet_v3_tiny'.*mobilenet_v3_large.*mobilenet_v3_small"):
        MobileNetV3Backbone.from_preset("mobilenet_v3_tiny")


def test_load_weights_true_on_weightless_preset():
    with pytest.raises(ValueError, match=r"has no pretrained weights.*mobilenet_v3_small_imagenet"):
        MobileNetV3Backbone.from_preset("mobilenet_v3_small", load_weights=True)


def test_wrong_channel_weights_name_the_layer(tmp_path):
    from mobilenetv3 import weights
    from mobilenetv3.weights import canonical

    rgb = MobileNetV3Backbone(**SMALL)
    gray = MobileNetV3Backbone(**config("mobilenet_v3_small", input_shape=(None, None, 1)))
    tensors = canonical.model_weights(rgb)
    before = canonical.model_weights(gray)
    with pytest.raises(weights.WeightsMismatchError, match=r"layer 'Conv'.*\(3, 3, 3, 16\).*\(3, 3, 1, 16\)"):
        canonical.assign(gray, tensors, source="rgb.h5")
    after = canonical.model_weights(gray)
    assert all((after[k] == before[k]).all() for k in before)  # nothing half-assigned


def test_channels_first_data_format_is_refused_in_one_line():
    # The network is channels-last; under a global "channels_first" it used
    # to die in a TypeError (`None % int`) or, with a fixed input size, to
    # build the wrong network silently. Its tasks' heads read the setting too.
    import keras

    from mobilenetv3 import MobileNetV3ImageClassifier, MobileNetV3ImageSegmenter, MobileNetV3ObjectDetector

    backbone = build(input_shape=(64, 64, 3))
    keras.config.set_image_data_format("channels_first")
    try:
        for overrides in ({}, {"input_shape": (64, 64, 3)}):
            with pytest.raises(ValueError, match=r"^`MobileNetV3Backbone` takes channels-last images .*"
                               r"keras.config.image_data_format\(\) is 'channels_first'.*[^\n]$"):
                build(**overrides)
        for task in (MobileNetV3ImageClassifier, MobileNetV3ImageSegmenter, MobileNetV3ObjectDetector):
            with pytest.raises(ValueError, match=rf"^`{task.__name__}` takes channels-last images"):
                task(backbone, num_classes=2)
    finally:
        keras.config.set_image_data_format("channels_last")
