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

from mobilenetv3.presets import conversion, loader
from mobilenetv3.weights import timm as timm_weights

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")
safetensors_torch = pytest.importorskip("safetensors.torch")

TOLERANCE = 1e-4
SIZES = [(224, 224), (193, 257)]
# One per family and normalisation (the fast suite); every tag: test_every_timm_tag.
MODELS = [
    "mobilenetv3_large_100.ra4_e3600_r224_in1k",  # mean = std = 0.5
    "mobilenetv3_small_075",  # one tag (lamb_in1k): no tag needed
    "tf_mobilenetv3_large_100",
    "tf_mobilenetv3_small_minimal_100",
    "mobilenetv3_rw",  # eps 1e-3, SE widths not rounded to 8, SE act = block act, no first skip, head conv without bias
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
    assert checkpoint.backbone_config["bn_epsilon"] == (1e-3 if tf_family or "_rw" in name else 1e-5)

    model = loader.build_model(checkpoint)
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
    wrong = loader.build_model(timm_weights.read(str(path), tf_padding=False))
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
    model = loader.build_model(checkpoint)
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


def test_pretrained_table_is_timms() -> None:
    """`PRETRAINED_CFGS` is exactly what the installed timm registers."""
    from timm.models import get_pretrained_cfg

    names = timm.list_models(["mobilenetv3_*", "tf_mobilenetv3_*"])
    tags = [tag for name in names for tag in timm.models._registry.get_arch_pretrained_cfgs(name)]
    assert sorted(tags) == sorted(timm_weights.PRETRAINED_CFGS)
    for tag, ours in timm_weights.PRETRAINED_CFGS.items():
        cfg = get_pretrained_cfg(tag)
        assert np.allclose(ours.mean, cfg.mean, atol=1e-3) and np.allclose(ours.std, cfg.std, atol=1e-3), tag
        assert ours.input_size == tuple(cfg.input_size[1:]) and ours.crop_pct == cfg.crop_pct, tag
        assert ours.num_classes == cfg.num_classes, tag
        assert ours.interpolation == cfg.interpolation and cfg.crop_mode == "center", tag


@pytest.mark.parametrize(
    "file, preprocessing",
    [
        ("mobilenetv3_large_100.ra4_e3600_r224_in1k.safetensors", "symmetric"),
        ("mobilenetv3_large_100.ra_in1k.safetensors", "imagenet"),
        ("mobilenetv3_large_100.miil_in21k_ft_in1k.safetensors", "unit"),
        ("tf_mobilenetv3_large_100.safetensors", "symmetric"),
    ],
)
def test_preprocessing_comes_from_the_tag(tmp_path: Path, file: str, preprocessing: str) -> None:
    state = timm.create_model(file.split(".")[0]).state_dict()
    safetensors_torch.save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / file))
    checkpoint = timm_weights.read(str(tmp_path / file))
    assert checkpoint.backbone_config["preprocessing"] == preprocessing
    assert checkpoint.metadata["source"] == "timm" and checkpoint.metadata["file"] == file


def test_untagged_file_of_a_model_with_several_normalisations_asks_for_the_tag(tmp_path: Path) -> None:
    path = tmp_path / "mobilenetv3_large_100.safetensors"
    state = timm.create_model("mobilenetv3_large_100").state_dict()
    safetensors_torch.save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    with pytest.raises(ValueError, match="which pretrained tag"):
        timm_weights.read(str(path))
    with pytest.raises(ValueError, match="no pretrained tag"):
        timm_weights.read(str(path), variant="mobilenetv3_large_100.imagenet_guess")
    checkpoint = timm_weights.read(str(path), variant="mobilenetv3_large_100.ra_in1k")
    assert checkpoint.metadata["tag"] == "mobilenetv3_large_100.ra_in1k"


def _every_tag() -> list[str]:
    return list(timm_weights.PRETRAINED_CFGS)


LARGE_150D = "mobilenetv3_large_150d.ra4_e3600_r256_in1k"


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(LARGE_150D, marks=pytest.mark.slow),
        *(pytest.param(tag, marks=pytest.mark.heavy) for tag in _every_tag() if tag != LARGE_150D),
    ],
)
def test_every_timm_tag(name: str, tmp_path: Path) -> None:
    """Every registered tag: the large_150d (width 1.5, depth 1.2, 21 blocks)
    in CI, the sweep opt-in (`-m heavy`; its figures are the table of docs/presets-and-weights.md
    from benchmarks/checkpoint_parity.py)."""
    reference = _random_timm_model(name)
    path, _ = _save(reference, tmp_path, name)
    model = loader.build_model(timm_weights.read(str(path)))
    for size in SIZES:
        feature_diff, logit_diff = _max_diffs(model, reference, size)
        assert feature_diff <= TOLERANCE and logit_diff <= TOLERANCE, (name, size, feature_diff, logit_diff)


def test_depth_multiplier_is_serialized() -> None:
    from mobilenetv3 import MobileNetV3Backbone
    from mobilenetv3.core.architectures import LARGE_BLOCKS, to_stackwise

    backbone = MobileNetV3Backbone(
        **to_stackwise(LARGE_BLOCKS), include_rescaling=False, alpha=1.5, stem_filters=24, depth_multiplier=1.2
    )
    config = backbone.get_config()
    assert config["depth_multiplier"] == 1.2 and config["stem_filters"] == 24
    assert len([layer for layer in backbone.layers if layer.name.endswith("_project")]) == 21
    assert backbone.feature_layers["last"] == "Conv_1_repeat_1_activation"
    assert MobileNetV3Backbone.from_config(config).count_params() == backbone.count_params()


def test_converted_preset_records_its_origin_and_info_shows_it(tmp_path: Path, capsys) -> None:
    from mobilenetv3.cli import main

    name = "mobilenetv3_small_100.lamb_in1k"
    path, _ = _save(timm.create_model(name), tmp_path, name)
    conversion.convert(str(path), str(tmp_path / "preset"))
    origin = json.loads((tmp_path / "preset" / "metadata.json").read_text())["origin"]
    assert origin["source"] == "timm" and origin["file"] == path.name and origin["tag"] == name
    assert origin["mean"] == [0.485, 0.456, 0.406] and origin["input_size"] == [224, 224]
    assert main(["info", str(tmp_path / "preset")]) == 0
    shown = capsys.readouterr().out
    assert "origin.tag" in shown and name in shown and "origin.crop_pct" in shown


def test_from_preset_converts_a_hugging_face_folder(tmp_path: Path, small_state: dict) -> None:
    """`from_preset` on timm's Hugging Face layout (what `hf://timm/<model>` downloads)."""
    from mobilenetv3 import MobileNetV3Backbone, MobileNetV3ImageClassifier

    safetensors_torch.save_file(small_state, str(tmp_path / "model.safetensors"))
    config = {
        "architecture": "mobilenetv3_small_100",
        "pretrained_cfg": {"tag": "lamb_in1k", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    classifier = MobileNetV3ImageClassifier.from_preset(str(tmp_path))
    assert classifier.num_classes == 1000 and classifier.backbone.preprocessing == "imagenet"
    backbone = MobileNetV3Backbone.from_preset(str(tmp_path), input_shape=(96, 96, 3))
    assert type(backbone) is MobileNetV3Backbone and backbone.bn_epsilon == 1e-5
    np.testing.assert_array_equal(backbone.get_weights()[0], classifier.backbone.get_weights()[0])
