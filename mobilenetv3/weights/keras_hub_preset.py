"""keras-hub MobileNet preset folders (`keras_hub>MobileNetBackbone`).

keras-hub's `MobileNetBackbone` presets (`mobilenet_v3_small_050_imagenet`,
`..._small_100_...`, `..._large_100_...`, `..._large_100_imagenet_21k`,
ported from timm) are a folder: `config.json` (the backbone's `stackwise_*`
lists, absolute channel counts per block), `model.weights.h5` (Keras 3
layout, see `keras3_h5`), and for a classifier `task.json` +
`task.weights.h5` (pool, 1x1 conv with bias and hard-swish, Dense) and
`preprocessor.json` / `image_converter.json` (scale and offset).

keras-hub's arithmetic is timm's: symmetric padding (`ZeroPadding2D(k // 2)`
before every conv), BatchNorm epsilon 1e-5 and hard-sigmoid gates. `read`
maps the config to ours (absolute expansions become ratios of the block's
input channels) and checks every layer the translation relies on; it needs
neither keras-hub nor the model, only `json` and `h5py`.

Example:

```python
from mobilenetv3 import weights
from mobilenetv3.weights import keras_hub_preset

checkpoint = keras_hub_preset.read("mobilenet_v3_large_100_imagenet/")
model = models.build_model(checkpoint)  # classifier when the folder has a task
```
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from mobilenetv3.core.architectures import make_divisible
from mobilenetv3.core.normalization import PREPROCESSING_MODES, scale_and_offset
from mobilenetv3.weights import Checkpoint, keras3_h5

FORMAT = "keras-hub"
BACKBONE_CLASS = "keras_hub>MobileNetBackbone"
_STEM_FILTERS = 16
_LAST_EXPANSION = 6
_CONVERTER_FILES = ("preprocessor.json", "image_converter.json")
_BN = ("gamma", "beta", "moving_mean", "moving_variance")


def detect(path: str | os.PathLike) -> bool:
    """Whether `path` is a keras-hub `MobileNetBackbone` preset folder."""
    try:
        return _load_json(Path(path) / "config.json").get("registered_name") == BACKBONE_CLASS
    except ValueError:
        return False


def read(path: str | os.PathLike) -> Checkpoint:
    """Read a keras-hub MobileNet preset folder into canonical tensors.

    Args:
        path: the preset folder (as downloaded from
            `kaggle://keras/mobilenetv3/keras/<preset>` or written by
            keras-hub's `save_to_preset`).

    Returns:
        A `Checkpoint`: a classifier (paper head: keras-hub's `classifier_conv`
        is our `Conv_2`, its Dense our `Logits`) when the folder holds a
        `MobileNetImageClassifier`, else a backbone.

    Raises:
        ValueError: not a keras-hub MobileNet preset, or a configuration this
            package's backbone cannot express (named).
    """
    folder = Path(path)
    spec = _load_json(folder / "config.json")
    if spec.get("registered_name") != BACKBONE_CLASS:
        raise ValueError(f"{folder} is not a keras-hub MobileNetBackbone preset ({BACKBONE_CLASS}).")
    config = backbone_config(spec["config"], str(folder))
    config.update(preprocessing_config(folder))
    groups = keras3_h5.read_groups(folder / "model.weights.h5")
    tensors = backbone_tensors(groups, len(config["stackwise_filters"]) - 1, str(folder))
    head = _head_tensors(folder)
    tensors.update(head)
    num_classes = int(head["Logits/bias"].shape[0]) if head else None
    return Checkpoint(
        tensors=tensors,
        backbone_config=config,
        num_classes=num_classes,
        head="paper" if head else None,
        head_filters=int(head["Conv_2/bias"].shape[0]) if head else None,
        head_activation="hard_swish",
        source=f"keras-hub preset {folder}",
        task="classifier" if head else None,
    )


def metadata(path: str | os.PathLike) -> dict[str, Any]:
    """Where the preset came from, for the converted preset's metadata."""
    folder = Path(path)
    found: dict[str, Any] = {"source": FORMAT, "file": folder.name}
    meta = folder / "metadata.json"
    if meta.is_file():
        info = _load_json(meta)
        found.update({k: info[k] for k in ("keras_hub_version", "tasks") if k in info})
    return found


# -- config ------------------------------------------------------------------


def backbone_config(hub: dict[str, Any], source: str) -> dict[str, Any]:
    """Our backbone arguments for a keras-hub `MobileNetBackbone` config."""
    stem = make_divisible(hub.get("input_num_filters", _STEM_FILTERS))
    rows = [_depthwise_row(hub, stem, source)]
    channels = rows[0][1]
    for stage in range(len(hub["stackwise_num_blocks"])):
        for i in range(hub["stackwise_num_blocks"][stage]):
            row = _inverted_row(hub, stage, i, channels, source)
            rows.append(row)
            channels = row[1]
    last = make_divisible(hub["last_layer_filter"])
    if last != make_divisible(channels * _LAST_EXPANSION):
        raise ValueError(f"{source}: last conv width {last} is not 6x the last block's {channels}.")
    columns = ("expansion", "filters", "kernel_size", "stride", "se_ratio", "activation")
    config = {f"stackwise_{name}": [row[j] for row in rows] for j, name in enumerate(columns)}
    shape = hub.get("image_shape") or (None, None, 3)
    return {
        **config,
        "alpha": 1.0,
        "stem_filters": stem,
        "input_shape": tuple(shape),
        "padding": "symmetric",
        "bn_epsilon": 1e-5,
        "stem_activation": hub.get("input_activation", "hard_swish"),
        "last_activation": "hard_swish",
    }


def _depthwise_row(hub: dict[str, Any], stem: int, source: str) -> tuple:
    filters, stride = make_divisible(hub["depthwise_filters"]), hub["depthwise_stride"]
    if bool(hub.get("depthwise_residual")) != (stride == 1 and filters == stem):
        raise ValueError(f"{source}: first block residual={hub.get('depthwise_residual')} is not ours.")
    return (1, filters, 3, stride, hub.get("squeeze_and_excite"), "relu")


def _inverted_row(hub: dict[str, Any], stage: int, i: int, channels: int, source: str) -> tuple:
    column = lambda name: hub[f"stackwise_{name}"][stage][i]  # noqa: E731
    expanded, kernel = make_divisible(column("expansion")), column("kernel_size")
    if expanded == channels or column("padding") != kernel // 2:
        raise ValueError(
            f"{source}: block {stage + 1}_{i} (expansion {expanded} on {channels} channels, "
            f"kernel {kernel}, padding {column('padding')}) has no MobileNetV3 equivalent here."
        )
    ratio = expanded / channels
    if make_divisible(channels * ratio) != expanded:
        raise ValueError(f"{source}: block {stage + 1}_{i} expansion {expanded} is not expressible.")
    return (ratio, make_divisible(column("num_filters")), kernel, column("num_strides"),
            column("se_ratio") or None, column("activation"))


def preprocessing_config(folder: Path) -> dict[str, Any]:
    """`include_rescaling` / `preprocessing` from the folder's image converter
    (none: the backbone takes already-preprocessed images, as keras-hub's)."""
    for name in _CONVERTER_FILES:
        if (folder / name).is_file():
            converter = _find_converter(_load_json(folder / name))
            if converter is not None:
                return {"include_rescaling": True, "preprocessing": _match_preprocessing(converter, folder / name)}
    return {"include_rescaling": False}


def _find_converter(spec: dict[str, Any]) -> dict[str, Any] | None:
    config = spec.get("config", {})
    if "scale" in config:
        return config
    inner = config.get("image_converter")
    return inner.get("config") if isinstance(inner, dict) else None


def _match_preprocessing(converter: dict[str, Any], file: Path) -> str:
    scale = np.broadcast_to(np.asarray(converter.get("scale") or 1.0, np.float64), (3,))
    offset = np.broadcast_to(np.asarray(converter.get("offset") or 0.0, np.float64), (3,))
    for name in PREPROCESSING_MODES:
        ours_scale, ours_offset = scale_and_offset(name)
        if np.allclose(scale, ours_scale, rtol=1e-4) and np.allclose(offset, ours_offset, atol=1e-4):
            return name
    raise ValueError(
        f"{file}: image converter scale {scale.tolist()} / offset {offset.tolist()} match none of "
        f"this package's preprocessing modes {list(PREPROCESSING_MODES)}."
    )


# -- tensors -----------------------------------------------------------------


def backbone_tensors(groups: dict[str, list[np.ndarray]], num_inverted: int, source: str) -> dict[str, np.ndarray]:
    """Canonical tensors of a `MobileNetBackbone`'s `model.weights.h5` groups."""
    inverted = keras3_h5.numbered(groups, "inverted_residual_block")
    if len(inverted) != num_inverted:
        raise ValueError(f"{source}: {len(inverted)} inverted-residual blocks in the weights, {num_inverted} in the config.")
    tensors: dict[str, np.ndarray] = {}
    _put_conv(tensors, groups, "layers/conv2d", "Conv")
    _put_bn(tensors, groups, "layers/batch_normalization", "Conv_BatchNorm")
    first = "layers/depthwise_conv_block"
    _put_conv(tensors, groups, f"{first}/conv1", "expanded_conv_depthwise", depthwise=True)
    _put_bn(tensors, groups, f"{first}/batch_normalization1", "expanded_conv_depthwise_BatchNorm")
    _put_se(tensors, groups, f"{first}/se_layer", "expanded_conv_")
    _put_conv(tensors, groups, f"{first}/conv2", "expanded_conv_project")
    _put_bn(tensors, groups, f"{first}/batch_normalization2", "expanded_conv_project_BatchNorm")
    for index, name in enumerate(inverted, start=1):
        theirs, ours = f"layers/{name}", f"expanded_conv_{index}_"
        for conv, suffix, depthwise in (("conv1", "expand", False), ("conv2", "depthwise", True), ("conv3", "project", False)):
            _put_conv(tensors, groups, f"{theirs}/{conv}", ours + suffix, depthwise=depthwise)
        for number, suffix in ((1, "expand"), (2, "depthwise"), (3, "project")):
            _put_bn(tensors, groups, f"{theirs}/batch_normalization{number}", f"{ours}{suffix}_BatchNorm")
        _put_se(tensors, groups, f"{theirs}/squeeze_excite", ours)
    _put_conv(tensors, groups, "layers/conv_bn_act_block/conv", "Conv_1")
    _put_bn(tensors, groups, "layers/conv_bn_act_block/batch_normalization", "Conv_1_BatchNorm")
    return tensors


def _head_tensors(folder: Path) -> dict[str, np.ndarray]:
    task = folder / "task.json"
    if not task.is_file() or not (folder / "task.weights.h5").is_file():
        return {}
    if _load_json(task).get("registered_name") != "keras_hub>MobileNetImageClassifier":
        return {}
    groups = keras3_h5.read_groups(folder / "task.weights.h5")
    tensors: dict[str, np.ndarray] = {}
    _put_conv(tensors, groups, "layers/conv2d", "Conv_2")
    kernel, bias = groups["layers/dense"]
    tensors["Logits/kernel"], tensors["Logits/bias"] = kernel[None, None], bias
    return tensors


def _put_conv(tensors: dict, groups: dict, theirs: str, ours: str, depthwise: bool = False) -> None:
    """Map a conv; absent groups are left for `canonical.assign` to name."""
    if theirs not in groups:
        return
    kernel, *bias = groups[theirs]
    tensors[f"{ours}/kernel"] = kernel.transpose(0, 1, 3, 2) if depthwise else kernel  # (k,k,1,C) grouped
    if bias:
        tensors[f"{ours}/bias"] = bias[0]


def _put_bn(tensors: dict, groups: dict, theirs: str, ours: str) -> None:
    if theirs in groups:
        tensors.update({f"{ours}/{name}": value for name, value in zip(_BN, groups[theirs])})


def _put_se(tensors: dict, groups: dict, theirs: str, ours: str) -> None:
    _put_conv(tensors, groups, f"{theirs}/conv_reduce", f"{ours}squeeze_excite/squeeze_conv")
    _put_conv(tensors, groups, f"{theirs}/conv_expand", f"{ours}squeeze_excite/excite_conv")


def _load_json(file: Path) -> dict[str, Any]:
    try:
        spec = json.loads(file.read_text())
    except (OSError, ValueError) as error:
        raise ValueError(f"{file} is not a readable JSON file: {error}") from None
    if not isinstance(spec, dict):
        raise ValueError(f"{file} does not hold a JSON object.")
    return spec


__all__ = ["backbone_config", "backbone_tensors", "detect", "metadata", "preprocessing_config", "read"]
