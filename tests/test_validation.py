"""The one validation layer (issue #14): bools are bools, numbers are
finite, filter counts are integers, numpy scalars are numbers, sizes have
upper bounds, unknown keywords name the closest valid one."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
from helpers import SMALL, images, max_abs_diff, randomize

import mobilenetv3
from mobilenetv3 import MobileNetV3Backbone
from mobilenetv3.core import validation
from mobilenetv3.tasks import MobileNetV3ImageClassifier, MobileNetV3ImageSegmenter

pytestmark = pytest.mark.core
NAN, INF = float("nan"), float("inf")


def _column(name, first):
    return {name: [first] + list(SMALL[name][1:])}


# Each is refused before any layer is built.
@pytest.mark.parametrize(
    "overrides, error, pattern",
    [
        ({"include_rescaling": "no"}, ValueError, r"`include_rescaling` must be True or False; got 'no'"),
        ({"include_rescaling": 1}, ValueError, r"`include_rescaling` must be True or False"),
        ({"reduced_tail": "yes"}, ValueError, r"`reduced_tail` must be True or False"),
        ({"bn_epsilon": NAN}, ValueError, r"`bn_epsilon` must be a positive number.*nan"),
        ({"bn_epsilon": INF}, ValueError, r"`bn_epsilon`.*inf"),
        ({"bn_epsilon": True}, ValueError, r"`bn_epsilon`.*True"),
        (_column("stackwise_filters", 16.0), ValueError, r"`stackwise_filters\[0\]` must be an integer.*16\.0"),
        (_column("stackwise_filters", INF), ValueError, r"`stackwise_filters\[0\]`"),
        (_column("stackwise_filters", 10**7), ValueError, r"`stackwise_filters\[0\]`.*<= 8,192"),
        (_column("stackwise_expansion", NAN), ValueError, r"`stackwise_expansion\[0\]`.*nan"),
        (_column("stackwise_expansion", 1e6), ValueError, r"`stackwise_expansion\[0\]`.*at most 32"),
        (_column("stackwise_kernel_size", 3.0), ValueError, r"`stackwise_kernel_size\[0\]` must be an integer"),
        (_column("stackwise_se_ratio", NAN), ValueError, r"`stackwise_se_ratio\[0\]`.*\(0, 1\]"),
        (_column("stackwise_se_ratio", "0.25"), TypeError, r"`stackwise_se_ratio\[0\]`.*None.*\(0, 1\]"),
        ({"alpha": NAN}, ValueError, r"`alpha` must be a positive number.*nan"),
        ({"alpha": INF}, ValueError, r"`alpha`.*inf"),
        ({"alpha": 1e3}, ValueError, r"`alpha`.*at most 8"),
        ({"alpha": 8.0, "stackwise_filters": SMALL["stackwise_filters"][:8] + [200] * 3}, ValueError,
         r"Block 9 would have 9,600 channels.*stackwise_expansion\[9\]"),
        ({"stackwise_filters": None}, TypeError, r"`stackwise_filters` must be a list"),
        ({"stackwise_activation": "relu"}, TypeError, r"`stackwise_activation` must be a list"),
        ({"input_shape": 5}, TypeError, r"`input_shape` must be \(height, width, channels\)"),
        ({"input_shape": (30000, 30000, 3)}, ValueError, r"`input_shape` height .* to 4096"),
        ({"drop_path_rate": NAN}, ValueError, r"`drop_path_rate`"),
        ({"depth_multiplier": 100}, ValueError, r"`depth_multiplier`.*at most 8"),
        ({"stem_filters": 16.0}, ValueError, r"`stem_filters` must be an integer"),
    ],
)
def test_bad_backbone_arguments_name_the_argument(overrides, error, pattern):
    with pytest.raises(error, match=pattern):
        MobileNetV3Backbone(**{**SMALL, **overrides})


def test_numpy_scalars_are_numbers_and_configs_stay_plain():
    config = {
        **SMALL,
        "stackwise_filters": [np.int64(f) for f in SMALL["stackwise_filters"]],
        "stackwise_expansion": np.asarray(SMALL["stackwise_expansion"], "float32"),
        "alpha": np.float32(0.75),
        "bn_epsilon": np.float64(1e-3),
        "include_rescaling": np.bool_(False),
        "output_stride": np.int32(16),
        "input_shape": (np.int64(64), np.int64(64), np.int64(3)),
    }
    backbone = MobileNetV3Backbone(**config)
    saved = backbone.get_config()
    json.dumps(saved)  # plain Python values only
    assert saved["alpha"] == 0.75 and saved["output_stride"] == 16 and saved["input_shape"] == (64, 64, 3)
    assert backbone(np.zeros((1, 64, 64, 3))).shape == (1, 4, 4, 432)
    classifier = MobileNetV3ImageClassifier(backbone, np.int64(3), dropout=np.float32(0.1), head_filters=np.int32(64))
    assert classifier.num_classes == 3 and type(classifier.num_classes) is int
    assert classifier(np.zeros((1, 64, 64, 3))).shape == (1, 3)


def test_unknown_keywords_name_the_closest_valid_one():
    with pytest.raises(TypeError, match=r"unknown keyword argument `include_rescalling`.*Did you mean `include_rescaling`"):
        mobilenetv3.MobileNetV3SmallBackbone(include_rescalling=False)
    with pytest.raises(TypeError, match=r"from_preset got an unknown keyword argument `bogus_argument`"):
        MobileNetV3Backbone.from_preset("mobilenet_v3_small", bogus_argument=1)
    with pytest.raises(TypeError, match=r"`dropuot`.*Did you mean `dropout`"):
        MobileNetV3ImageClassifier.from_preset("mobilenet_v3_small", num_classes=3, dropuot=0.5)
    with pytest.raises(TypeError, match=r"unknown keyword argument `bogus`"):
        MobileNetV3Backbone.from_config({**SMALL, "include_rescaling": True, "bogus": 1})
    backbone = MobileNetV3Backbone(**{**SMALL, "input_shape": (32, 32, 3)}, name="mine", trainable=False)
    assert backbone.name == "mine" and not backbone.trainable  # Keras' own keywords still pass
    with pytest.raises(TypeError, match=r"MobileNetV3ImageClassifier got an unknown keyword argument `dropuot`.*`dropout`"):
        MobileNetV3ImageClassifier(backbone, 3, dropuot=0.5)
    with pytest.raises(TypeError, match=r"`low_levle`.*`low_level`"):
        MobileNetV3ImageSegmenter(backbone, 3, low_levle="P2")


def test_head_arguments_are_checked():
    backbone = MobileNetV3Backbone(**{**SMALL, "input_shape": (32, 32, 3)})
    for kwargs, pattern in (
        ({"dropout": NAN}, r"`dropout`"),
        ({"head_filters": 10**6}, r"`head_filters`"),
        ({"num_classes": 3.0}, r"`num_classes` must be an integer"),
        ({"num_classes": 10**7}, r"`num_classes`.*<= 100,000"),
        ({"pooling": "mean"}, r"`pooling` must be one of \['avg', 'max'\]"),
    ):
        with pytest.raises(ValueError, match=pattern):
            MobileNetV3ImageClassifier(backbone, **{"num_classes": 3, **kwargs})
    with pytest.raises(TypeError, match=r"`backbone` of MobileNetV3ImageClassifier must be a MobileNetV3Backbone"):
        MobileNetV3ImageClassifier("mobilenet_v3_small", 3)
    with pytest.raises(ValueError, match=r"config's `backbone` must be a serialized backbone.*from_preset"):
        MobileNetV3ImageClassifier.from_config({"backbone": "mobilenet_v3_small", "num_classes": 3})
    with pytest.raises(ValueError, match=r"`bn_epsilon`"):
        MobileNetV3ImageSegmenter(backbone, 3, bn_epsilon=INF)


def test_check_keywords_and_choice_units():
    assert validation.check_choice("output_stride", np.int64(16), (8, 16, 32)) == 16
    with pytest.raises(ValueError, match="one of"):
        validation.check_choice("flag", True, (1, 2))
    assert validation.check_number("x", np.float32(0.5), 0, 1) == 0.5
    assert validation.check_keywords("f", ["name"], ["name"]) is None
    with pytest.raises(TypeError, match=r"`nmae`.*Did you mean `name`"):
        validation.check_keywords("f", ["nmae"], ["name", "trainable"])


def test_predict_on_a_segmenter_folder_says_what_to_use(tmp_path):
    backbone = MobileNetV3Backbone(**{**SMALL, "input_shape": (32, 32, 3)})
    MobileNetV3ImageSegmenter(backbone, 2).save_to_preset(tmp_path / "seg")
    with pytest.raises(ValueError, match=r"holds a segmenter \(MobileNetV3ImageSegmenter\).*"
                                         r"MobileNetV3ImageSegmenter.from_preset"):
        MobileNetV3ImageClassifier.from_preset(str(tmp_path / "seg"))


def test_segmenter_folder_overrides_reach_the_backbone(tmp_path):
    """include_rescaling, output_stride and input_shape given to
    `from_preset(folder)` apply to the backbone: same numbers as a segmenter
    built directly with them, on a normalised input."""
    backbone = MobileNetV3Backbone(**{**SMALL, "include_rescaling": True})
    saved = MobileNetV3ImageSegmenter(backbone, 3)
    randomize(saved, seed=3)
    saved.save_to_preset(tmp_path / "seg")
    overrides = {"include_rescaling": False, "output_stride": 16, "input_shape": (64, 64, 3)}
    loaded = MobileNetV3ImageSegmenter.from_preset(str(tmp_path / "seg"), **overrides)
    direct = MobileNetV3ImageSegmenter(MobileNetV3Backbone(**{**SMALL, **overrides}), 3)
    direct.set_weights(saved.get_weights())
    assert loaded.backbone.include_rescaling is False and loaded.backbone.output_stride == 16
    assert tuple(loaded.input_shape[1:]) == (64, 64, 3)
    x = images(2, 64, 64, seed=1)  # normalised, 0..1
    assert max_abs_diff(loaded(x), direct(x)) < 1e-5
    assert max_abs_diff(loaded(x), saved(x)) > 1e-3  # ignoring the overrides would rescale x again


def test_cache_entry_that_is_a_folder(tmp_path, monkeypatch):
    from mobilenetv3.weights import download

    monkeypatch.setenv("MOBILENETV3_CACHE", str(tmp_path))
    (tmp_path / "w.h5").mkdir()
    with pytest.raises(download.DownloadError, match=r"Cache entry .*w.h5 is a folder, not a file"):
        download.fetch("https://example.invalid/w.h5", md5="0" * 32)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="torch oracle file")
def test_variant_on_a_torchvision_file_is_refused(tmp_path):
    import torch
    import torchvision

    from mobilenetv3.presets import conversion

    path = tmp_path / "tv.pth"
    torch.save(torchvision.models.mobilenet_v3_small(weights=None).state_dict(), path)
    for source_format in ("torchvision", "auto"):
        with pytest.raises(ValueError, match=r"\['variant'\] do not apply to torchvision files"):
            conversion.load(str(path), source_format, variant="mobilenetv3_small_100")
