"""SSD default boxes, as torchvision's `DefaultBoxGenerator` makes them."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def default_box_scales(num_maps: int, min_ratio: float = 0.2, max_ratio: float = 0.95) -> list[float]:
    """SSD's box scales: `num_maps` values evenly from `min_ratio` to
    `max_ratio`, then 1.0 (used only for the last map's extra square box).

    Example:

    ```python
    default_box_scales(6)  # [0.2, 0.35, 0.5, 0.65, 0.8, 0.95, 1.0]
    ```
    """
    if num_maps == 1:
        return [min_ratio, max_ratio]
    step = (max_ratio - min_ratio) / (num_maps - 1.0)
    return [min_ratio + step * k for k in range(num_maps)] + [1.0]


def _wh_pairs(scales: list[float], aspect_ratios: Sequence[float], k: int) -> np.ndarray:
    s_k, s_prime = scales[k], math.sqrt(scales[k] * scales[k + 1])
    pairs = [[s_k, s_k], [s_prime, s_prime]]
    for ratio in aspect_ratios:
        root = math.sqrt(ratio)
        pairs += [[s_k * root, s_k / root], [s_k / root, s_k * root]]
    return np.clip(np.asarray(pairs, "float32"), 0.0, 1.0)


def boxes_per_location(aspect_ratios: Sequence[Sequence[float]]) -> list[int]:
    """Default boxes at each position of each map: 2 squares + 2 per ratio."""
    return [2 + 2 * len(ratios) for ratios in aspect_ratios]


def default_boxes(
    grid_sizes: Sequence[tuple[int, int]],
    image_size: tuple[int, int],
    aspect_ratios: Sequence[Sequence[float]],
    min_ratio: float = 0.2,
    max_ratio: float = 0.95,
) -> np.ndarray:
    """All default boxes, `(num_boxes, 4)` float32 `xyxy` in pixels of an
    `image_size` (height, width) image, in torchvision's order: map by map,
    then row-major positions, then the box shapes of a position.

    Centres are `(i + 0.5) / grid` of the image; widths and heights are
    clipped to the image size while in centre form (boxes themselves may
    reach past the border), exactly as torchvision's `clip=True`.

    Example:

    ```python
    boxes = default_boxes([(20, 20), (10, 10)], (320, 320), [[2, 3], [2, 3]])
    boxes.shape  # (3000, 4)
    ```
    """
    scales = default_box_scales(len(grid_sizes), min_ratio, max_ratio)
    size_xy = np.asarray([image_size[1], image_size[0]], "float32")
    per_map = []
    for k, (rows, columns) in enumerate(grid_sizes):
        wh = _wh_pairs(scales, aspect_ratios[k], k)
        shift_x = (np.arange(columns, dtype="float32") + np.float32(0.5)) / np.float32(columns)
        shift_y = (np.arange(rows, dtype="float32") + np.float32(0.5)) / np.float32(rows)
        grid_y, grid_x = np.meshgrid(shift_y, shift_x, indexing="ij")
        centres = np.stack([grid_x.ravel(), grid_y.ravel()], axis=-1)
        centres = np.repeat(centres, len(wh), axis=0)
        sizes = np.tile(wh, (rows * columns, 1))
        half = np.float32(0.5) * sizes
        per_map.append(np.concatenate([(centres - half) * size_xy, (centres + half) * size_xy], axis=1))
    return np.concatenate(per_map, axis=0).astype("float32")
