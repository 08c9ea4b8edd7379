"""Inference speed-ups that must not change a number: the JAX depthwise
convolution and BatchNorm folding, checked against Keras' own layers."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from helpers import images, max_abs_diff, randomize

import mobilenetv3
from mobilenetv3.nets.layers import DepthwiseConv2D

pytestmark = pytest.mark.core


def _predict(model: keras.Model, x: np.ndarray) -> np.ndarray:
    return model.predict(x, verbose=0)


@pytest.mark.parametrize(
    "kernel, stride, padding, dilation, size",
    [(3, 2, "same", 1, (9, 10)), (5, 2, "same", 1, (14, 15)), (5, 1, "same", 1, (7, 7)),
     (3, 1, "valid", 1, (8, 8)), (3, 2, "valid", 1, (11, 12)), (5, 1, "same", 2, (12, 12))],
)
def test_depthwise_conv_equals_keras_layer(kernel, stride, padding, dilation, size):
    x = np.random.default_rng(0).normal(size=(2, *size, 6)).astype("float32")
    ours = DepthwiseConv2D(kernel, strides=stride, padding=padding, dilation_rate=dilation,
                           bias_initializer="random_normal", activation="relu")
    expected_layer = keras.layers.DepthwiseConv2D(kernel, strides=stride, padding=padding,
                                                  dilation_rate=dilation, activation="relu")
    result = ours(x)
    expected_layer.build(x.shape)
    expected_layer.set_weights(ours.get_weights())
    expected = expected_layer(x)
    assert tuple(result.shape) == tuple(expected.shape)
    assert max_abs_diff(result, expected) < 1e-5
    restored = DepthwiseConv2D.from_config(ours.get_config())
    assert restored.get_config() == ours.get_config()


@pytest.fixture(scope="module")
def classifier() -> keras.Model:
    backbone = mobilenetv3.MobileNetV3SmallBackbone(padding="symmetric")
    model = mobilenetv3.MobileNetV3ImageClassifier(backbone, num_classes=7)
    randomize(model, seed=3)
    return model


def test_fold_batch_norm_keeps_outputs_and_removes_every_batch_norm(classifier, tmp_path):
    folded = mobilenetv3.fold_batch_norm(classifier)
    x = images(2, 193, 257, scale=255.0)
    expected = _predict(classifier, x)
    assert np.abs(expected).max() > 0.1  # not a vacuous comparison
    np.testing.assert_allclose(_predict(folded, x), expected, rtol=1e-4, atol=1e-5)
    layers = list(folded._flatten_layers())
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in layers)
    convs = [layer for layer in layers if isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D))]
    assert all(layer.use_bias for layer in convs)
    originals = [layer for layer in classifier._flatten_layers() if isinstance(layer, keras.layers.BatchNormalization)]
    assert originals and classifier.count_params() - folded.count_params() > 0
    path = tmp_path / "folded.keras"
    folded.save(path)
    np.testing.assert_array_equal(_predict(keras.saving.load_model(path), x), _predict(folded, x))


def test_fold_batch_norm_keeps_dict_outputs_and_shared_conv_outputs():
    backbone = mobilenetv3.MobileNetV3SmallBackbone()
    randomize(backbone, seed=4)
    features = backbone.feature_extractor(["P3", "P5"])
    folded = mobilenetv3.fold_batch_norm(features)
    x = images(1, 96, 96, scale=255.0)
    expected, result = features.predict(x, verbose=0), folded.predict(x, verbose=0)
    assert set(result) == {"P3", "P5"}
    for level in expected:
        np.testing.assert_allclose(result[level], expected[level], rtol=1e-4, atol=1e-5)

    # A convolution whose output also feeds something else keeps its BatchNorm.
    inputs = keras.Input((8, 8, 3))
    conv = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    normalized = keras.layers.BatchNormalization()(conv)
    model = keras.Model(inputs, keras.layers.Add()([conv, normalized]))
    randomize(model, seed=5)
    folded = mobilenetv3.fold_batch_norm(model)
    assert any(isinstance(layer, keras.layers.BatchNormalization) for layer in folded.layers)
    x = images(2, 8, 8)
    np.testing.assert_allclose(_predict(folded, x), _predict(model, x), rtol=1e-5, atol=1e-6)


def test_fold_batch_norm_rejects_non_functional_models():
    with pytest.raises(TypeError, match="`model` must be a functional Keras model"):
        mobilenetv3.fold_batch_norm(keras.Sequential([keras.layers.Dense(2)]))
