"""timm MobileNetV3 checkpoints (`.safetensors` or `.pth` state dicts).

timm has two families with the same tensors but different arithmetic:

| timm model | padding | BN epsilon | preprocessing |
|---|---|---|---|
| `mobilenetv3_*` | symmetric (PyTorch) | 1e-5 | "imagenet" mean/std |
| `tf_mobilenetv3_*` | TF "SAME" | 1e-3 | "symmetric" (mean = std = 0.5) |

The tensors tell the architecture (Small or Large, minimalistic or not, the
width) but not the family, so `read` takes it from, in this order:

1. `variant=`: the timm model name, e.g. "tf_mobilenetv3_large_100" (a
   pretrained tag such as ".miil_in21k_ft_in1k" may follow);
2. `tf_padding=`: True for the `tf_` conventions, False for the others;
3. a `config.json` next to the weights (the Hugging Face `timm/<model>` repo
   layout) naming the architecture and its mean/std;
4. the file or folder name, e.g. `tf_mobilenetv3_small_minimal_100.safetensors`
   or the HF cache folder `models--timm--mobilenetv3_large_100.ra_in1k`.

Without any of them `read` raises rather than guess: the wrong padding
gives plausible but wrong numbers. `path` may also be a folder holding
`model.safetensors` or `pytorch_model.bin`, or an `hf://timm/<model>` handle
(downloaded with `huggingface_hub`).

Example:

```python
from mobilenetv3.presets import loader
from mobilenetv3.weights import timm as timm_weights

checkpoint = timm_weights.read("tf_mobilenetv3_large_100.safetensors")
model = loader.build_model(checkpoint)  # classifier with timm's 1000 classes
```
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from mobilenetv3.core.architectures import block_prefix
from mobilenetv3.core.normalization import ImagePolicy, mode_of
from mobilenetv3.weights import Checkpoint
from mobilenetv3.weights._torch import load_state_dict
from mobilenetv3.weights.architecture_inference import Architecture, BlockFacts, infer_architecture

_NAME_RE = re.compile(r"(tf_)?mobilenetv3_(?:(large|small)(_minimal)?_(\d{3})(d)?|(rw))(?:\.(?!(?:safetensors|pth|pt|bin|ckpt)\b)(\w+))?")
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
_BN_NAMES = {
    "weight": "gamma",
    "bias": "beta",
    "running_mean": "moving_mean",
    "running_var": "moving_variance",
}
# timm layer -> our layer suffix, for the two block types.
_IR_LAYERS = {"conv_pw": "expand", "conv_dw": "depthwise", "conv_pwl": "project"}
_IR_NORMS = {"bn1": "expand", "bn2": "depthwise", "bn3": "project"}
_DS_LAYERS = {"conv_dw": "depthwise", "conv_pw": "project"}
_DS_NORMS = {"bn1": "depthwise", "bn2": "project"}


@dataclasses.dataclass(frozen=True)
class PretrainedConfig:
    """timm's pretrained configuration of one tag (`timm.models.get_pretrained_cfg`)."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    input_size: tuple[int, int]
    crop_pct: float
    test_input_size: tuple[int, int] | None
    num_classes: int
    interpolation: str = "bilinear"


