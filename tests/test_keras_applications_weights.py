"""keras.applications `.h5` files: detection, variant inference and outputs
equal to tf-keras' own MobileNetV3 (the oracle) at 224x224 and 193x257."""

from __future__ import annotations

import h5py
import keras
import numpy as np
import pytest

from mobilenetv3 import MobileNetV3Backbone, weights
from mobilenetv3.presets import loader
from mobilenetv3.weights import keras_applications
from mobilenetv3.weights.keras_applications import WeightsFileError
from tests.keras_applications_oracle import tf_keras_model, write_file

pytestmark = pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="tf-keras oracle needs TF")

TOLERANCE = 1e-4
SIZES = [(224, 224), (193, 257)]  # an odd size exercises TF "SAME" padding per axis

# family, include_top, tf-keras kwargs, expected (alpha, minimalistic head activation)
CASES = [
    ("small", True, {}, 1.0),
    ("large", False, {}, 1.0),
    ("small", False, {"minimalistic": True}, 1.0),
    ("large", True, {"alpha": 0.75}, 0.75),
]


def _max_diff(reference, ours, images) -> float:
    expected = np.asarray(reference(images, training=False))
    got = keras.ops.convert_to_numpy(ours(images, training=False))
    assert expected.shape == got.shape
    # The output must depend on the input, or the comparison proves nothing.
    assert np.abs(expected[0] - expected[1]).max() > 200 * TOLERANCE, "oracle output does not depend on the input"
    return float(np.abs(expected - got).max())


@pytest.mark.parametrize("family,include_top,kwargs,alpha", CASES, ids=lambda c: str(c))
def test_outputs_match_tf_keras(tmp_path, rng, family, include_top, kwargs, alpha):
    path = write_file(tmp_path / "weights.h5", family, include_top, **kwargs)
    checkpoint = keras_applications.read(path)
    config = checkpoint.backbone_config
    assert config["alpha"] == alpha
    assert config["preprocessing"] == "symmetric" and config["padding"] == "same"
    assert config.get("stem_activation", "hard_swish") == ("relu" if kwargs.get("minimalistic") else "hard_swish")
    assert len(config["stackwise_filters"]) == (11 if family == "small" else 15)
    assert checkpoint.num_classes == (1000 if include_top else None)
    ours = loader.build_model(checkpoint)
    for size in SIZES:
        reference = tf_keras_model(family, size + (3,), include_top, **kwargs)
        reference.load_weights(str(path))
        images = rng.uniform(0, 255, (2, *size, 3)).astype("float32")
        diff = _max_diff(reference, ours, images)
        assert diff <= TOLERANCE, f"{family} {kwargs} top={include_top} at {size}: max abs diff {diff}"


def test_backbone_from_with_top_file_matches_tf_keras_features(tmp_path, rng):
    path = write_file(tmp_path / "weights.h5", "small", include_top=True)
    checkpoint = keras_applications.read(path)
    backbone = MobileNetV3Backbone(**checkpoint.backbone_config)
    weights.load_into(backbone, checkpoint)  # the head tensors are skipped
    reference = tf_keras_model("small", (224, 224, 3), include_top=False)
    reference.load_weights(str(path), by_name=True)
    images = rng.uniform(0, 255, (2, 224, 224, 3)).astype("float32")
    assert _max_diff(reference, backbone, images) <= TOLERANCE


def test_wrong_preprocessing_is_detected(tmp_path, rng):
    """The comparison above can fail: [0, 1] scaling instead of [-1, 1]."""
    path = write_file(tmp_path / "weights.h5", "small", include_top=False)
    checkpoint = keras_applications.read(path)
    wrong = loader.build_model(checkpoint, preprocessing="unit")
    reference = tf_keras_model("small", (224, 224, 3), include_top=False)
    reference.load_weights(str(path))
    images = rng.uniform(0, 255, (2, 224, 224, 3)).astype("float32")
    assert _max_diff(reference, wrong, images) > 1e-2


def test_minimalistic_head_uses_relu(tmp_path):
    path = write_file(tmp_path / "weights.h5", "small", include_top=True, minimalistic=True)
    checkpoint = keras_applications.read(path)
    assert (checkpoint.head, checkpoint.head_filters, checkpoint.head_activation) == ("paper", 1024, "relu")


def test_canonical_names(tmp_path):
    path = write_file(tmp_path / "weights.h5", "small", include_top=True)
    tensors = keras_applications.read(path).tensors
    assert tensors["expanded_conv_3_squeeze_excite/squeeze_conv/kernel"].shape == (1, 1, 96, 24)
    assert tensors["expanded_conv_3_squeeze_excite/excite_conv/bias"].shape == (96,)
    assert tensors["expanded_conv_depthwise/kernel"].shape == (3, 3, 16, 1)
    assert tensors["Conv_1_BatchNorm/moving_variance"].shape == (576,)
    assert tensors["Logits/kernel"].shape == (1, 1, 1024, 1000)
    with h5py.File(path) as f:  # same numbers as the file's own
        np.testing.assert_array_equal(
            tensors["expanded_conv_3_squeeze_excite/excite_conv/kernel"],
            f["expanded_conv_3/squeeze_excite/Conv_1/expanded_conv_3/squeeze_excite/Conv_1/kernel:0"][()],
        )


def test_detect(tmp_path):
    path = write_file(tmp_path / "ka.h5", "small", include_top=False)
    assert keras_applications.detect(path)
    keras3 = tmp_path / "model.weights.h5"
    MobileNetV3Backbone.from_preset("mobilenet_v3_small").save_weights(str(keras3))
    text = tmp_path / "notes.h5"
    text.write_text("not hdf5")
    assert not keras_applications.detect(keras3)
    assert not keras_applications.detect(text)
    assert not keras_applications.detect(tmp_path / "missing.h5")


def test_truncated_file_gives_clear_error(tmp_path):
    path = write_file(tmp_path / "full.h5", "small", include_top=False)
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(WeightsFileError, match="corrupted, truncated"):
        weights.read(str(truncated), "keras-applications")


def test_foreign_h5_gives_clear_error(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=np.zeros(3))
    with pytest.raises(WeightsFileError, match="layer_names"):
        keras_applications.read(path)
