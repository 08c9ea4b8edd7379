"""Keras 3 `.weights.h5` files, read without building the model that wrote them.

Keras 3 (`model.save_weights("x.weights.h5")`, keras-hub presets) stores each
layer's variables under `layers/<layer>/vars/<i>`, in the order the layer
created them, with nested layers under their attribute names
(`layers/inverted_residual_block_3/squeeze_excite/conv_reduce/vars/0`). The
top-level layer names are not the model's layer names but the snake-cased
class name plus a counter in model order (`conv2d`, `conv2d_1`, ...), which
`numbered` puts back in order.

Example:

```python
from mobilenetv3.weights import keras3_h5

groups = keras3_h5.read_groups("model.weights.h5")
groups["layers/conv2d"]  # [kernel]
```
"""

from __future__ import annotations

import os
import re

import h5py
import numpy as np


def read_groups(path: str | os.PathLike) -> dict[str, list[np.ndarray]]:
    """Every variable group of a Keras 3 weights file: `{group path:
    [arrays in creation order]}` (group path without the `/vars` suffix).

    Raises:
        ValueError: the file is not a readable Keras 3 weights file: not
            HDF5, corrupted, truncated, or a layer lacks one of its variables.
    """
    groups: dict[str, list[np.ndarray]] = {}

    def visit(name: str, item: object) -> None:
        if isinstance(item, h5py.Group) and name.endswith("/vars") and len(item):
            numbers = sorted(int(key) for key in item if key.isdigit())
            missing = sorted(set(range(numbers[-1] + 1 if numbers else 0)) - set(numbers))
            if missing or len(numbers) != len(item):  # Keras numbers a layer's variables 0, 1, ...
                raise ValueError(
                    f"{path} is incomplete or damaged: {name} holds {sorted(item)}, lacking variable(s) "
                    f"{missing}. Download or save the file again."
                )
            groups[name.removesuffix("/vars")] = [np.asarray(item[str(i)], dtype=np.float32) for i in numbers]

    try:
        with h5py.File(path, "r") as f:
            if "layers" not in f:
                raise ValueError(f"{path} has no `layers` group: it is not a Keras 3 weights file.")
            f["layers"].visititems(lambda name, item: visit(f"layers/{name}", item))
    except (OSError, KeyError, RuntimeError, TypeError) as error:  # h5py's errors for damaged files
        reason = " ".join(str(error).split()).strip('"')
        raise ValueError(f"{path} is corrupted or truncated: HDF5 cannot read it ({reason}).") from None
    return groups


def is_keras3_weights(path: str | os.PathLike) -> bool:
    """Whether `path` is an HDF5 file in the Keras 3 weights layout."""
    try:
        with h5py.File(path, "r") as f:
            return "layers" in f and "layer_names" not in f.attrs
    except (OSError, ValueError):
        return False


def numbered(groups: dict[str, list[np.ndarray]], layer: str, under: str = "layers") -> list[str]:
    """Top-level layer names `layer`, `layer_1`, `layer_2`, ... present under
    `under` (also as parents of nested groups), in counter order."""
    pattern = re.compile(rf"{re.escape(under)}/({re.escape(layer)}(?:_(\d+))?)(?:/|$)")
    found: dict[str, int] = {}
    for name in groups:
        match = pattern.match(name)
        if match:
            found[match.group(1)] = int(match.group(2) or 0)
    return sorted(found, key=found.__getitem__)


__all__ = ["is_keras3_weights", "numbered", "read_groups"]