# Every `mobilenetv3_*` / `tf_mobilenetv3_*` tag timm 1.0 registers, as
# `timm.models.get_pretrained_cfg` gives it (tests check this table against
# the installed timm). A file's preprocessing comes from here, by tag.
PRETRAINED_CFGS: dict[str, PretrainedConfig] = {
    "mobilenetv3_large_075.untrained": PretrainedConfig((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), (224, 224), 0.875, None, 1000),
    "mobilenetv3_large_100.ra_in1k": PretrainedConfig((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), (224, 224), 0.875, None, 1000, "bicubic"),
    "mobilenetv3_large_100.ra4_e3600_r224_in1k": PretrainedConfig((0.5, 0.5, 0.5), (0.5, 0.5, 0.5), (224, 224), 0.95, (256, 256), 1000, "bicubic"),
    "mobilenetv3_large_100.miil_in21k_ft_in1k": PretrainedConfig((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), (224, 224), 0.875, None, 1000),
    "mobilenetv3_large_100.miil_in21k": PretrainedConfig((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), (224, 224), 0.875, None, 11221),
    "mobilenetv3_large_150d.ra4_e3600_r256_in1k": PretrainedConfig((0.5, 0.5, 0.5), (0.5, 0.5, 0.5), (256, 256), 0.95, (320, 320), 1000),
    "mobilenetv3_rw.rmsp_in1k": PretrainedConfig((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), (224, 224), 0.875, None, 1000, "bicubic"),
    "mobilenetv3_small_050.lamb_in1k": PretrainedConfig((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), (224, 224), 0.875, None, 1000, "bicubic"),
    "mobilenetv3_small_075.lamb_in1k": PretrainedConfig((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), (224, 224), 0.875, None, 1000, "bicubic"),
    "mobilenetv3_small_100.lamb_in1k": PretrainedConfig((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), (224, 224), 0.875, None, 1000, "bicubic"),
    "tf_mobilenetv3_large_075.in1k": PretrainedConfig((0.5, 0.5, 0.5), (0.5, 0.5, 0.5), (224, 224), 0.875, None, 1000),
    "tf_mobilenetv3_large_100.in1k": PretrainedConfig((0.5, 0.5, 0.5), (0.5, 0.5, 0.5), (224, 224), 0.875, None, 1000),
    "tf_mobilenetv3_large_minimal_100.in1k": PretrainedConfig((0.5, 0.5, 0.5), (0.5, 0.5, 0.5), (224, 224), 0.875, None, 1000),
    "tf_mobilenetv3_small_075.in1k": PretrainedConfig((0.5, 0.5, 0.5), (0.5, 0.5, 0.5), (224, 224), 0.875, None, 1000),
    "tf_mobilenetv3_small_100.in1k": PretrainedConfig((0.5, 0.5, 0.5), (0.5, 0.5, 0.5), (224, 224), 0.875, None, 1000),
    "tf_mobilenetv3_small_minimal_100.in1k": PretrainedConfig((0.5, 0.5, 0.5), (0.5, 0.5, 0.5), (224, 224), 0.875, None, 1000),
}


@dataclasses.dataclass(frozen=True)
class Conventions:
    """The arithmetic a timm family was trained with."""

    tf_padding: bool
    preprocessing: str
    model_name: str | None = None
    pretrained_tag: str | None = None
    rw: bool = False

    def backbone_config(self) -> dict[str, Any]:
        if self.rw:  # timm's first MobileNetV3 port: eps 1e-3, SE rounded plainly, act = block's
            return {
                "padding": "symmetric",
                "bn_epsilon": 1e-3,
                "preprocessing": self.preprocessing,
                "se_divisor": 1,
                "se_activation": "block",
                "first_block_residual": False,
            }
        return {
            "padding": "same" if self.tf_padding else "symmetric",
            "bn_epsilon": 1e-3 if self.tf_padding else 1e-5,
            "preprocessing": self.preprocessing,
        }


def detect(path: str) -> bool:
    """Whether `path` is a timm MobileNetV3 state dict (or an `hf://timm/` handle)."""
    path = str(path)
    if path.startswith("hf://"):
        return path.startswith("hf://timm/") and "mobilenetv3" in path
    try:
        keys = _tensor_names(_weights_file(Path(path)))
    except (ValueError, OSError):
        return False
    return "conv_stem.weight" in keys and "blocks.0.0.conv_dw.weight" in keys


def read(path: str, variant: str | None = None, tf_padding: bool | None = None) -> Checkpoint:
    """Read a timm MobileNetV3 checkpoint into canonical tensors.

    Args:
        path: a `.safetensors` or `.pth` file, a folder holding one (with its
            `config.json`), or `hf://timm/<model>`.
        variant: the timm model name, e.g. "mobilenetv3_small_075" or
            "tf_mobilenetv3_large_100.in1k"; decides padding, BN epsilon and
            preprocessing, and is checked against the tensors.
        tf_padding: instead of `variant`: True for `tf_mobilenetv3_*`
            (TF "SAME" padding, eps 1e-3, [-1, 1] inputs), False for
            `mobilenetv3_*` (symmetric padding, eps 1e-5, ImageNet mean/std).

    Returns:
        A `Checkpoint`: a classifier ("paper" head) when the file has timm's
        classifier, else a backbone.

    Raises:
        ValueError: the file is unreadable, not a MobileNetV3, contradicts
            `variant`, or its family cannot be told (pass `variant`).
    """
    path = str(path)
    if path.startswith("hf://"):
        path = _download(path)
    file = _weights_file(Path(path))
    state = _load_state_dict(file)
    blocks, last_stage = _block_prefixes(state, file)
    architecture = infer_architecture([_block_facts(state, p) for p in blocks], str(file))
    conventions = _conventions(file, variant, tf_padding, architecture)
    tensors = _canonical_tensors(state, blocks, last_stage)
    num_classes = int(state["classifier.weight"].shape[0]) if "classifier.weight" in state else None
    if num_classes and "conv_head.weight" not in state:
        raise ValueError(f"{file} has a classifier but no conv_head; it is not a timm MobileNetV3.")
    head_filters = int(state["conv_head.weight"].shape[0]) if num_classes else None
    return Checkpoint(
        tensors=tensors,
        backbone_config={
            **architecture.backbone_config(),
            **conventions.backbone_config(),
            **_stem_config(state),
        },
        num_classes=num_classes,
        head="paper" if num_classes else None,
        head_filters=head_filters,
        head_activation="relu" if architecture.minimalistic else "hard_swish",
        source=f"timm checkpoint {file}",
        metadata=_metadata(file, conventions),
        preprocessing=data_config(conventions.pretrained_tag),
    )


