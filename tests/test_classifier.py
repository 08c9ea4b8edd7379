"""MobileNetV3ImageClassifier: counts, serialization, classifier presets
(offline errors, local weights files, wrong files) and keras-cv folders."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from mobilenetv3 import MobileNetV3Backbone, MobileNetV3ImageClassifier, presets
from mobilenetv3.presets.folders import PresetError
from mobilenetv3.weights import WeightsMismatchError
from mobilenetv3.weights.download import DownloadError
from mobilenetv3.weights.keras_applications import WeightsFileError

TF_ONLY = pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="tf-keras / keras-cv oracle needs TF")
SMALL = "mobilenet_v3_small_imagenet_classifier"
LARGE = "mobilenet_v3_large_imagenet_classifier"


@pytest.fixture(autouse=True)
def _offline_cache(tmp_path, monkeypatch):
    """An empty download cache, so nothing cached elsewhere hides a download."""
    monkeypatch.setenv("MOBILENETV3_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path / "kagglehub"))


@pytest.fixture(scope="module")
def small_file(tmp_path_factory):
    """A tf-keras MobileNetV3Small (1000 classes, random weights) .h5 file."""
    from tests.keras_applications_oracle import write_file

    if keras.backend.backend() != "tensorflow":
        pytest.skip("tf-keras writes the test file; needs TF")
    return write_file(tmp_path_factory.mktemp("ka") / "small.h5", "small", include_top=True)


def _images(rng, n=2, size=224):
    return rng.uniform(0, 255, (n, size, size, 3)).astype("float32")


# -- basics --------------------------------------------------------------------


@pytest.mark.parametrize("name,params", [(SMALL, 2_554_968), (LARGE, 5_507_432)])
def test_parameter_counts_with_1000_classes(name, params):
    model = MobileNetV3ImageClassifier.from_preset(name, load_weights=False)
    assert model.count_params() == params == presets.CLASSIFIER_PRESETS[name].params
    assert model.output_shape == (None, 1000)


@TF_ONLY
def test_every_classifier_preset_count_equals_keras_applications():
    import tf_keras

    for name, preset in presets.CLASSIFIER_PRESETS.items():
        config = preset.config
        build = getattr(tf_keras.applications, f"MobileNetV3{preset.family.title()}")
        reference = build(
            weights=None,
            input_shape=(224, 224, 3),
            alpha=config.get("alpha", 1.0),
            minimalistic=config.get("stem_activation") == "relu",
        )
        ours = MobileNetV3ImageClassifier.from_preset(name, load_weights=False)
        assert ours.count_params() == reference.count_params() == preset.params, name


@pytest.mark.core
def test_num_classes_must_be_positive():
    backbone = MobileNetV3Backbone.from_preset("mobilenet_v3_small")
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="`num_classes`"):
            MobileNetV3ImageClassifier(backbone, num_classes=bad)
    with pytest.raises(ValueError, match="head_activation"):
        MobileNetV3ImageClassifier(backbone, 10, head_activation="swishy")


@pytest.mark.core
def test_serialization_round_trip(tmp_path, rng):
    backbone = MobileNetV3Backbone.from_preset("mobilenet_v3_small")
    model = MobileNetV3ImageClassifier(backbone, 7, head_activation="relu", activation="softmax")
    images = _images(rng, size=96)
    expected = keras.ops.convert_to_numpy(model(images))
    clone = MobileNetV3ImageClassifier.from_config(model.get_config())
    assert clone.get_config() == model.get_config()
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    assert isinstance(loaded, MobileNetV3ImageClassifier) and loaded.head_activation == "relu"
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(images)), expected, atol=1e-6)
    model.save_to_preset(tmp_path / "preset")
    again = MobileNetV3ImageClassifier.from_preset(tmp_path / "preset")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(again(images)), expected, atol=1e-6)
    # Backbone overrides and head arguments apply to a classifier folder too.
    logits = MobileNetV3ImageClassifier.from_preset(tmp_path / "preset", activation=None, input_shape=(96, 96, 3))
    assert logits.input_shape == (None, 96, 96, 3) and logits.activation is None
    probabilities = keras.ops.softmax(logits(images))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(probabilities), expected, atol=1e-6)


# -- the registry ----------------------------------------------------------------


@pytest.mark.core
def test_presets_are_listed_apart():
    backbone_names = set(MobileNetV3Backbone.presets)
    classifier_names = set(MobileNetV3ImageClassifier.presets)
    assert {SMALL, LARGE} <= classifier_names
    assert not backbone_names & classifier_names
    with pytest.raises(ValueError, match="MobileNetV3ImageClassifier.from_preset"):
        MobileNetV3Backbone.from_preset(SMALL)


@pytest.mark.core
def test_presets_record_their_preprocessing():
    for name, entry in MobileNetV3ImageClassifier.presets.items():
        policy = entry["metadata"]["preprocessing_policy"]
        assert policy["mode"] == entry["config"]["backbone"]["preprocessing"] == "symmetric", name
        assert (policy["image_size"], policy["resize"], policy["mean"]) == (224, "squash", (0.5, 0.5, 0.5))
        assert entry["metadata"]["weights_url"].endswith("_float.h5")  # the with-top files


@pytest.mark.core
@pytest.mark.parametrize("name", [SMALL, LARGE])
def test_offline_gives_the_download_error(name):
    with pytest.raises(DownloadError, match="Could not download .*weights_file="):
        MobileNetV3ImageClassifier.from_preset(name)


def test_offline_kaggle_handle_gives_a_clear_error():
    with pytest.raises(PresetError, match="offline"):
        MobileNetV3ImageClassifier.from_preset("kaggle://keras/mobilenetv3/keras/mobilenet_v3_large_imagenet_classifier/2")


# -- local weights files -------------------------------------------------------------


@TF_ONLY
def test_weights_file_loads_and_matches_tf_keras(small_file, rng):
    from tests.keras_applications_oracle import tf_keras_model

    model = MobileNetV3ImageClassifier.from_preset(SMALL, weights_file=small_file, verify_weights_file=False)
    reference = tf_keras_model("small", (224, 224, 3), include_top=True)
    reference.load_weights(str(small_file))
    images = _images(rng)
    expected = reference(images).numpy()
    got = keras.ops.convert_to_numpy(model(images))
    assert np.abs(expected[0] - expected[1]).max() > 0.02  # the logits depend on the input
    assert np.abs(expected - got).max() <= 1e-4


@TF_ONLY
def test_new_head_on_a_classifier_preset_keeps_backbone_weights(small_file, rng):
    full = MobileNetV3ImageClassifier.from_preset(SMALL, weights_file=small_file, verify_weights_file=False)
    five = MobileNetV3ImageClassifier.from_preset(SMALL, weights_file=small_file, num_classes=5, verify_weights_file=False)
    assert five.output_shape == (None, 5)
    images = _images(rng, size=96)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(five.backbone(images)), keras.ops.convert_to_numpy(full.backbone(images)), atol=1e-6
    )


@TF_ONLY
def test_wrong_architecture_file_names_layer_and_shapes(tmp_path):
    from tests.keras_applications_oracle import write_file

    narrow = write_file(tmp_path / "small_075.h5", "small", include_top=True, alpha=0.75)
    with pytest.raises(WeightsMismatchError) as error:
        MobileNetV3ImageClassifier.from_preset(SMALL, weights_file=narrow, verify_weights_file=False)
    message = str(error.value)
    # 0.75 x 24 rounds back to 24; block 3 is the first narrower one (30 -> 32 vs 40).
    assert "layer 'expanded_conv_3_project'" in message
    assert "(1, 1, 96, 32)" in message and "(1, 1, 96, 40)" in message


@TF_ONLY
def test_truncated_weights_file_gives_a_clear_error(small_file, tmp_path):
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(small_file.read_bytes()[:100_000])
    with pytest.raises(WeightsFileError, match="corrupted, truncated"):
        MobileNetV3ImageClassifier.from_preset(SMALL, weights_file=truncated, verify_weights_file=False)


def _randomize_keras3(model, rng):
    """Random gammas, betas and biases, then BatchNorm moving statistics set
    to batch statistics of random images, so the output depends on the input."""
    for variable in model.weights:
        if "gamma" in variable.path:
            variable.assign(rng.uniform(0.5, 1.5, variable.shape))
        elif "beta" in variable.path or "bias" in variable.path:
            variable.assign(rng.normal(0.0, 0.1, variable.shape))
    batch_norms = [layer for layer in model._flatten_layers() if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in batch_norms:
        layer.momentum = 0.0
    model(_images(rng, n=4), training=True)
    for layer in batch_norms:
        layer.momentum = 0.999


# -- keras-cv preset folders (how the Kaggle classifier preset loads) ----------------


@TF_ONLY
def test_keras_cv_classifier_preset_folder_loads_with_identical_outputs(tmp_path, rng):
    import keras_cv
    from keras_cv.src.utils.preset_utils import save_to_preset

    large = presets.PRESETS["mobilenet_v3_large"].config
    stackwise = {k: v for k, v in large.items() if k.startswith("stackwise_")}
    backbone = keras_cv.models.MobileNetV3Backbone(**stackwise, include_rescaling=True)
    reference = keras_cv.models.ImageClassifier(backbone=backbone, num_classes=9)
    _randomize_keras3(reference, rng)
    save_to_preset(reference, str(tmp_path / "kcv"))

    ours = MobileNetV3ImageClassifier.from_preset(tmp_path / "kcv")
    assert (ours.head, ours.num_classes) == ("dense", 9)
    images = _images(rng)
    expected = keras.ops.convert_to_numpy(reference(images))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(ours(images)), expected, atol=1e-6)
    features = keras.ops.convert_to_numpy(reference.backbone(images))
    assert np.abs(features[0] - features[1]).max() > 0.1
    np.testing.assert_allclose(keras.ops.convert_to_numpy(ours.backbone(images)), features, atol=1e-4)
