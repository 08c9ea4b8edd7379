"""torchvision MobileNetV3, LR-ASPP, DeepLabV3, SSDLite and Faster R-CNN state dicts.

Reads the `.pth` files of `torchvision.models.mobilenet_v3_{small,large}`
(keys `features.N...` and `classifier.0/3.*`), of
`torchvision.models.segmentation.lraspp_mobilenet_v3_large` (keys
`backbone.N...` and `classifier.{cbr,scale,low_classifier,high_classifier}.*`)
and `deeplabv3_mobilenet_v3_large` (keys `backbone.N...`,
`classifier.0.convs...` (ASPP), `classifier.{1,2,4}.*`, and with
`aux_loss=True`, as the published file, `aux_classifier.*`) into canonical
tensors; the MobileNetV3 body (`backbone.body.N...`) of
`fasterrcnn_mobilenet_v3_large_fpn` / `fasterrcnn_mobilenet_v3_large_320_fpn`
as a backbone (its FPN, RPN and box heads are not read; the body uses
BatchNorm epsilon 1e-5: torchvision builds it with `FrozenBatchNorm2d`, whose
default epsilon is 1e-5); and of
`torchvision.models.detection.ssdlite320_mobilenet_v3_large` (keys
`backbone.features.{0,1}...`, `backbone.extra...` and
`head.{classification,regression}_head...`). Files are opened with `torch.load(...,
weights_only=True)`: nothing is unpickled.

torchvision pads stride-2 convolutions symmetrically, uses BatchNorm epsilon
1e-3 in the backbone and expects ImageNet mean/std inputs, so the backbone
config read from a file says `padding="symmetric"`, `bn_epsilon=1e-3` and
`preprocessing="imagenet"`. Small or Large and `reduced_tail` are read from
the tensors; dilation is not visible in weights, so an LR-ASPP or DeepLabV3
file implies torchvision's `dilated=True` (output stride 16).

Example:

```python
from mobilenetv3 import weights
from mobilenetv3.presets import loader
checkpoint = weights.read("mobilenet_v3_large-8738ca79.pth", "torchvision")
model = loader.build_model(checkpoint)  # a MobileNetV3ImageClassifier
```
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from mobilenetv3.core import architectures
from mobilenetv3.core.normalization import ImagePolicy
from mobilenetv3.weights import Checkpoint
from mobilenetv3.weights._torch import load_state_dict

_BN_NAMES = {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean", "running_var": "moving_variance"}
# The last conv's width gives the family and whether the tail is reduced.
_LAST_CONV = {960: ("large", False), 480: ("large", True), 576: ("small", False), 288: ("small", True)}
_SUFFIXES = (".pth", ".pt", ".bin")

# torchvision's ImageClassification transform of its MobileNetV3 weights:
# bilinear resize of the shorter side to 256, center crop 224, mean / std.
CLASSIFIER_TRANSFORM = ImagePolicy("imagenet", 224, "center_crop", 256, "bilinear")



def detect(path: str) -> bool:
    """Whether `path` is a torchvision MobileNetV3, LR-ASPP, DeepLabV3, SSDLite
    or Faster R-CNN (MobileNetV3 body) state dict."""
    if not os.path.isfile(path) or not str(path).endswith(_SUFFIXES):
        return False
    try:
        state = _load_state_dict(path)
    except Exception:  # not a torch file, or not a state dict.
        return False
    return _features_prefix(state) is not None or _is_ssdlite(state) or _is_faster_rcnn(state)


def read(path: str) -> Checkpoint:
    """Read a torchvision state dict file into a `Checkpoint`.

    Raises:
        ValueError: when the file is not a torchvision MobileNetV3 / LR-ASPP
            / DeepLabV3 / SSDLite / Faster R-CNN (MobileNetV3 body) state dict
            (another torchvision detector is named as such), or is a width
            (`width_mult`) other than 1.0.
    """
    return read_state_dict(_load_state_dict(path), path)


def read_state_dict(state: Mapping[str, Any], source: str = "state dict") -> Checkpoint:
    """A `Checkpoint` from a state dict already in memory (`module.state_dict()`,
    tensors or arrays); `source` names it in messages.

    Example:

    ```python
    oracle = torchvision.models.detection.ssdlite320_mobilenet_v3_large(weights_backbone=None)
    model = loader.build_model(torchvision_weights.read_state_dict(oracle.state_dict()))
    ```
    """
    path = source
    state = _to_arrays(state)
    if _is_ssdlite(state):
        return _read_ssdlite(state, path)
    if _is_faster_rcnn(state):
        return _read_faster_rcnn_body(state, path)
    _reject_other_detectors(state, path)
    prefix = _features_prefix(state)
    if prefix is None:
        raise ValueError(_not_mobilenet_message(state, path))
    tensors, config = _read_backbone(state, prefix, path)
    checkpoint = Checkpoint(tensors, config, source=f"torchvision file {path}")
    if prefix == "backbone.":
        config.update(output_stride=16, dilation_style="torchvision")
        head = _segmentation_head(state)
        tensors.update(_SEGMENTATION_HEADS[head][0](state))
        checkpoint.num_classes = int(state[_SEGMENTATION_HEADS[head][1]].shape[0])
        checkpoint.head = head
        checkpoint.task = "segmenter"
    elif "classifier.3.weight" in state:
        tensors.update(_classifier_head(state))
        checkpoint.num_classes = int(state["classifier.3.weight"].shape[0])
        checkpoint.head = "paper"
        checkpoint.head_filters = int(state["classifier.0.weight"].shape[0])
        checkpoint.task = "classifier"
        checkpoint.preprocessing = CLASSIFIER_TRANSFORM
    return checkpoint


# -- reading the file ------------------------------------------------------


def _load_state_dict(path: str) -> dict[str, np.ndarray]:
    return load_state_dict(path)  # CRC-checked, weights_only=True


def _to_arrays(state: Mapping[str, Any]) -> dict[str, np.ndarray]:
    arrays = {}
    for key, value in state.items():
        if hasattr(value, "detach"):
            value = value.detach().cpu().numpy()
        if isinstance(value, np.ndarray):
            arrays[key.removeprefix("module.")] = value
    return arrays


def _features_prefix(state: Mapping[str, Any]) -> str | None:
    if "features.0.0.weight" in state:
        return "features."
    if "backbone.0.0.weight" in state and _segmentation_head(state) is not None:
        return "backbone."
    return None


def _segmentation_head(state: Mapping[str, Any]) -> str | None:
    """"lraspp" or "deeplabv3" by the head's first key, or None."""
    for head, key in _SEGMENTATION_HEAD_KEYS.items():
        if key in state:
            return head
    return None


