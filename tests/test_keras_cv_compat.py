"""Drop-in for keras-cv 0.9.0: its weight files and preset folders load unchanged."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from helpers import LARGE, SMALL, images, max_abs_diff, randomize

from mobilenetv3 import MobileNetV3Backbone

keras_cv = pytest.importorskip("keras_cv", reason="keras-cv 0.9.0 is the oracle for drop-in compatibility")
if keras.backend.backend() != "tensorflow":
    pytest.skip("keras-cv 0.9.0 is checked on the TensorFlow backend", allow_module_level=True)


def keras_cv_backbone(cfg: dict) -> keras.Model:
    args = {k: v for k, v in cfg.items() if k.startswith("stackwise") or k == "include_rescaling"}
    model = keras_cv.models.MobileNetV3Backbone(**args)
    randomize(model, seed=1)
    return model


@pytest.mark.parametrize("cfg", [SMALL, LARGE], ids=["small", "large"])
def test_keras_cv_weights_file_loads_unchanged(cfg, tmp_path):
    theirs = keras_cv_backbone(cfg)
    theirs.save_weights(str(tmp_path / "kcv.weights.h5"))
    ours = MobileNetV3Backbone(**cfg)
    ours.load_weights(str(tmp_path / "kcv.weights.h5"))
    x = images(2, 224, 224, scale=255)
    assert max_abs_diff(theirs(x), ours(x)) < 1e-5
    assert ours.pyramid_level_inputs.keys() == theirs.pyramid_level_inputs.keys()
    for level, name in theirs.pyramid_level_inputs.items():
        if not name.startswith("multiply"):  # keras-cv's auto-named P1 for Small
            assert ours.pyramid_level_inputs[level] == name


def test_keras_cv_preset_folder_loads(tmp_path):
    from keras_cv.src.utils.preset_utils import save_to_preset

    theirs = keras_cv_backbone(LARGE)
    save_to_preset(theirs, str(tmp_path / "kcv_preset"))
    ours = MobileNetV3Backbone.from_preset(str(tmp_path / "kcv_preset"))
    x = images(1, 160, 192, scale=255)
    assert max_abs_diff(theirs(x), ours(x)) < 1e-5
    assert ours.count_params() == theirs.count_params() == 2_996_352


def test_parameter_counts_equal_keras_cv():
    assert keras_cv_backbone(SMALL).count_params() == MobileNetV3Backbone(**SMALL).count_params()
    assert np.isclose(MobileNetV3Backbone(**SMALL).count_params(), 939_120)
