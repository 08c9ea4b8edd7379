"""timm checkpoints: converted models must compute what timm computes.

The oracle is timm itself: each model is built with `timm.create_model`,
given random BatchNorm parameters and data-calibrated running statistics (so
that a swapped or missing tensor changes the output), saved as safetensors
and as a `.pth` state dict, converted, and compared on the same raw pixels
(each side applies its own preprocessing).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mobilenetv3 import models
from mobilenetv3.weights import timm as timm_weights

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")
safetensors_torch = pytest.importorskip("safetensors.torch")

TOLERANCE = 1e-4
SIZES = [(224, 224), (193, 257)]
MODELS = [
    "mobilenetv3_large_100",
    "mobilenetv3_small_075",
    "tf_mobilenetv3_large_100",
    "tf_mobilenetv3_small_minimal_100",
]


def _random_timm_model(name: str) -> torch.nn.Module:
    """A timm model in eval mode with random BN affine parameters and running
    statistics calibrated on random data (keeps activations near unit scale)."""
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    with torch.no_grad():
        for norm in norms:
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.normal_(0.0, 0.2)
            norm.momentum = None
            norm.reset_running_stats()
        model.train()
        model(torch.randn(4, 3, 160, 160))
        for norm in norms:
            norm.running_var.add_(0.5)
    return model.eval()


def _save(model: torch.nn.Module, folder: Path, name: str) -> tuple[Path, Path]:
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    safetensors_path = folder / f"{name}.safetensors"
    safetensors_torch.save_file(state, str(safetensors_path))
    pth_path = folder / f"{name}.pth"
    torch.save(state, str(pth_path))
    return safetensors_path, pth_path


def _timm_outputs(model: torch.nn.Module, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    config = model.pretrained_cfg
    normalized = (pixels / 255.0 - np.array(config["mean"])) / np.array(config["std"])
    inputs = torch.from_numpy(normalized.astype("float32").transpose(0, 3, 1, 2))
    with torch.no_grad():
        features = model.forward_features(inputs).numpy().transpose(0, 2, 3, 1)
        logits = model(inputs).numpy()
    return features, logits


def _max_diffs(ours: object, theirs: torch.nn.Module, size: tuple[int, int]) -> tuple[float, float]:
    pixels = np.random.default_rng(1).uniform(0, 255, (2, *size, 3)).astype("float32")
    features, logits = _timm_outputs(theirs, pixels)
    our_features = np.asarray(ours.backbone(pixels))
    our_logits = np.asarray(ours(pixels))
    return float(np.abs(our_features - features).max()), float(np.abs(our_logits - logits).max())


@pytest.mark.parametrize("name", MODELS)
def test_converted_timm_model_matches_timm(name: str, tmp_path: Path) -> None:
    reference = _random_timm_model(name)
    safetensors_path, pth_path = _save(reference, tmp_path, name)
    assert timm_weights.detect(str(safetensors_path)) and timm_weights.detect(str(pth_path))

    checkpoint = timm_weights.read(str(safetensors_path))
    from_pth = timm_weights.read(str(pth_path))
    assert checkpoint.tensors.keys() == from_pth.tensors.keys()
    for key, value in checkpoint.tensors.items():
        np.testing.assert_array_equal(value, from_pth.tensors[key], err_msg=key)
    assert checkpoint.num_classes == 1000
    tf_family = name.startswith("tf_")
    assert checkpoint.backbone_config["padding"] == ("same" if tf_family else "symmetric")
    assert checkpoint.backbone_config["bn_epsilon"] == (1e-3 if tf_family else 1e-5)

    model = models.build_model(checkpoint)
    for size in SIZES:
        feature_diff, logit_diff = _max_diffs(model, reference, size)
        assert feature_diff <= TOLERANCE, (name, size, feature_diff)
        assert logit_diff <= TOLERANCE, (name, size, logit_diff)


def test_wrong_family_conventions_are_detectably_wrong(tmp_path: Path) -> None:
    """The comparison can fail: reading a tf_ checkpoint with PyTorch padding,
    eps and preprocessing gives outputs far outside the tolerance."""
    name = "tf_mobilenetv3_small_minimal_100"
    reference = _random_timm_model(name)
    path, _ = _save(reference, tmp_path, name)
    wrong = models.build_model(timm_weights.read(str(path), tf_padding=False))
    feature_diff, logit_diff = _max_diffs(wrong, reference, (224, 224))
    assert feature_diff > 100 * TOLERANCE and logit_diff > 100 * TOLERANCE


@pytest.fixture(scope="module")
def small_state() -> dict:
    return {k: v.contiguous() for k, v in timm.create_model("mobilenetv3_small_100").state_dict().items()}


def test_architecture_is_inferred_from_tensors(tmp_path: Path) -> None:
    for name, family_blocks, alpha, minimal in [
        ("mobilenetv3_small_050", 11, 0.5, False),
        ("tf_mobilenetv3_large_minimal_100", 15, 1.0, True),
        ("tf_mobilenetv3_large_075", 15, 0.75, False),
    ]:
        path = tmp_path / f"{name}.safetensors"
        state = timm.create_model(name).state_dict()
        safetensors_torch.save_file({k: v.contiguous() for k, v in state.items()}, str(path))
        config = timm_weights.read(str(path)).backbone_config
        assert len(config["stackwise_filters"]) == family_blocks
        assert config["alpha"] == alpha
        assert (config.get("stem_activation") == "relu") == minimal


def test_family_from_hub_folder_config(tmp_path: Path, small_state: dict) -> None:
    """The Hugging Face repo layout: model.safetensors + config.json."""
    safetensors_torch.save_file(small_state, str(tmp_path / "model.safetensors"))
    config = {
        "architecture": "mobilenetv3_small_100",
        "pretrained_cfg": {"mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]},
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert timm_weights.detect(str(tmp_path))
    checkpoint = timm_weights.read(str(tmp_path))
    assert checkpoint.backbone_config["padding"] == "symmetric"
    assert checkpoint.backbone_config["preprocessing"] == "unit"


def test_headless_checkpoint_gives_a_backbone(tmp_path: Path) -> None:
    path = tmp_path / "mobilenetv3_small_100.safetensors"
    state = timm.create_model("mobilenetv3_small_100", num_classes=0).state_dict()
    safetensors_torch.save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    checkpoint = timm_weights.read(str(path))
    assert checkpoint.num_classes is None
    model = models.build_model(checkpoint)
    assert type(model).__name__ == "MobileNetV3Backbone"


def test_unknown_family_asks_for_variant(tmp_path: Path, small_state: dict) -> None:
    path = tmp_path / "weights.safetensors"
    safetensors_torch.save_file(small_state, str(path))
    with pytest.raises(ValueError, match="variant"):
        timm_weights.read(str(path))
    assert timm_weights.read(str(path), variant="mobilenetv3_small_100").backbone_config["bn_epsilon"] == 1e-5
    assert timm_weights.read(str(path), tf_padding=True).backbone_config["padding"] == "same"
    with pytest.raises(ValueError, match="variant"):
        timm_weights.read(str(path), variant="resnet50")


def test_name_contradicting_tensors_is_refused(tmp_path: Path, small_state: dict) -> None:
    path = tmp_path / "mobilenetv3_large_100.safetensors"
    safetensors_torch.save_file(small_state, str(path))
    with pytest.raises(ValueError, match="disagree"):
        timm_weights.read(str(path))


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_truncated_file_gives_clear_error(tmp_path: Path, small_state: dict, suffix: str) -> None:
    path = tmp_path / f"mobilenetv3_small_100{suffix}"
    if suffix == ".pth":
        torch.save(small_state, str(path))
    else:
        safetensors_torch.save_file(small_state, str(path))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert not timm_weights.detect(str(path))
    with pytest.raises(ValueError, match="truncated or corrupted"):
        timm_weights.read(str(path))


def test_detect_rejects_other_files(tmp_path: Path) -> None:
    other = tmp_path / "other.safetensors"
    safetensors_torch.save_file({"features.0.0.weight": torch.zeros(16, 3, 3, 3)}, str(other))
    assert not timm_weights.detect(str(other))
    assert not timm_weights.detect(str(tmp_path / "missing.pth"))
    assert timm_weights.detect("hf://timm/mobilenetv3_large_100.ra_in1k")