def _not_mobilenet_message(state: Mapping[str, Any], path: str) -> str:
    """What the file lacks, naming only keys it does not have."""
    first = sorted(state)[:3]
    if "backbone.0.0.weight" in state:
        heads = ", ".join(f"{key!r} ({head})" for head, key in _SEGMENTATION_HEAD_KEYS.items())
        return (
            f"{path} has a torchvision segmentation backbone ('backbone.0.0.weight') but no head this "
            f"package reads: none of {heads}. First keys: {first}."
        )
    return (
        f"{path} is not a torchvision MobileNetV3 state dict: it has none of 'features.0.0.weight' "
        "(classifier), 'backbone.0.0.weight' (LR-ASPP / DeepLabV3 segmenter), "
        f"'backbone.body.0.0.weight' (Faster R-CNN) or 'backbone.features.0.0.0.weight' (SSDLite). "
        f"First keys: {first}."
    )


# -- backbone --------------------------------------------------------------


def _read_backbone(state: dict, prefix: str, path: str) -> tuple[dict, dict]:
    modules = _module_indices(state, prefix)
    if len(modules) < 3:  # a stem, blocks and a last conv
        raise ValueError(
            f"{path} is not a whole torchvision MobileNetV3 state dict: it has {len(modules)} module(s) "
            f"under '{prefix}' (keys {sorted(state)[:3]}{' ...' if len(state) > 3 else ''}), where "
            "mobilenet_v3_small has 13 and mobilenet_v3_large 17 (stem, blocks, last conv). The file "
            "is incomplete, or of another network."
        )
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
        block_prefix = architectures.block_prefix(index)
        tensors.update(_block(state, f"{prefix}{module}.block", block_prefix))
    tensors.update(_conv_bn(state, f"{prefix}{last}", "Conv_1"))
    return tensors, _backbone_config(name, reduced_tail)


