"""The runtime layer applies to built models by composition: the public
model classes are plain Keras models (no `__call__` / `call` /
`predict_on_batch` of their own), and `accelerate` changes speed, not
outputs, configs or saved files."""

from __future__ import annotations

import inspect

import keras
import numpy as np
import pytest
from helpers import randomize

import mobilenetv3
from mobilenetv3.runtime.accelerate import accelerate, is_accelerated, plain
from mobilenetv3.runtime.batch_norm_folding import DirectFunctional

PUBLIC_MODELS = (
    mobilenetv3.MobileNetV3Backbone, mobilenetv3.MobileNetV3SmallBackbone, mobilenetv3.MobileNetV3LargeBackbone,
    mobilenetv3.MobileNetV3Task, mobilenetv3.MobileNetV3ImageClassifier, mobilenetv3.MobileNetV3ImageSegmenter,
    mobilenetv3.MobileNetV3ObjectDetector, DirectFunctional,
)


@pytest.mark.core
@pytest.mark.parametrize("cls", PUBLIC_MODELS, ids=lambda cls: cls.__name__)
def test_public_models_define_no_call_of_their_own(cls: type) -> None:
    for klass in inspect.getmro(cls):
        if klass.__module__.startswith(("keras", "torch", "builtins")):
            continue
        overridden = {"__call__", "call", "predict_on_batch"} & set(vars(klass))
        assert not overridden, f"{klass.__name__} overrides {overridden}"


@pytest.mark.core
def test_accelerate_changes_no_output_config_or_file(tmp_path) -> None:
    backbone = mobilenetv3.MobileNetV3SmallBackbone(input_shape=(64, 64, 3))
    model = mobilenetv3.MobileNetV3ImageClassifier(backbone, num_classes=4)
    randomize(model)
    assert is_accelerated(model) and is_accelerated(model.backbone)
    images = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    fast = keras.ops.convert_to_numpy(model(images))
    fast_batch = model.predict_on_batch(images)
    config = model.get_config()
    plain(model)
    plain(model.backbone)
    assert not is_accelerated(model)
    reference = keras.ops.convert_to_numpy(model(images))
    assert np.abs(reference).max() > 0.1
    np.testing.assert_allclose(fast, reference, atol=2e-5, rtol=1e-5)
    np.testing.assert_allclose(fast_batch, reference, atol=2e-5, rtol=1e-5)
    assert accelerate(model).get_config() == config
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    assert is_accelerated(loaded)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(images)), reference, atol=2e-5, rtol=1e-5)
