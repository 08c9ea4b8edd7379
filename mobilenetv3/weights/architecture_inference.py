"""Infer a backbone config from what a weights file holds.

Weight files from timm and TFLite name their layers but do not say which
MobileNetV3 they are. The block count tells the family (11 blocks: Small,
15: Large), the absence of squeeze-and-excite plus all-3x3 kernels tells the
minimalistic variant, and the blocks' output channels tell the width
multiplier (`alpha`). Everything is checked against the architecture tables,
so a file of another network fails with a clear message.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from mobilenetv3.core import architectures
from mobilenetv3.core.architectures import BlockSpec, make_divisible

# Widths released by TF-slim, keras.applications, timm and MediaPipe (and a few more).
CANDIDATE_ALPHAS = (0.35, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0)
# Depth multipliers released (timm's mobilenetv3_large_150d: 1.2).
CANDIDATE_DEPTHS = (1.0, 1.2)
_TABLES = {"small": architectures.SMALL_BLOCKS, "large": architectures.LARGE_BLOCKS}
_FAMILIES = {
    len(architectures.scale_depth(table, depth)): (family, table, depth)
    for family, table in _TABLES.items()
    for depth in CANDIDATE_DEPTHS
}


@dataclasses.dataclass(frozen=True)
class BlockFacts:
    """What a file says about one inverted-residual block."""

    kernel_size: int
    has_se: bool
    out_channels: int


@dataclasses.dataclass(frozen=True)
class Architecture:
    """The MobileNetV3 a file holds: family, width, minimalistic or not."""

    family: str
    alpha: float
    minimalistic: bool
    blocks: tuple[BlockSpec, ...]
    depth_multiplier: float = 1.0

    def backbone_config(self) -> dict[str, Any]:
        """Backbone constructor arguments (without padding/eps/preprocessing)."""
        config: dict[str, Any] = {
            **architectures.to_stackwise(self.blocks),
            "alpha": self.alpha,
            "include_rescaling": True,
        }
        if self.minimalistic:
            config.update(stem_activation="relu", last_activation="relu")
        if self.depth_multiplier != 1:
            config["depth_multiplier"] = self.depth_multiplier
        return config

    @property
    def description(self) -> str:
        kind = "minimalistic " if self.minimalistic else ""
        depth = f" depth {self.depth_multiplier:g}" if self.depth_multiplier != 1 else ""
        return f"MobileNetV3-{self.family.title()} {kind}alpha {self.alpha:g}{depth}"


def infer_architecture(blocks: Sequence[BlockFacts], source: str) -> Architecture:
    """The MobileNetV3 whose blocks look like `blocks`.

    Raises:
        ValueError: when no Small/Large table at any candidate width fits,
            naming what the file holds.
    """
    if len(blocks) not in _FAMILIES:
        counts = {n: f"{family} depth {depth:g}" for n, (family, _, depth) in _FAMILIES.items()}
        raise ValueError(
            f"{source} holds {len(blocks)} inverted-residual blocks; a MobileNetV3 has "
            f"{counts}. It is not a MobileNetV3 checkpoint."
        )
    family, base, depth = _FAMILIES[len(blocks)]
    minimal = not any(b.has_se for b in blocks) and all(b.kernel_size == 3 for b in blocks)
    if minimal:
        base = architectures.minimalistic(base)
    table = architectures.scale_depth(base, depth)
    layout = [(b.kernel_size, b.has_se) for b in blocks]
    expected = [(spec.kernel_size, spec.se_ratio is not None) for spec in table]
    if layout != expected:
        raise ValueError(
            f"{source} has MobileNetV3-{family.title()}'s block count but other kernels or "
            f"squeeze-and-excite placement: (kernel, SE) per block {layout}, expected {expected}."
        )
    alpha = _infer_alpha(table, [b.out_channels for b in blocks], source)
    return Architecture(family, alpha, minimal, tuple(base), depth)


def _infer_alpha(table: Sequence[BlockSpec], out_channels: list[int], source: str) -> float:
    for alpha in CANDIDATE_ALPHAS:
        if [make_divisible(spec.filters * alpha) for spec in table] == out_channels:
            return alpha
    raise ValueError(
        f"{source}: block output channels {out_channels} match no width multiplier in "
        f"{list(CANDIDATE_ALPHAS)}."
    )
