"""get_config/from_config and .keras round trips."""

from __future__ import annotations

import keras
import pytest
from helpers import SMALL, config, images, max_abs_diff, randomize

import mobilenetv3
from mobilenetv3 import MobileNetV3Backbone

pytestmark = pytest.mark.core


def test_config_round_trip():
    model = MobileNetV3Backbone(**config("mobilenet_v3_large", alpha=0.75, padding="symmetric", bn_epsilon=1e-5))
    clone = MobileNetV3Backbone.from_config(model.get_config())
    assert clone.get_config() == model.get_config()
    assert clone.count_params() == model.count_params() == 1_808_736


@pytest.mark.parametrize("builder", [mobilenetv3.MobileNetV3SmallBackbone, mobilenetv3.MobileNetV3LargeBackbone])
def test_keras_file_round_trip(builder, tmp_path):
    model = builder(input_shape=(None, None, 3))
    randomize(model)
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, MobileNetV3Backbone)
    x = images(2, 96, 112, scale=255)
    assert max_abs_diff(model(x), loaded(x)) == 0.0
    assert loaded.pyramid_level_inputs == model.pyramid_level_inputs


def test_registered_under_package():
    assert keras.saving.get_registered_name(MobileNetV3Backbone) == "mobilenetv3>MobileNetV3Backbone"
    assert keras.saving.get_registered_name(mobilenetv3.SqueezeAndExcite2D) == "mobilenetv3>SqueezeAndExcite2D"


def test_classifier_keras_round_trip(tmp_path):
    model = mobilenetv3.MobileNetV3ImageClassifier(MobileNetV3Backbone(**SMALL), num_classes=4)
    randomize(model)
    model.save(str(tmp_path / "c.keras"))
    loaded = keras.saving.load_model(str(tmp_path / "c.keras"))
    x = images(1, 64, 64, scale=255)
    assert max_abs_diff(model(x), loaded(x)) == 0.0
