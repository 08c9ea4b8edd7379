"""keras-hub MobileNet presets as a weight source, against keras-hub itself.

keras-hub builds `MobileNetBackbone` / `MobileNetImageClassifier` from the
configs its timm converter uses, random weights with BatchNorm statistics
perturbed, and saves them with its own `save_to_preset`; our models load
that folder and must give keras-hub's outputs (<= 1e-4).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from mobilenetv3 import MobileNetV3Backbone, MobileNetV3ImageClassifier, weights
from mobilenetv3.weights import keras_hub_preset
from tests.helpers import images, max_abs_diff, randomize

keras_hub = pytest.importorskip("keras_hub")

MEAN, STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])


def _hub_config(architecture: str) -> dict:
    from keras_hub.src.utils.timm.convert_mobilenet import convert_backbone_config

    return convert_backbone_config({"architecture": architecture})


def _save_hub_classifier(folder, architecture: str, num_classes: int = 7):
    backbone = keras_hub.models.MobileNetBackbone(**_hub_config(architecture))
    converter = keras_hub.layers.MobileNetImageConverter(
        image_size=None, scale=list(1 / (255 * STD)), offset=list(-MEAN / STD)
    )
    preprocessor = keras_hub.models.MobileNetImageClassifierPreprocessor(image_converter=converter)
    classifier = keras_hub.models.MobileNetImageClassifier(
        backbone=backbone, num_classes=num_classes, preprocessor=preprocessor
    )
    randomize(classifier)
    classifier.save_to_preset(str(folder))
    return classifier


@pytest.mark.slow
def test_keras_hub_classifier_preset_loads_with_keras_hub_numerics(tmp_path) -> None:
    hub = _save_hub_classifier(tmp_path, "mobilenetv3_small_100")
    assert keras_hub_preset.detect(tmp_path)
    ours = MobileNetV3ImageClassifier.from_preset(str(tmp_path))
    assert ours.backbone.padding == "symmetric" and ours.backbone.bn_epsilon == 1e-5
    assert ours.backbone.preprocessing == "imagenet"
    for height, width in ((224, 224), (97, 131)):
        raw = images(2, height, width, scale=255.0)
        expected = hub.backbone.predict((raw / 255.0 - MEAN) / STD, verbose=0)
        expected_logits = hub.predict(raw, verbose=0)  # keras-hub preprocesses in predict
        assert max_abs_diff(ours.backbone.predict(raw, verbose=0), expected) <= 1e-4
        assert max_abs_diff(ours.predict(raw, verbose=0), expected_logits) <= 1e-4


@pytest.mark.slow
def test_keras_hub_backbone_preset_loads_into_our_backbone(tmp_path) -> None:
    hub = keras_hub.models.MobileNetBackbone(**_hub_config("mobilenetv3_large_100"))
    randomize(hub, seed=3)
    hub.save_to_preset(str(tmp_path))
    ours = MobileNetV3Backbone.from_preset(str(tmp_path))
    assert not ours.include_rescaling  # keras-hub backbones take preprocessed images
    assert len(ours.stackwise_filters) == 15
    for height, width in ((224, 224), (97, 131)):
        x = images(1, height, width, seed=1) * 4 - 2
        assert max_abs_diff(ours.predict(x, verbose=0), hub.predict(x, verbose=0)) <= 1e-4


def test_small_050_config_translates_exactly() -> None:
    config = keras_hub_preset.backbone_config(_hub_config("mobilenetv3_small_050"), "small_050")
    backbone = MobileNetV3Backbone(**config, include_rescaling=False)
    hub = keras_hub.models.MobileNetBackbone(**_hub_config("mobilenetv3_small_050"))
    assert backbone.count_params() == hub.count_params()


def test_unknown_preprocessing_is_refused(tmp_path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"registered_name": keras_hub_preset.BACKBONE_CLASS}))
    converter = {"config": {"image_converter": {"config": {"scale": 0.5, "offset": 3.0}}}}
    (tmp_path / "preprocessor.json").write_text(json.dumps(converter))
    with pytest.raises(ValueError, match="match none of this package's preprocessing modes"):
        keras_hub_preset.preprocessing_config(tmp_path)


def test_format_is_registered() -> None:
    assert weights.FORMATS["keras-hub"] == "keras_hub_preset"
