"""torchvision MobileNetV3 and LR-ASPP state dicts.

Reads the `.pth` files of `torchvision.models.mobilenet_v3_{small,large}`
(keys `features.N...` and `classifier.0/3.*`) and of
`torchvision.models.segmentation.lraspp_mobilenet_v3_large` (keys
`backbone.N...` and `classifier.{cbr,scale,low_classifier,high_classifier}.*`)
into canonical tensors. Files are opened with `torch.load(...,
weights_only=True)`: nothing is unpickled.

torchvision pads stride-2 convolutions symmetrically, uses BatchNorm epsilon
1e-3 in the backbone and expects ImageNet mean/std inputs, so the backbone
config read from a file says `padding="symmetric"`, `bn_epsilon=1e-3` and
`preprocessing="imagenet"`. Small or Large and `reduced_tail` are read from
the tensors; dilation is not visible in weights, so an LR-ASPP file implies
torchvision's `dilated=True` (output stride 16).

Example:

```python
from mobilenetv3 import weights
checkpoint = weights.read("mobilenet_v3_large-8738ca79.pth", "torchvision")
model = weights.build_model(checkpoint)  # a MobileNetV3ImageClassifier
```
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from mobilenetv3 import architectures
from mobilenetv3.weights import Checkpoint
from mobilenetv3.weights._torch import load_state_dict

_BN_NAMES = {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean", "running_var": "moving_variance"}
# The last conv's width gives the family and whether the tail is reduced.
_LAST_CONV = {960: ("large", False), 480: ("large", True), 576: ("small", False), 288: ("small", True)}
_SUFFIXES = (".pth", ".pt", ".bin")


def detect(path: str) -> bool:
    """Whether `path` is a torchvision MobileNetV3 or LR-ASPP state dict."""
    if not os.path.isfile(path) or not str(path).endswith(_SUFFIXES):
        return False
    try:
        state = _load_state_dict(path)
    except Exception:  # not a torch file, or not a state dict.
        return False
    return _features_prefix(state) is not None


def read(path: str) -> Checkpoint:
    """Read a torchvision state dict into a `Checkpoint`.

    Raises:
        ValueError: when the file is not a torchvision MobileNetV3 / LR-ASPP
            state dict, or is a width (`width_mult`) other than 1.0.
    """
    state = _load_state_dict(path)
    prefix = _features_prefix(state)
    if prefix is None:
        raise ValueError(
            f"{path} is not a torchvision MobileNetV3 state dict: it has no "
            "'features.0.0.weight' (classifier) or 'backbone.0.0.weight' (LR-ASPP) key."
        )
    tensors, config = _read_backbone(state, prefix, path)
    checkpoint = Checkpoint(tensors, config, source=f"torchvision file {path}")
    if prefix == "backbone.":
        config.update(output_stride=16, dilation_style="torchvision")
        tensors.update(_segmenter_head(state))
        checkpoint.num_classes = int(state["classifier.low_classifier.weight"].shape[0])
        checkpoint.head = "lraspp"
        checkpoint.task = "segmenter"
    elif "classifier.3.weight" in state:
        tensors.update(_classifier_head(state))
        checkpoint.num_classes = int(state["classifier.3.weight"].shape[0])
        checkpoint.head = "paper"
        checkpoint.head_filters = int(state["classifier.0.weight"].shape[0])
        checkpoint.task = "classifier"
    return checkpoint


# -- reading the file ------------------------------------------------------


def _load_state_dict(path: str) -> dict[str, np.ndarray]:
    return load_state_dict(path)  # CRC-checked, weights_only=True


def _features_prefix(state: Mapping[str, Any]) -> str | None:
    if "features.0.0.weight" in state:
        return "features."
    if "backbone.0.0.weight" in state and "classifier.cbr.0.weight" in state:
        return "backbone."
    return None


# -- backbone --------------------------------------------------------------


def _read_backbone(state: dict, prefix: str, path: str) -> tuple[dict, dict]:
    modules = _module_indices(state, prefix)
    stem, *blocks, last = modules
    stem_filters = state[f"{prefix}{stem}.0.weight"].shape[0]
    last_filters = state[f"{prefix}{last}.0.weight"].shape[0]
    family = _LAST_CONV.get(last_filters)
    if stem_filters != 16 or family is None or len(blocks) not in (11, 15):
        raise ValueError(
            f"{path} is a MobileNetV3 this package cannot map: stem {stem_filters} channels, "
            f"{len(blocks)} blocks, last conv {last_filters} channels. Only torchvision's "
            "mobilenet_v3_small / mobilenet_v3_large with width_mult=1.0 (reduced_tail "
            "either way) are supported."
        )
    name, reduced_tail = family
    tensors = _conv_bn(state, f"{prefix}{stem}", "Conv")
    for index, module in enumerate(blocks):
        block_prefix = f"expanded_conv_{index}_" if index else "expanded_conv_"
        tensors.update(_block(state, f"{prefix}{module}.block", block_prefix))
    tensors.update(_conv_bn(state, f"{prefix}{last}", "Conv_1"))
    return tensors, _backbone_config(name, reduced_tail)


def _module_indices(state: dict, prefix: str) -> list[int]:
    return sorted({int(key[len(prefix):].split(".")[0]) for key in state if key.startswith(prefix)})


def _backbone_config(family: str, reduced_tail: bool) -> dict:
    blocks = architectures.LARGE_BLOCKS if family == "large" else architectures.SMALL_BLOCKS
    return {
        **architectures.to_stackwise(blocks),
        "include_rescaling": True,
        "preprocessing": "imagenet",
        "padding": "symmetric",
        "bn_epsilon": 1e-3,
        "reduced_tail": reduced_tail,
    }


def _block(state: dict, torch_prefix: str, keras_prefix: str) -> dict:
    """One `InvertedResidual`: [expand], depthwise, [SE], project."""
    parts = sorted({int(k[len(torch_prefix) + 1:].split(".")[0]) for k in state if k.startswith(torch_prefix + ".")})
    tensors: dict[str, np.ndarray] = {}
    convs = [p for p in parts if f"{torch_prefix}.{p}.0.weight" in state]
    for part in parts:
        module = f"{torch_prefix}.{part}"
        if f"{module}.fc1.weight" in state:
            tensors.update(_squeeze_excite(state, module, keras_prefix + "squeeze_excite"))
            continue
        kernel = state[f"{module}.0.weight"]
        if kernel.shape[1] == 1 and kernel.shape[2] > 1:
            role = "depthwise"
        else:
            role = "project" if part == convs[-1] else "expand"
        tensors.update(_conv_bn(state, module, keras_prefix + role))
    return tensors


def _conv_bn(state: dict, torch_module: str, keras_name: str) -> dict:
    """A `Conv2dNormActivation`: `.0` conv (no bias), `.1` BatchNorm."""
    kernel = state[f"{torch_module}.0.weight"]
    if kernel.shape[1] == 1 and kernel.shape[2] > 1:
        kernel = kernel.transpose(2, 3, 0, 1)  # (C, 1, kh, kw) -> (kh, kw, C, 1)
    else:
        kernel = kernel.transpose(2, 3, 1, 0)  # (O, I, kh, kw) -> (kh, kw, I, O)
    tensors = {f"{keras_name}/kernel": kernel}
    tensors.update(_batch_norm(state, f"{torch_module}.1", f"{keras_name}_BatchNorm"))
    return tensors


def _batch_norm(state: dict, torch_module: str, keras_name: str) -> dict:
    return {f"{keras_name}/{ours}": state[f"{torch_module}.{theirs}"] for theirs, ours in _BN_NAMES.items()}


def _squeeze_excite(state: dict, torch_module: str, keras_name: str) -> dict:
    tensors = {}
    for theirs, ours in (("fc1", "squeeze_conv"), ("fc2", "excite_conv")):
        tensors[f"{keras_name}/{ours}/kernel"] = state[f"{torch_module}.{theirs}.weight"].transpose(2, 3, 1, 0)
        tensors[f"{keras_name}/{ours}/bias"] = state[f"{torch_module}.{theirs}.bias"]
    return tensors


# -- heads -----------------------------------------------------------------


def _linear_as_conv(weight: np.ndarray) -> np.ndarray:
    """A Linear `(out, in)` weight as a 1x1 conv kernel `(1, 1, in, out)`."""
    return weight.T[None, None]


def _classifier_head(state: dict) -> dict:
    return {
        "Conv_2/kernel": _linear_as_conv(state["classifier.0.weight"]),
        "Conv_2/bias": state["classifier.0.bias"],
        "Logits/kernel": _linear_as_conv(state["classifier.3.weight"]),
        "Logits/bias": state["classifier.3.bias"],
    }


def _conv_kernel(weight: np.ndarray) -> np.ndarray:
    return weight.transpose(2, 3, 1, 0)


def _segmenter_head(state: dict) -> dict:
    """torchvision's `LRASPPHead` under the segmenter's layer names."""
    tensors = {"lraspp_cbr/kernel": _conv_kernel(state["classifier.cbr.0.weight"])}
    tensors.update(_batch_norm(state, "classifier.cbr.1", "lraspp_cbr_BatchNorm"))
    tensors["lraspp_scale/kernel"] = _conv_kernel(state["classifier.scale.1.weight"])
    for name in ("low_classifier", "high_classifier"):
        tensors[f"lraspp_{name}/kernel"] = _conv_kernel(state[f"classifier.{name}.weight"])
        tensors[f"lraspp_{name}/bias"] = state[f"classifier.{name}.bias"]
    return tensors
