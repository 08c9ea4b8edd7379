"""keras.applications MobileNetV3 weight files (`weights_mobilenet_v3_*.h5`).

These are the TF-slim authors' ImageNet weights as Keras 2 saved them: an
HDF5 file whose root attribute `layer_names` lists the layers and whose layer
groups list their `weight_names` (`Conv/BatchNorm/gamma:0`,
`expanded_conv_3/squeeze_excite/Conv/kernel:0`, ...). The arrays are already
in Keras layout, so reading is a renaming: `/` inside a layer name becomes
`_`, and the squeeze-and-excite convs `Conv` / `Conv_1` become
`squeeze_conv` / `excite_conv`. The variant (Small/Large, width, minimalistic,
head) is read off the tensors themselves.
"""

from __future__ import annotations

import os
import re
from typing import Any

import h5py
import numpy as np

from mobilenetv3 import architectures
from mobilenetv3.weights import Checkpoint, canonical
from mobilenetv3.weights.architecture_inference import BlockFacts, infer_architecture

_SE_CONVS = {"Conv": "squeeze_conv", "Conv_1": "excite_conv"}
_VARIABLES = {
    "kernel": "kernel",
    "depthwise_kernel": "kernel",
    "bias": "bias",
    "gamma": "gamma",
    "beta": "beta",
    "moving_mean": "moving_mean",
    "moving_variance": "moving_variance",
}
_REQUIRED_LAYERS = ("Conv", "Conv_1", "expanded_conv/depthwise")
_BLOCK = re.compile(r"^expanded_conv(?:_(\d+))?_(?:expand|depthwise|squeeze_excite|project)")


# The one error type for unreadable weight files (kept here by its old name).
WeightsFileError = canonical.WeightsFileError


def detect(path: str | os.PathLike) -> bool:
    """Whether `path` is a keras.applications MobileNetV3 `.h5` weights file.

    Example:

    ```python
    from mobilenetv3.weights import keras_applications
    keras_applications.detect("weights_mobilenet_v3_small_224_1.0_float.h5")  # True
    ```
    """
    try:
        with h5py.File(path, "r") as f:
            names = _layer_names(_weights_root(f))
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return set(_REQUIRED_LAYERS) <= set(names)


def read(path: str | os.PathLike) -> Checkpoint:
    """Read a keras.applications MobileNetV3 `.h5` file into a `Checkpoint`.

    The checkpoint's `backbone_config` is the matching preset config with the
    file's width (`alpha`), TF "SAME" padding, BatchNorm epsilon 1e-3 and
    `preprocessing="symmetric"` (raw 0..255 pixels are mapped to [-1, 1], as
    keras.applications does). Files with a top also give `num_classes`,
    `head="paper"`, `head_filters` and `head_activation`.

    Raises:
        WeightsFileError: the file is not a readable keras.applications
            MobileNetV3 weights file (corrupted, truncated, other layout).

    Example:

    ```python
    from mobilenetv3 import models
    from mobilenetv3.weights import keras_applications

    checkpoint = keras_applications.read("weights_mobilenet_v3_small_224_1.0_float.h5")
    model = models.build_model(checkpoint)  # a 1000-class classifier
    ```
    """
    tensors = _read_tensors(path)
    config, minimalistic = _infer_backbone_config(tensors, path)
    checkpoint = Checkpoint(tensors=tensors, backbone_config=config, source=f"keras.applications file {path}")
    if "Logits/kernel" in tensors:
        checkpoint.num_classes = int(tensors["Logits/kernel"].shape[-1])
        checkpoint.head = "paper"
        checkpoint.head_filters = int(tensors["Conv_2/kernel"].shape[-1])
        checkpoint.head_activation = "relu" if minimalistic else "hard_swish"
    return checkpoint


# -- reading ------------------------------------------------------------------


def _weights_root(f: h5py.File) -> h5py.Group:
    """The group holding `layer_names`: the root, or `model_weights` in a
    file written by `model.save`."""
    if "layer_names" not in f.attrs and "model_weights" in f:
        return f["model_weights"]
    return f


def _decode(names: Any) -> list[str]:
    return [n.decode("utf8") if isinstance(n, bytes) else str(n) for n in names]


def _layer_names(root: h5py.Group) -> list[str]:
    return _decode(root.attrs["layer_names"])


def _read_tensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
    try:
        with h5py.File(path, "r") as f:
            root = _weights_root(f)
            if "layer_names" not in root.attrs:
                raise WeightsFileError(
                    f"{path} is an HDF5 file without the `layer_names` attribute of a Keras 2 "
                    "weights file; it is not a keras.applications weights file."
                )
            tensors = {}
            for layer in _layer_names(root):
                group = root[layer]
                for weight in _decode(group.attrs.get("weight_names", [])):
                    tensors[_canonical_name(layer, weight, path)] = np.asarray(group[weight])
    except OSError as error:
        raise WeightsFileError(
            f"Cannot read {path} as an HDF5 weights file ({error}). The file is corrupted, "
            "truncated or not an .h5 file; download it again."
        ) from None
    except KeyError as error:
        raise WeightsFileError(f"{path} is damaged: a listed weight is missing ({error}).") from None
    if not tensors:
        raise WeightsFileError(f"{path} holds no weights.")
    return tensors


def _canonical_name(layer: str, weight: str, path: Any) -> str:
    """`expanded_conv_3/squeeze_excite/Conv` + `.../kernel:0` ->
    `expanded_conv_3_squeeze_excite/squeeze_conv/kernel`."""
    variable = weight.rsplit("/", 1)[-1].split(":")[0]
    if variable not in _VARIABLES:
        raise WeightsFileError(f"{path}: unexpected weight {weight!r} in layer {layer!r}.")
    parts = layer.split("/")
    if len(parts) == 3 and parts[1] == "squeeze_excite" and parts[2] in _SE_CONVS:
        return f"{parts[0]}_squeeze_excite/{_SE_CONVS[parts[2]]}/{_VARIABLES[variable]}"
    return f"{'_'.join(parts)}/{_VARIABLES[variable]}"


# -- inferring the variant --------------------------------------------------------


def _block_indices(tensors: dict[str, np.ndarray]) -> list[int]:
    found = {int(m.group(1) or 0) for m in map(_BLOCK.match, tensors) if m}
    return sorted(found)


def _infer_backbone_config(tensors: dict[str, np.ndarray], path: Any) -> tuple[dict, bool]:
    indices = _block_indices(tensors)
    if indices != list(range(len(indices))) or "Conv_1/kernel" not in tensors:
        raise WeightsFileError(
            f"{path} has blocks {indices}; a MobileNetV3 file has blocks 0..10 (Small) or "
            "0..14 (Large) and a final `Conv_1`."
        )
    facts = [_block_facts(tensors, architectures.block_prefix(index)) for index in indices]
    try:
        architecture = infer_architecture(facts, str(path))
    except ValueError as error:
        raise WeightsFileError(str(error)) from None
    config = {**architecture.backbone_config(), "preprocessing": "symmetric", "padding": "same", "bn_epsilon": 1e-3}
    return config, architecture.minimalistic


def _block_facts(tensors: dict[str, np.ndarray], prefix: str) -> BlockFacts:
    return BlockFacts(
        kernel_size=int(tensors[f"{prefix}depthwise/kernel"].shape[0]),
        has_se=any(name.startswith(f"{prefix}squeeze_excite/") for name in tensors),
        out_channels=int(tensors[f"{prefix}project/kernel"].shape[-1]),
    )