def _module_indices(state: dict, prefix: str) -> list[int]:
    parts = (key[len(prefix):].split(".")[0] for key in state if key.startswith(prefix))
    return sorted({int(part) for part in parts if part.isdigit()})


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


def _conv_bn_head(state: dict, torch_module: str, keras_name: str) -> dict:
    """A head's conv (no bias) at `<module>.0` and BatchNorm at `<module>.1`."""
    tensors = {f"{keras_name}/kernel": _conv_kernel(state[f"{torch_module}.0.weight"])}
    tensors.update(_batch_norm(state, f"{torch_module}.1", f"{keras_name}_BatchNorm"))
    return tensors


def _deeplabv3_head(state: dict) -> dict:
    """torchvision's `DeepLabHead` (and `FCNHead` aux classifier, when the
    file has it) under the segmenter's layer names."""
    tensors: dict[str, np.ndarray] = {}
    for index in range(4):
        tensors.update(_conv_bn_head(state, f"classifier.0.convs.{index}", f"aspp_{index}"))
    tensors["aspp_pooling/kernel"] = _conv_kernel(state["classifier.0.convs.4.1.weight"])
    tensors.update(_batch_norm(state, "classifier.0.convs.4.2", "aspp_pooling_BatchNorm"))
    tensors.update(_conv_bn_head(state, "classifier.0.project", "aspp_project"))
    tensors["deeplab_conv/kernel"] = _conv_kernel(state["classifier.1.weight"])
    tensors.update(_batch_norm(state, "classifier.2", "deeplab_conv_BatchNorm"))
    tensors["deeplab_classifier/kernel"] = _conv_kernel(state["classifier.4.weight"])
    tensors["deeplab_classifier/bias"] = state["classifier.4.bias"]
    if "aux_classifier.0.weight" in state:
        tensors["aux_conv/kernel"] = _conv_kernel(state["aux_classifier.0.weight"])
        tensors.update(_batch_norm(state, "aux_classifier.1", "aux_conv_BatchNorm"))
        tensors["aux_classifier/kernel"] = _conv_kernel(state["aux_classifier.4.weight"])
        tensors["aux_classifier/bias"] = state["aux_classifier.4.bias"]
    return tensors


# head -> (reader, key whose first dimension is the number of classes)
_SEGMENTATION_HEADS = {
    "lraspp": (_segmenter_head, "classifier.low_classifier.weight"),
    "deeplabv3": (_deeplabv3_head, "classifier.4.weight"),
}
_SEGMENTATION_HEAD_KEYS = {"lraspp": "classifier.cbr.0.weight", "deeplabv3": "classifier.0.convs.0.0.weight"}


# -- Faster R-CNN body -------------------------------------------------------

_FASTER_RCNN_BODY = "backbone.body."
FASTER_RCNN_BN_EPSILON = 1e-5  # torchvision's FrozenBatchNorm2d default


def _is_faster_rcnn(state: Mapping[str, Any]) -> bool:
    return f"{_FASTER_RCNN_BODY}0.0.weight" in state and f"{_FASTER_RCNN_BODY}1.block.0.0.weight" in state


def _read_faster_rcnn_body(state: dict, path: str) -> Checkpoint:
    """The MobileNetV3 body of a Faster R-CNN FPN detector, as a backbone
    (BatchNorm epsilon 1e-5, no dilation)."""
    tensors, config = _read_backbone(state, _FASTER_RCNN_BODY, path)
    config["bn_epsilon"] = FASTER_RCNN_BN_EPSILON
    checkpoint = Checkpoint(tensors, config, source=f"torchvision Faster R-CNN file {path} (MobileNetV3 body)")
    checkpoint.metadata["part"] = "Faster R-CNN backbone.body (FPN, RPN and box heads not converted)"
    return checkpoint


