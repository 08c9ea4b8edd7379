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

from mobilenetv3.core import architectures
from mobilenetv3.weights import Checkpoint, canonical, keras3_h5
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
    if keras3_h5.is_keras3_weights(path):
        try:
            return _keras3_layout(keras3_h5.read_groups(path), path) is not None
        except (ValueError, WeightsFileError, KeyError, IndexError):
            return False
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
    from mobilenetv3.presets import loader
    from mobilenetv3.weights import keras_applications

    checkpoint = keras_applications.read("weights_mobilenet_v3_small_224_1.0_float.h5")
    model = loader.build_model(checkpoint)  # a 1000-class classifier
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
    if keras3_h5.is_keras3_weights(path):
        return _read_keras3_tensors(path)
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
    except (OSError, RuntimeError) as error:  # h5py's errors for damaged files
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


# -- Keras 3 `.weights.h5` ---------------------------------------------------------

# Keras 3 names a functional model's layers in the file by class and order
# (`conv2d_7`), not by layer name: the order of each class's layers in
# keras.applications' graph gives their names back.
_KERAS3_CLASSES = ("conv2d", "depthwise_conv2d", "batch_normalization")


def _read_keras3_tensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Canonical tensors of a Keras 3 `model.save_weights("x.weights.h5")` of
    a keras.applications MobileNetV3."""
    try:
        groups = keras3_h5.read_groups(path)
    except ValueError as error:
        raise WeightsFileError(str(error)) from None
    layout = _keras3_layout(groups, path)
    if layout is None:
        counts = {c: len(keras3_h5.numbered(groups, c)) for c in _KERAS3_CLASSES}
        raise WeightsFileError(
            f"{path} is a Keras 3 weights file whose layers {counts} match no keras.applications "
            "MobileNetV3 (Small/Large, minimalistic or not, with or without top)."
        )
    variables = {"conv2d": ("kernel", "bias"), "depthwise_conv2d": ("kernel",), "batch_normalization": _BN_VARIABLES}
    tensors = {}
    for keras_class, ours in layout.items():
        for name, group in zip(ours, keras3_h5.numbered(groups, keras_class)):
            tensors.update({f"{name}/{v}": a for v, a in zip(variables[keras_class], groups[f"layers/{group}"])})
    return tensors


_BN_VARIABLES = ("gamma", "beta", "moving_mean", "moving_variance")


_FAMILY_BY_BLOCKS = {len(architectures.SMALL_BLOCKS): "small", len(architectures.LARGE_BLOCKS): "large"}


def _keras3_layout(groups: dict[str, list[np.ndarray]], path: Any) -> dict[str, list[str]] | None:
    """Our layer names, per Keras class in graph order, for the variant whose
    layer counts the file has (None when no variant fits)."""
    numbered = {c: keras3_h5.numbered(groups, c) for c in _KERAS3_CLASSES}
    known = {f"layers/{name}" for names in numbered.values() for name in names}
    if set(groups) - known:  # e.g. nested layers: not keras.applications' flat graph
        return None
    family = _FAMILY_BY_BLOCKS.get(len(numbered["depthwise_conv2d"]))
    if family is None:
        return None
    kernels = [groups[f"layers/{name}"][0].shape[0] for name in numbered["depthwise_conv2d"]]
    table = architectures.SMALL_BLOCKS if family == "small" else architectures.LARGE_BLOCKS
    for blocks in (table, architectures.minimalistic(table)):
        for top in (True, False):
            layout = _graph_order(blocks, top)
            fits = [len(layout[c]) for c in _KERAS3_CLASSES] == [len(numbered[c]) for c in _KERAS3_CLASSES]
            if fits and kernels == [b.kernel_size for b in blocks]:
                return layout
    return None


def _graph_order(blocks: tuple, include_top: bool) -> dict[str, list[str]]:
    """keras.applications' layers with weights, by class, in graph order."""
    convs, depthwise, norms = ["Conv"], [], ["Conv_BatchNorm"]
    for index, block in enumerate(blocks):
        prefix = architectures.block_prefix(index)
        if index:  # keras.applications: every block but the first expands
            convs.append(prefix + "expand")
            norms.append(prefix + "expand_BatchNorm")
        depthwise.append(prefix + "depthwise")
        norms.append(prefix + "depthwise_BatchNorm")
        if block.se_ratio:
            convs += [prefix + "squeeze_excite/squeeze_conv", prefix + "squeeze_excite/excite_conv"]
        convs.append(prefix + "project")
        norms.append(prefix + "project_BatchNorm")
    convs.append("Conv_1")
    norms.append("Conv_1_BatchNorm")
    if include_top:
        convs += ["Conv_2", "Logits"]
    return {"conv2d": convs, "depthwise_conv2d": depthwise, "batch_normalization": norms}


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
