"""Issue #16, a newcomer's first hour: fine-tuning from a converted
classifier folder, keras-hub compile defaults and the logits/probability
mismatch, optional-dependency errors, segment output formats, CLI messages
and flags, quiet and fast CLI start-up."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import keras
import numpy as np
import pytest

import mobilenetv3
from mobilenetv3.datasets import make_classification_folder
from mobilenetv3.tasks.task import LogitsLossWarning
from mobilenetv3.training import build_classifier, fine_tune

ROOT = Path(__file__).resolve().parents[1]


def _classifier(size: int = 32, num_classes: int = 3, **head) -> mobilenetv3.MobileNetV3ImageClassifier:
    backbone = mobilenetv3.MobileNetV3SmallBackbone(input_shape=(size, size, 3))
    return mobilenetv3.MobileNetV3ImageClassifier(backbone, num_classes, **head)


# -- fine-tuning from a classifier folder -----------------------------------


def test_fine_tune_from_a_classifier_folder_uses_its_backbone(tmp_path):
    folder = tmp_path / "slim_small"
    source = _classifier(num_classes=5)
    source.save_to_preset(folder)
    model = build_classifier(str(folder), 3, image_size=(32, 32))
    assert model.num_classes == 3
    for ours, theirs in zip(model.backbone.weights, source.backbone.weights):
        np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs))
    data = make_classification_folder(tmp_path / "data", classes=["circle", "square", "cross"], per_class=4, size=32)
    result = fine_tune(data, str(folder), image_size=(32, 32), batch_size=6, head_epochs=1, fine_tune_epochs=0,
                       verbose=0)
    assert result.class_names == ["circle", "cross", "square"]


# -- compile defaults ---------------------------------------------------------


def _three_class_problem(size: int = 32, per_class: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Three trivially separable classes: dark, mid-grey and bright images."""
    labels = np.repeat(np.arange(3), per_class)
    images = (labels[:, None, None, None] * 110.0 + 10.0) * np.ones((1, size, size, 3), "float32")
    return images.astype("float32"), labels


def test_compile_auto_gives_a_from_logits_loss_and_accuracy():
    logits = _classifier()
    logits.compile()
    assert logits.loss.get_config()["from_logits"] is True
    assert isinstance(logits.optimizer, keras.optimizers.Adam)
    softmax = _classifier(activation="softmax")
    softmax.compile()
    assert softmax.loss.get_config()["from_logits"] is False


@pytest.mark.parametrize(
    "loss", ["sparse_categorical_crossentropy", keras.losses.SparseCategoricalCrossentropy()]
)
def test_probability_loss_on_logits_warns_and_trains(loss):
    keras.utils.set_random_seed(0)
    model = _classifier()
    with pytest.warns(LogitsLossWarning, match="from_logits=True"):
        model.compile(optimizer="adam", loss=loss, metrics=["accuracy"])
    images, labels = _three_class_problem()
    history = model.fit(images, labels, batch_size=8, epochs=8, verbose=0)
    assert history.history["accuracy"][-1] == 1.0, history.history


def test_matching_losses_do_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error", LogitsLossWarning)
        _classifier().compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        _classifier(activation="softmax").compile(loss="sparse_categorical_crossentropy")