def data_config(tag: str | None) -> ImagePolicy | None:
    """timm's evaluation transform for a pretrained tag, as an image policy
    (input size, `crop_pct`, interpolation, mean / std), or None when the
    tag is unknown (the model's own config then decides).

    Example:

    ```python
    data_config("mobilenetv3_large_100.ra_in1k").resize_size  # 256: floor(224 / 0.875)
    ```
    """
    if tag is None or tag not in PRETRAINED_CFGS:
        return None
    cfg = PRETRAINED_CFGS[tag]
    return ImagePolicy.from_mean_std(cfg.mean, cfg.std, cfg.input_size[0], cfg.crop_pct, cfg.interpolation)


def _metadata(file: Path, conventions: Conventions) -> dict[str, Any]:
    """Source, file and tag (with timm's preprocessing for it) of a checkpoint."""
    model = conventions.model_name.split(".")[0] if conventions.model_name else None
    found: dict[str, Any] = {"source": "timm", "file": file.name, "model": model}
    if conventions.pretrained_tag:
        cfg = PRETRAINED_CFGS[conventions.pretrained_tag]
        found.update(tag=conventions.pretrained_tag, **dataclasses.asdict(cfg))
    return found


def _stem_config(state: dict[str, np.ndarray]) -> dict[str, Any]:
    """`stem_filters` when the stem is not 16 wide (timm scales it with the width)."""
    stem = int(state["conv_stem.weight"].shape[0])
    return {} if stem == 16 else {"stem_filters": stem}


# -- reading files -----------------------------------------------------------


def _weights_file(path: Path) -> Path:
    if path.is_dir():
        for name in _WEIGHT_FILES:
            if (path / name).is_file():
                return path / name
        raise ValueError(f"Folder {path} holds none of {list(_WEIGHT_FILES)}.")
    if not path.is_file():
        raise ValueError(f"No such weights file: {path}.")
    return path


def _tensor_names(file: Path) -> set[str]:
    if file.suffix == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(file), framework="numpy") as handle:
                return set(handle.keys())
        except Exception as error:  # safetensors raises its own error types.
            raise ValueError(f"{file} is not a readable safetensors file: {error}") from None
    if file.suffix in _TORCH_SUFFIXES:
        return set(_load_state_dict(file))
    return set()


def _load_state_dict(file: Path) -> dict[str, np.ndarray]:
    """Every tensor of the file as float32 numpy, without unpickling code."""
    if file.suffix == ".safetensors":
        from safetensors.numpy import load_file

        try:
            state = load_file(str(file))
        except Exception as error:
            raise ValueError(
                f"{file} is not a readable safetensors file (truncated or corrupted?): {error}"
            ) from None
    else:
        state = _load_torch(file)
    return {k: np.asarray(v, dtype=np.float32) for k, v in state.items() if not k.endswith("num_batches_tracked")}


def _load_torch(file: Path) -> dict[str, Any]:
    return load_state_dict(file)  # CRC-checked, weights_only=True


def _download(handle: str) -> str:
    repo = handle.removeprefix("hf://")
    try:
        import huggingface_hub

        folder = Path(huggingface_hub.hf_hub_download(repo, "config.json")).parent
        huggingface_hub.hf_hub_download(repo, "model.safetensors")
    except ImportError:
        raise ValueError(f"Reading {handle} needs `huggingface_hub` (pip install huggingface_hub).") from None
    except Exception as error:  # the hub raises many types.
        raise ValueError(
            f"Could not download {handle}: {type(error).__name__}: {str(error)[:200]}. Offline, "
            "download the repo elsewhere and pass its folder."
        ) from None
    return str(folder)


