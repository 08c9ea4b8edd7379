"""Training: fit lowers the loss; trainable=False freezes the backbone, BN included."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from helpers import SMALL, images

import mobilenetv3
from mobilenetv3 import MobileNetV3Backbone

pytestmark = pytest.mark.core


def small_problem():
    """Noise images; class 1 has a bright square in the middle."""
    x = images(16, 64, 64, scale=128)
    y = np.arange(16) % 2
    x[y == 1, 16:48, 16:48, :] += 127
    return x, y.astype("int32")


def test_fit_lowers_the_loss():
    model = mobilenetv3.MobileNetV3ImageClassifier(MobileNetV3Backbone(**SMALL), num_classes=2, dropout=0.0)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = small_problem()
    history = model.fit(x, y, epochs=8, batch_size=16, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < 0.8 * losses[0], losses


def test_frozen_backbone_keeps_weights_and_bn_statistics():
    backbone = MobileNetV3Backbone(**SMALL)
    backbone.trainable = False
    model = mobilenetv3.MobileNetV3ImageClassifier(backbone, num_classes=2)
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    before = [np.array(w) for w in backbone.weights]
    head_before = [np.array(w) for w in model.get_layer("Logits").weights]
    x, y = small_problem()
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    assert all(np.array_equal(b, np.array(w)) for b, w in zip(before, backbone.weights))
    assert not all(np.array_equal(b, np.array(w)) for b, w in zip(head_before, model.get_layer("Logits").weights))
    assert len(model.trainable_weights) == 4  # Conv_2 and Logits kernels and biases
