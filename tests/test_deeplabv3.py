"""torchvision's `deeplabv3_mobilenet_v3_large` as a `MobileNetV3ImageSegmenter`
with `head="deeplabv3"`: parameter count, logits against torchvision (random
weights, BatchNorm statistics perturbed), the converter, and the head's
arguments."""

from __future__ import annotations

import numpy as np
import pytest
from torch_oracle import (
    deeplabv3_oracle,
    images_nchw,
    keras_forward,
    max_abs_diff,
    torch,
    torch_forward,
    torch_param_count,
    trainable_count,
)

from mobilenetv3 import MobileNetV3Backbone, MobileNetV3ImageSegmenter, presets, weights
from mobilenetv3.cli import main
from mobilenetv3.presets import loader

TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def deeplab(tmp_path_factory):
    """(torchvision DeepLabV3 with aux classifier, its .pth path, our segmenter)."""
    oracle, path = deeplabv3_oracle(tmp_path_factory.mktemp("deeplabv3"))
    model = loader.build_model(weights.read(path, "torchvision"), include_rescaling=False)
    return oracle, path, model


@pytest.mark.slow
def test_checkpoint_builds_a_deeplabv3_segmenter_with_torchvisions_parameters(deeplab):
    oracle, path, model = deeplab
    checkpoint = weights.read(path, "torchvision")
    assert (checkpoint.task, checkpoint.num_classes, checkpoint.head) == ("segmenter", 21, "deeplabv3")
    assert isinstance(model, MobileNetV3ImageSegmenter)
    assert (model.head, model.aux_classifier, model.atrous_rates) == ("deeplabv3", True, (12, 24, 36))
    assert model.backbone.output_stride == 16
    assert trainable_count(model) == torch_param_count(oracle) == 11_029_328


@pytest.mark.slow
@pytest.mark.parametrize("size", [(224, 224), (193, 257)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_deeplabv3_logits_and_aux_match_torchvision(deeplab, size):
    oracle, _, model = deeplab
    x = images_nchw(*size)
    with torch.no_grad():
        expected = {k: v.numpy().transpose(0, 2, 3, 1) for k, v in oracle(torch.from_numpy(x)).items()}
    assert expected["out"].shape == (1, *size, 21)
    diff = max_abs_diff(keras_forward(model, x), expected["out"])
    assert diff <= TOLERANCE, f"DeepLabV3 logits {size}: max abs diff {diff:.2e}"
    aux = keras_forward(model.aux_model, x)
    assert max_abs_diff(aux, expected["aux"]) <= TOLERANCE


@pytest.mark.slow
def test_convert_command_writes_a_deeplabv3_preset(tmp_path):
    """`mobilenetv3 convert --from torchvision` on a file without the aux
    classifier: a segmenter without one, same logits after from_preset."""
    oracle, path = deeplabv3_oracle(tmp_path, aux_loss=False)
    assert main(["convert", path, str(tmp_path / "deeplab"), "--from", "torchvision"]) == 0
    model = MobileNetV3ImageSegmenter.from_preset(str(tmp_path / "deeplab"))
    assert (model.head, model.aux_classifier) == ("deeplabv3", False)
    assert trainable_count(model) == torch_param_count(oracle) == 11_025_477
    pixels = np.random.default_rng(0).uniform(0, 255, (1, 3, 97, 131)).astype("float32")
    mean = np.array([0.485, 0.456, 0.406], "float32").reshape(1, 3, 1, 1)
    std = np.array([0.229, 0.224, 0.225], "float32").reshape(1, 3, 1, 1)
    expected = torch_forward(oracle, (pixels / 255 - mean) / std)
    assert max_abs_diff(keras_forward(model, pixels), expected) <= TOLERANCE


def _small_backbone() -> MobileNetV3Backbone:
    return MobileNetV3Backbone(**{**presets.PRESETS["mobilenet_v3_small"].config, "include_rescaling": False})


@pytest.mark.core
def test_deeplabv3_head_round_trips_its_config():
    model = MobileNetV3ImageSegmenter(
        _small_backbone(), num_classes=3, head="deeplabv3", atrous_rates=(2, 4, 6), aux_classifier=True
    )
    config = model.get_config()
    assert (config["head"], config["inter_channels"], config["aux_classifier"]) == ("deeplabv3", 256, True)
    again = MobileNetV3ImageSegmenter.from_config(config)
    again.set_weights(model.get_weights())
    x = np.random.default_rng(0).uniform(0, 1, (1, 65, 81, 3)).astype("float32")
    assert max_abs_diff(model.predict(x, verbose=0), again.predict(x, verbose=0)) == 0
    assert tuple(again.aux_model(x).shape) == (1, 65, 81, 3)


@pytest.mark.core
@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"head": "aspp"}, "`head` must be one of"),
        ({"head": "deeplabv3", "atrous_rates": (12, 24)}, "`atrous_rates` must be three integers"),
        ({"head": "deeplabv3", "aux_classifier": "yes"}, "`aux_classifier` must be True or False"),
    ],
)
def test_bad_head_arguments_are_refused(arguments, message):
    with pytest.raises(ValueError, match=message):
        MobileNetV3ImageSegmenter(_small_backbone(), num_classes=3, **arguments)


def test_a_segmentation_backbone_without_a_known_head_is_named(tmp_path):
    oracle, _ = deeplabv3_oracle(tmp_path, aux_loss=False)
    path = tmp_path / "backbone_only.pth"
    torch.save({k: v for k, v in oracle.state_dict().items() if k.startswith("backbone.")}, path)
    with pytest.raises(ValueError, match="segmentation backbone .'backbone.0.0.weight'. but no head") as error:
        weights.read(str(path), "torchvision")
    assert "has no 'backbone.0.0.weight'" not in str(error.value)