# -- family and conventions --------------------------------------------------


def _conventions(
    file: Path, variant: str | None, tf_padding: bool | None, architecture: Architecture
) -> Conventions:
    name, stats = variant, None
    config = _hub_config(file)
    if name is None and config:
        name = config.get("architecture")
        cfg = config.get("pretrained_cfg") or {}
        stats = (cfg.get("mean"), cfg.get("std")) if cfg.get("mean") else None
    if name is None:
        name = next((m.group(0) for part in (file.name, *[p.name for p in file.parents]) if (m := _NAME_RE.search(part))), None)
    match = _NAME_RE.search(name) if name else None
    if variant is not None and not match:
        raise ValueError(
            f"`variant` must be a timm MobileNetV3 model name such as 'mobilenetv3_large_100' "
            f"or 'tf_mobilenetv3_small_minimal_100'; got {variant!r}."
        )
    if match:
        _check_name_matches(match, architecture, file)
    if tf_padding is None and match is None:
        raise ValueError(
            f"Cannot tell whether {file} is a timm `mobilenetv3_*` (symmetric padding, eps 1e-5) "
            "or `tf_mobilenetv3_*` (TF 'SAME' padding, eps 1e-3) checkpoint: the tensors are the "
            "same. Pass variant='<timm model name>' (CLI: --variant) or tf_padding=True/False, "
            "or name the file after the model, e.g. tf_mobilenetv3_large_100.safetensors."
        )
    is_tf = bool(match.group(1)) if tf_padding is None else bool(tf_padding)
    tag = pretrained_tag(match, file) if match and stats is None else None
    if tag is not None:
        stats = (PRETRAINED_CFGS[tag].mean, PRETRAINED_CFGS[tag].std)
    preprocessing = _preprocessing(stats, is_tf)
    rw = bool(match and match.group(6))
    return Conventions(is_tf, preprocessing, match.group(0) if match else None, tag, rw)


def pretrained_tag(match: re.Match, file: Path | str) -> str | None:
    """The `model.tag` key of `PRETRAINED_CFGS` a timm name stands for. A
    name without a tag is enough when every tag of the model shares one
    preprocessing; otherwise the tag must be given.

    Raises:
        ValueError: an unknown tag, or a missing tag that matters.
    """
    model = match.group(0).split(".")[0]
    tags = {key: cfg for key, cfg in PRETRAINED_CFGS.items() if key.split(".")[0] == model}
    if match.group(7):
        key = f"{model}.{match.group(7)}"
        if key not in PRETRAINED_CFGS:
            raise ValueError(f"{file}: timm has no pretrained tag {key!r}; its tags of {model}: {sorted(tags)}.")
        return key
    if len({(cfg.mean, cfg.std) for cfg in tags.values()}) > 1:
        choices = {key: f"mean {cfg.mean} std {cfg.std}" for key, cfg in tags.items()}
        raise ValueError(
            f"{file} does not say which pretrained tag of {model} it holds, and timm's tags use "
            f"different preprocessing: {choices}. Pass variant='<model>.<tag>' (CLI: --variant), "
            "name the file after the tag, or keep the Hugging Face config.json next to it."
        )
    return next(iter(tags), None)


def _hub_config(file: Path) -> dict | None:
    config_path = file.parent / "config.json"
    if not config_path.is_file():
        return None
    try:
        config = json.loads(config_path.read_text())
    except (ValueError, OSError):
        return None
    return config if isinstance(config, dict) and "architecture" in config else None


def _check_name_matches(match: re.Match, architecture: Architecture, file: Path) -> None:
    if match.group(6):  # mobilenetv3_rw: Large's table at width 1
        family, minimal, width, deep = "large", False, 1.0, False
    else:
        family, minimal, width = match.group(2), bool(match.group(3)), int(match.group(4)) / 100
        deep = bool(match.group(5))
    found = (architecture.family, architecture.minimalistic, architecture.alpha, architecture.depth_multiplier != 1)
    if (family, minimal, width, deep) != found:
        raise ValueError(
            f"{file} is named {match.group(0)!r}, but its tensors hold a "
            f"{architecture.description}: the name and the weights disagree."
        )


def _preprocessing(stats: tuple | None, is_tf: bool) -> str:
    if stats is not None:
        return mode_of(*stats)
    return "symmetric" if is_tf else "imagenet"  # only with tf_padding= and no name


# -- tensors -----------------------------------------------------------------


