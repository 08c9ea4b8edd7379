"""torchvision state dicts -> our loader, checked against torchvision itself.

Random weights (BatchNorm statistics included) are saved by torchvision,
read by `mobilenetv3.weights.torchvision`, and both models run on the same
images (NCHW there, NHWC here).
"""

from __future__ import annotations

import numpy as np
import pytest
from torch_oracle import (
    images_nchw,
    keras_forward,
    max_abs_diff,
    randomized,
    save_state_dict,
    torch,
    torch_forward,
    torchvision,
)

from mobilenetv3 import MobileNetV3ImageClassifier, weights
from mobilenetv3.presets import loader
from mobilenetv3.weights import torchvision as tv_weights

TOLERANCE = 1e-4
SIZES = [(224, 224), (193, 257)]


@pytest.fixture(scope="module", params=["small", "large"])
def ported(request, tmp_path_factory):
    """(torchvision classifier, our classifier, checkpoint) with the same random weights."""
    factory = getattr(torchvision.models, f"mobilenet_v3_{request.param}")
    oracle = randomized(factory(weights=None), seed=1)
    path = save_state_dict(oracle, tmp_path_factory.mktemp(request.param))
    checkpoint = weights.read(path, "torchvision")
    model = loader.build_model(checkpoint, include_rescaling=False)
    return oracle, model, checkpoint


def test_checkpoint_describes_the_torchvision_model(ported):
    oracle, model, checkpoint = ported
    assert isinstance(model, MobileNetV3ImageClassifier)
    assert checkpoint.task == "classifier" and checkpoint.num_classes == 1000
    config = checkpoint.backbone_config
    assert (config["padding"], config["bn_epsilon"], config["preprocessing"]) == ("symmetric", 1e-3, "imagenet")
    assert config["reduced_tail"] is False
    trainable = sum(int(np.prod(v.shape)) for v in model.trainable_weights)
    assert trainable == sum(p.numel() for p in oracle.parameters())


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_backbone_features_match_torchvision(ported, size):
    oracle, model, _ = ported
    x = images_nchw(*size)
    diff = max_abs_diff(keras_forward(model.backbone, x), torch_forward(oracle.features, x))
    assert diff <= TOLERANCE, f"features max abs diff {diff:.2e}"


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_classifier_logits_match_torchvision(ported, size):
    oracle, model, _ = ported
    x = images_nchw(*size, batch=2)
    diff = max_abs_diff(keras_forward(model, x), torch_forward(oracle, x))
    assert diff <= TOLERANCE, f"logits max abs diff {diff:.2e}"


def test_build_model_with_rescaling_applies_imagenet_mean_std(ported):
    oracle, _, checkpoint = ported
    model = loader.build_model(checkpoint)  # include_rescaling=True: raw 0..255 input
    pixels = np.random.default_rng(3).uniform(0, 255, (1, 3, 64, 96)).astype("float32")
    mean = np.array([0.485, 0.456, 0.406], "float32").reshape(1, 3, 1, 1)
    std = np.array([0.229, 0.224, 0.225], "float32").reshape(1, 3, 1, 1)
    expected = torch_forward(oracle, (pixels / 255 - mean) / std)
    assert max_abs_diff(keras_forward(model, pixels), expected) <= TOLERANCE


def test_detect(ported, tmp_path):
    oracle, _, _ = ported
    assert tv_weights.detect(save_state_dict(oracle, tmp_path, "mine.pth"))
    other = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(3, 3)}, other)
    assert not tv_weights.detect(str(other))
    text = tmp_path / "notes.pth"
    text.write_text("not a checkpoint")
    assert not tv_weights.detect(str(text))


def test_backbone_only_state_dict_loads_into_backbone(tmp_path):
    oracle = randomized(torchvision.models.mobilenet_v3_small(weights=None), seed=2)
    path = tmp_path / "features.pth"
    torch.save({k: v for k, v in oracle.state_dict().items() if k.startswith("features.")}, path)
    checkpoint = weights.read(str(path), "torchvision")
    assert checkpoint.num_classes is None and checkpoint.task is None
    backbone = loader.build_model(checkpoint, include_rescaling=False)
    x = images_nchw(96, 96)
    assert max_abs_diff(keras_forward(backbone, x), torch_forward(oracle.features, x)) <= TOLERANCE


def test_foreign_state_dict_is_refused(tmp_path):
    path = tmp_path / "resnet.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    with pytest.raises(ValueError, match="not a torchvision MobileNetV3"):
        weights.read(str(path), "torchvision")


def test_width_multiplier_is_refused_clearly(tmp_path):
    path = save_state_dict(torchvision.models.mobilenet_v3_small(weights=None, width_mult=0.75), tmp_path)
    with pytest.raises(ValueError, match="width_mult=1.0"):
        weights.read(path, "torchvision")


class _Payload:
    def __reduce__(self):
        return (print, ("unpickled!",))


def test_files_are_never_unpickled(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"features.0.0.weight": _Payload()}, path)
    assert not tv_weights.detect(str(path))
    with pytest.raises(ValueError, match="never unpickles") as error:  # clear, not torch's UnpicklingError
        tv_weights.read(str(path))
    assert "weights_only=False" not in str(error.value)


@pytest.mark.slow
@pytest.mark.parametrize(
    "name",
    # The 320 model's body is the same network: opt-in (`-m heavy`).
    ["fasterrcnn_mobilenet_v3_large_fpn", pytest.param("fasterrcnn_mobilenet_v3_large_320_fpn", marks=pytest.mark.heavy)],
)
def test_faster_rcnn_body_converts_as_a_backbone_with_its_epsilon(tmp_path, name):
    """The MobileNetV3 body (FrozenBatchNorm2d, eps 1e-5): both outputs
    torchvision's FPN takes (block 12 and the last conv) at an even and an
    odd size."""
    from torch_oracle import faster_rcnn_oracle
    from torchvision.ops import FrozenBatchNorm2d

    oracle, path = faster_rcnn_oracle(tmp_path, name)
    body = oracle.backbone.body
    assert {m.eps for m in body.modules() if isinstance(m, FrozenBatchNorm2d)} == {1e-5}
    checkpoint = weights.read(path, "torchvision")
    assert checkpoint.kind == "backbone" and checkpoint.backbone_config["bn_epsilon"] == 1e-5
    backbone = loader.build_model(checkpoint, include_rescaling=False)
    extractor = backbone.feature_extractor(["block_12", "last"])
    for size in SIZES:
        x = images_nchw(*size)
        with torch.no_grad():
            expected = {k: v.numpy().transpose(0, 2, 3, 1) for k, v in body(torch.from_numpy(x)).items()}
        features = extractor(x.transpose(0, 2, 3, 1), training=False)
        for key, level in (("0", "block_12"), ("1", "last")):
            diff = max_abs_diff(np.asarray(features[level]), expected[key])
            assert diff <= TOLERANCE, f"{name} body output {key} at {size}: max abs diff {diff:.2e}"