# -- SSDLite ---------------------------------------------------------------

_SSDLITE_FEATURES = "backbone.features."
_SSDLITE_HEADS = {"classification_head": "cls_head", "regression_head": "box_head"}
_EXTRA_ROLES = ("expand", "depthwise", "project")


def _is_ssdlite(state: Mapping[str, Any]) -> bool:
    return "backbone.features.0.0.0.weight" in state and "head.classification_head.module_list.0.1.weight" in state


def _reject_other_detectors(state: Mapping[str, Any], path: str) -> None:
    """A clear error for torchvision detectors this package does not map."""
    if any(key.startswith(("rpn.", "roi_heads.")) for key in state):
        kind = "a two-stage (Faster / Mask R-CNN) detector without a MobileNetV3 body"
    elif any(key.startswith("head.") for key in state) and any(key.startswith("backbone.") for key in state):
        kind = "a detector other than SSDLite (RetinaNet, FCOS or SSD300?)"
    else:
        return
    raise ValueError(
        f"{path} is {kind} state dict. Of torchvision's detectors SSDLite "
        "(`ssdlite320_mobilenet_v3_large`: keys 'backbone.features...', 'backbone.extra...', "
        "'head.classification_head...') and the MobileNetV3 body of Faster R-CNN "
        "(`fasterrcnn_mobilenet_v3_large_fpn`: keys 'backbone.body.N...') can be read."
    )


def _ssdlite_backbone_keys(state: dict) -> dict:
    """SSDLite's split backbone under the classifier's `features.N` keys.

    torchvision splits the MobileNetV3 at block `c4` (the last stride-2
    block): `features.0` holds blocks `0..c4-1` and block c4's expand conv,
    `features.1.0` the rest of block c4 (same indices inside the block),
    `features.1.k` block `c4 + k`.
    """
    first = [k[len(_SSDLITE_FEATURES) + 2:] for k in state if k.startswith(_SSDLITE_FEATURES + "0.")]
    c4 = max(int(k.split(".")[0]) for k in first)
    renamed = {}
    for key, value in state.items():
        if not key.startswith(_SSDLITE_FEATURES):
            continue
        part, index, rest = key[len(_SSDLITE_FEATURES):].split(".", 2)
        index = int(index)
        if part == "0":
            name = f"{c4}.block.0.{rest}" if index == c4 else f"{index}.{rest}"
        else:
            name = f"{c4}.block.{rest}" if index == 0 else f"{c4 + index}.{rest}"
        renamed[f"features.{name}"] = value
    return renamed


def _read_ssdlite(state: dict, path: str) -> Checkpoint:
    tensors, config = _read_backbone(_ssdlite_backbone_keys(state), "features.", path)
    config["preprocessing"] = "symmetric"  # torchvision's SSDLite: mean = std = 0.5
    extras = sorted({int(k.split(".")[2]) for k in state if k.startswith("backbone.extra.")})
    for index in extras:
        for position, role in enumerate(_EXTRA_ROLES):
            tensors.update(_conv_bn(state, f"backbone.extra.{index}.{position}", f"extra_{index}_{role}"))
    for theirs, ours in _SSDLITE_HEADS.items():
        prefix = f"head.{theirs}.module_list."
        for index in sorted({int(k[len(prefix):].split(".")[0]) for k in state if k.startswith(prefix)}):
            tensors.update(_conv_bn(state, f"{prefix}{index}.0", f"{ours}_{index}_depthwise"))
            tensors[f"{ours}_{index}_conv/kernel"] = _conv_kernel(state[f"{prefix}{index}.1.weight"])
            tensors[f"{ours}_{index}_conv/bias"] = state[f"{prefix}{index}.1.bias"]
    checkpoint = Checkpoint(tensors, config, source=f"torchvision SSDLite file {path}")
    boxes_per_location = state["head.regression_head.module_list.0.1.weight"].shape[0] // 4
    checkpoint.num_classes = int(state["head.classification_head.module_list.0.1.weight"].shape[0]) // boxes_per_location
    checkpoint.head = "ssdlite"
    checkpoint.task = "detector"
    return checkpoint
