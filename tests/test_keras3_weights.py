"""keras.applications MobileNetV3 weights saved by Keras 3
(`model.save_weights("x.weights.h5")`): converted outputs equal Keras 3's
own `keras.applications` model at 224x224 and 193x257."""

from __future__ import annotations

import itertools

import keras
import numpy as np
import pytest

from mobilenetv3.presets import loader
from mobilenetv3.weights import keras_applications
from mobilenetv3.weights.keras_applications import WeightsFileError
from tests.keras_applications_oracle import randomize

pytestmark = pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="oracle runs on TF")

TOLERANCE = 1e-4
SIZES = [(224, 224), (193, 257)]
# Every variant keras.applications publishes: family x alpha x minimalistic x top.
VARIANTS = list(itertools.product(("small", "large"), (0.75, 1.0), (False, True), (True, False)))
FAST = [("small", 1.0, False, True)]


def _keras_model(family: str, size: tuple, alpha: float, minimalistic: bool, top: bool) -> keras.Model:
    build = getattr(keras.applications, f"MobileNetV3{family.title()}")
    return build(
        input_shape=(*size, 3), alpha=alpha, minimalistic=minimalistic, include_top=top, weights=None,
        classifier_activation=None, include_preprocessing=True,
    )


def _check(tmp_path, family: str, alpha: float, minimalistic: bool, top: bool) -> float:
    reference = _keras_model(family, (224, 224), alpha, minimalistic, top)
    randomize(reference)
    path = tmp_path / "mobilenet.weights.h5"
    reference.save_weights(str(path))
    assert keras_applications.detect(str(path))
    checkpoint = keras_applications.read(str(path))
    assert checkpoint.backbone_config["alpha"] == alpha
    assert checkpoint.num_classes == (1000 if top else None)
    ours = loader.build_model(checkpoint)
    worst = 0.0
    for size in SIZES:
        oracle = _keras_model(family, size, alpha, minimalistic, top)
        oracle.load_weights(str(path))
        pixels = np.random.default_rng(1).uniform(0, 255, (2, *size, 3)).astype("float32")
        expected = np.asarray(oracle(pixels, training=False))
        assert np.abs(expected[0] - expected[1]).max() > 200 * TOLERANCE  # output depends on input
        worst = max(worst, float(np.abs(expected - keras.ops.convert_to_numpy(ours(pixels))).max()))
    return worst


@pytest.mark.parametrize("variant", FAST, ids=str)
def test_keras3_weights_file_matches_keras_applications(tmp_path, variant) -> None:
    assert _check(tmp_path, *variant) <= TOLERANCE


@pytest.mark.heavy  # a sweep: figures in the table of docs/presets-and-weights.md (benchmarks/checkpoint_parity.py)
@pytest.mark.parametrize("variant", [v for v in VARIANTS if v not in FAST], ids=str)
def test_every_keras3_variant(tmp_path, variant) -> None:
    assert _check(tmp_path, *variant) <= TOLERANCE


def test_keras3_file_of_another_network_is_refused(tmp_path) -> None:
    path = tmp_path / "other.weights.h5"
    keras.Sequential([keras.Input((8,)), keras.layers.Dense(3)]).save_weights(str(path))
    assert not keras_applications.detect(str(path))
    with pytest.raises(WeightsFileError, match="match no keras.applications MobileNetV3"):
        keras_applications.read(str(path))