def _block_prefixes(state: dict[str, np.ndarray], file: Path) -> tuple[list[str], list[str]]:
    """`blocks.S.B` prefixes of the inverted-residual blocks in order, and the
    last 1x1 convs' (two with a depth multiplier)."""
    pattern = re.compile(r"blocks\.(\d+)\.(\d+)\.conv_dw\.weight")
    found = sorted((int(m.group(1)), int(m.group(2))) for k in state if (m := pattern.fullmatch(k)))
    last = sorted(k for k in state if re.fullmatch(r"blocks\.\d+\.\d+\.conv\.weight", k))
    if "conv_stem.weight" not in state or not found or len({k.split(".")[1] for k in last}) != 1:
        raise ValueError(
            f"{file} is not a timm MobileNetV3 state dict: it lacks conv_stem, blocks.*.conv_dw "
            f"or a single last conv (blocks.N.0.conv). First keys: {sorted(state)[:5]}."
        )
    return [f"blocks.{s}.{b}" for s, b in found], [k.removesuffix(".conv.weight") for k in last]


def _block_facts(state: dict[str, np.ndarray], prefix: str) -> BlockFacts:
    output = state.get(f"{prefix}.conv_pwl.weight", state.get(f"{prefix}.conv_pw.weight"))
    return BlockFacts(
        kernel_size=int(state[f"{prefix}.conv_dw.weight"].shape[-1]),
        has_se=f"{prefix}.se.conv_reduce.weight" in state,
        out_channels=int(output.shape[0]),
    )


def _canonical_tensors(state: dict[str, np.ndarray], blocks: list[str], last: list[str]) -> dict[str, np.ndarray]:
    tensors: dict[str, np.ndarray] = {}
    _conv(tensors, state, "conv_stem", "Conv")
    _norm(tensors, state, "bn1", "Conv_BatchNorm")
    for index, prefix in enumerate(blocks):
        ours = block_prefix(index)
        inverted = f"{prefix}.conv_pwl.weight" in state
        layers, norms = (_IR_LAYERS, _IR_NORMS) if inverted else (_DS_LAYERS, _DS_NORMS)
        for theirs, suffix in layers.items():
            _conv(tensors, state, f"{prefix}.{theirs}", ours + suffix)
        for theirs, suffix in norms.items():
            _norm(tensors, state, f"{prefix}.{theirs}", f"{ours}{suffix}_BatchNorm")
        if f"{prefix}.se.conv_reduce.weight" in state:
            _conv(tensors, state, f"{prefix}.se.conv_reduce", f"{ours}squeeze_excite/squeeze_conv")
            _conv(tensors, state, f"{prefix}.se.conv_expand", f"{ours}squeeze_excite/excite_conv")
    for repeat, prefix in enumerate(last):
        ours = f"Conv_1_repeat_{repeat}" if repeat else "Conv_1"
        _conv(tensors, state, f"{prefix}.conv", ours)
        _norm(tensors, state, f"{prefix}.bn1", f"{ours}_BatchNorm")
    if "classifier.weight" in state:
        _conv(tensors, state, "conv_head", "Conv_2")
        if "conv_head.bias" not in state:  # mobilenetv3_rw: a head conv without bias
            tensors["Conv_2/bias"] = np.zeros(state["conv_head.weight"].shape[0], np.float32)
        tensors["Logits/kernel"] = state["classifier.weight"].T[None, None]
        tensors["Logits/bias"] = state["classifier.bias"]
    return tensors


def _conv(tensors: dict, state: dict, theirs: str, ours: str) -> None:
    """Map one conv; a missing tensor is left for `canonical.assign` to name."""
    weight = state.get(f"{theirs}.weight")
    if weight is None:
        return
    if weight.shape[1] == 1 and theirs.endswith("conv_dw"):
        tensors[f"{ours}/kernel"] = weight.transpose(2, 3, 0, 1)  # (C,1,k,k) -> (k,k,C,1)
    else:
        tensors[f"{ours}/kernel"] = weight.transpose(2, 3, 1, 0)  # OIHW -> HWIO
    if f"{theirs}.bias" in state:
        tensors[f"{ours}/bias"] = state[f"{theirs}.bias"]


def _norm(tensors: dict, state: dict, theirs: str, ours: str) -> None:
    for their_name, our_name in _BN_NAMES.items():
        if f"{theirs}.{their_name}" in state:
            tensors[f"{ours}/{our_name}"] = state[f"{theirs}.{their_name}"]


__all__ = ["PRETRAINED_CFGS", "PretrainedConfig", "detect", "pretrained_tag", "read"]
