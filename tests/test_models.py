"""The model factory (`loader.load_model`) and the task base class
(`MobileNetV3Task`): every source gives the right class, a kind the caller
cannot take gives one clear error, and a new task is one class."""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import pytest
from helpers import images, max_abs_diff

import mobilenetv3
from mobilenetv3 import MobileNetV3Backbone, MobileNetV3ImageClassifier, MobileNetV3ImageSegmenter, presets
from mobilenetv3.presets import loader
from mobilenetv3.presets.folders import PresetError
from mobilenetv3.tasks import MobileNetV3Task

CLASSIFIER = "mobilenet_v3_small_imagenet_classifier"


@pytest.fixture
def random_classifier_preset(monkeypatch):
    """The registered classifier preset, with random weights (its own need the network)."""
    monkeypatch.setitem(presets.CLASSIFIER_PRESETS, CLASSIFIER,
                        dataclasses.replace(presets.CLASSIFIER_PRESETS[CLASSIFIER], weights=None))
    return CLASSIFIER


@pytest.mark.core
def test_registered_names_give_their_kind(random_classifier_preset):
    assert type(loader.load_model("mobilenet_v3_small")) is MobileNetV3Backbone
    classifier = loader.load_model(random_classifier_preset, input_shape=(64, 64, 3))
    assert type(classifier) is MobileNetV3ImageClassifier
    assert classifier.num_classes == 1000 and classifier.input_shape == (None, 64, 64, 3)
    assert loader.model_class("segmenter") is MobileNetV3ImageSegmenter


@pytest.mark.core
def test_the_class_table_is_explicit_and_matches_each_class():
    for kind in loader.MODEL_CLASSES:
        cls = loader.model_class(kind)
        assert cls.kind == kind and loader.kind_of_class_name(cls.__name__) == kind
    assert loader.kind_of_class_name("ImageClassifier") == "classifier"  # keras-cv / keras-hub folders
    with pytest.raises(PresetError, match="Unknown model kind 'toy'"):
        loader.model_class("toy")


@pytest.mark.core
def test_a_backbone_caller_refuses_a_task_with_one_error(tmp_path, random_classifier_preset):
    backbone = mobilenetv3.MobileNetV3SmallBackbone(input_shape=(64, 64, 3))
    MobileNetV3ImageSegmenter(backbone, num_classes=2).save_to_preset(tmp_path / "segmenter")
    for source, holder in ((random_classifier_preset, "MobileNetV3ImageClassifier"),
                           (str(tmp_path / "segmenter"), "MobileNetV3ImageSegmenter")):
        with pytest.raises(PresetError, match=rf"holds a \w+ \({holder}\).*load it with {holder}.from_preset"):
            MobileNetV3Backbone.from_preset(source)
    # A task caller takes any preset's backbone when given a head.
    classifier = MobileNetV3ImageClassifier.from_preset(str(tmp_path / "segmenter"), num_classes=3)
    assert classifier.num_classes == 3
    assert classifier.backbone.count_params() == backbone.count_params()


@pytest.mark.core
def test_task_base_owns_head_arguments_and_dtype_policy():
    assert MobileNetV3ImageClassifier.head_arguments() == (
        "head", "head_filters", "dropout", "activation", "pooling", "head_activation"
    )
    assert MobileNetV3ImageSegmenter.head_arguments() == (
        "low_level", "high_level", "inter_channels", "bn_epsilon", "activation", "head", "atrous_rates",
        "aux_classifier",
    )
    backbone = mobilenetv3.MobileNetV3SmallBackbone(input_shape=(64, 64, 3), dtype="mixed_bfloat16")
    for task in (MobileNetV3ImageClassifier(backbone, 2), MobileNetV3ImageSegmenter(backbone, 2)):
        assert task.dtype_policy.name == "mixed_bfloat16", type(task).__name__


class _ToyTask(MobileNetV3Task):
    """A task with dict outputs and its own head argument, as a detector is."""

    kind = "toy"

    def __init__(self, backbone, num_classes, width=4, **kwargs):
        x = keras.layers.GlobalAveragePooling2D(name="toy_pool")(backbone.output)
        outputs = {
            "scores": keras.layers.Dense(num_classes, name="toy_scores")(x),
            "boxes": keras.layers.Dense(width, name="toy_boxes")(x),
        }
        super().__init__(backbone, backbone.input, outputs, **kwargs)
        self.num_classes = num_classes
        self.width = width


def test_a_new_task_is_one_class(tmp_path, monkeypatch):
    monkeypatch.setitem(loader.MODEL_CLASSES, "toy", f"{__name__}:_ToyTask")  # one table row
    model = _ToyTask.from_preset("mobilenet_v3_small", num_classes=3, width=2, input_shape=(64, 64, 3))
    assert model.kind == "toy" and model.get_config()["width"] == 2
    x = images(1, 64, 64, scale=255)
    model.save_to_preset(tmp_path / "toy")
    again = loader.load_model(str(tmp_path / "toy"))
    assert type(again) is _ToyTask and again.width == 2
    assert max_abs_diff(again(x)["boxes"], model(x)["boxes"]) == 0
    assert np.shape(again(x)["scores"]) == (1, 3)


@pytest.mark.core
def test_head_arguments_go_to_the_callers_head_only(random_classifier_preset):
    model = MobileNetV3ImageSegmenter.from_preset(
        random_classifier_preset, num_classes=2, inter_channels=8, input_shape=(64, 64, 3)
    )
    assert type(model) is MobileNetV3ImageSegmenter and model.inter_channels == 8
    assert model.backbone.count_params() == 939_120  # the classifier preset's backbone


def test_a_weights_file_gives_its_model(tmp_path):
    from torch_oracle import randomized, save_state_dict, torchvision

    path = save_state_dict(randomized(torchvision.models.mobilenet_v3_small(num_classes=5)), tmp_path)
    model = loader.load_model(path)
    assert type(model) is MobileNetV3ImageClassifier and model.num_classes == 5
    with pytest.raises(PresetError, match=r"holds a classifier \(MobileNetV3ImageClassifier\)"):
        MobileNetV3Backbone.from_preset(path)
    with pytest.raises(PresetError, match="is a file, which holds its own weights"):
        MobileNetV3ImageClassifier.from_preset(path, weights_file=path)
