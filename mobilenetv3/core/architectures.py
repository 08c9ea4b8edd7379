"""MobileNetV3 architectures as data.

Each architecture is a short table of inverted-residual blocks. The keras-cv
``stackwise_*`` arguments are the columns of that table; `BlockSpec` is a row.
Everything else (the builder, presets, feature taps) is derived from it.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import re
from collections.abc import Sequence
from typing import Any

from mobilenetv3.core import validation

RE, HS = "relu", "hard_swish"
STRIDES = (1, 2)  # per block; the pyramid levels and output strides assume halving

STACKWISE_FIELDS = (
    "stackwise_expansion",
    "stackwise_filters",
    "stackwise_kernel_size",
    "stackwise_stride",
    "stackwise_se_ratio",
    "stackwise_activation",
)


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round a channel count to a multiple of `divisor`, losing at most 10%."""
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


@dataclasses.dataclass(frozen=True)
class BlockSpec:
    """One inverted-residual block: a row of the architecture table.

    `expansion` is a ratio of the block's *input* channels (keras-cv's
    convention); `filters` is the output width before `alpha` scaling.
    """

    expansion: float
    filters: int
    kernel_size: int
    stride: int
    se_ratio: float | None
    activation: str


# (expansion, filters, kernel, stride, se_ratio, activation): the paper's Table 1
# and 2 restated with expansion as a ratio of input channels.
_SMALL_ROWS = [
    (1, 16, 3, 2, 0.25, RE),
    (72 / 16, 24, 3, 2, None, RE),
    (88 / 24, 24, 3, 1, None, RE),
    (4, 40, 5, 2, 0.25, HS),
    (6, 40, 5, 1, 0.25, HS),
    (6, 40, 5, 1, 0.25, HS),
    (3, 48, 5, 1, 0.25, HS),
    (3, 48, 5, 1, 0.25, HS),
    (6, 96, 5, 2, 0.25, HS),
    (6, 96, 5, 1, 0.25, HS),
    (6, 96, 5, 1, 0.25, HS),
]

_LARGE_ROWS = [
    (1, 16, 3, 1, None, RE),
    (4, 24, 3, 2, None, RE),
    (3, 24, 3, 1, None, RE),
    (3, 40, 5, 2, 0.25, RE),
    (3, 40, 5, 1, 0.25, RE),
    (3, 40, 5, 1, 0.25, RE),
    (6, 80, 3, 2, None, HS),
    (2.5, 80, 3, 1, None, HS),
    (2.3, 80, 3, 1, None, HS),
    (2.3, 80, 3, 1, None, HS),
    (6, 112, 3, 1, 0.25, HS),
    (6, 112, 3, 1, 0.25, HS),
    (6, 160, 5, 2, 0.25, HS),
    (6, 160, 5, 1, 0.25, HS),
    (6, 160, 5, 1, 0.25, HS),
]

SMALL_BLOCKS = tuple(BlockSpec(*row) for row in _SMALL_ROWS)
LARGE_BLOCKS = tuple(BlockSpec(*row) for row in _LARGE_ROWS)


def stages(blocks: Sequence[BlockSpec]) -> list[list[int]]:
    """Block indices per stage: a stage starts at the first block, at every
    strided block and wherever the output width changes (timm's stages)."""
    groups: list[list[int]] = []
    for index, block in enumerate(blocks):
        if not groups or block.stride > 1 or block.filters != blocks[index - 1].filters:
            groups.append([])
        groups[-1].append(index)
    return groups


def scale_depth(blocks: Sequence[BlockSpec], multiplier: float) -> tuple[BlockSpec, ...]:
    """timm's depth multiplier (`_scale_stage_depth`, "ceil"): each stage's
    block count becomes ceil(count * multiplier), shared out over the stage's
    runs of identical rows from the last run backwards; repeats have stride 1.

    Example:

    ```python
    len(scale_depth(LARGE_BLOCKS, 1.2))  # 21, as timm's mobilenetv3_large_150d
    ```
    """
    if multiplier == 1:
        return tuple(blocks)
    scaled: list[BlockSpec] = []
    for stage in stages(blocks):
        runs: list[list[Any]] = []  # [spec, repeats]
        for index in stage:
            if runs and runs[-1][0] == blocks[index] and blocks[index].stride == 1:
                runs[-1][1] += 1
            else:
                runs.append([blocks[index], 1])
        for spec, count in zip([r[0] for r in runs], repeat_counts([r[1] for r in runs], multiplier)):
            scaled += [spec] + [dataclasses.replace(spec, stride=1)] * (count - 1)
    return tuple(scaled)


def repeat_counts(repeats: Sequence[int], multiplier: float) -> list[int]:
    """timm's split of a stage's scaled depth over its runs (last run first)."""
    total, target = sum(repeats), math.ceil(sum(repeats) * multiplier)
    counts = []
    for count in reversed(repeats):
        share = max(1, round(count / total * target))
        counts.append(share)
        total, target = total - count, target - share
    return counts[::-1]


def minimalistic(blocks: Sequence[BlockSpec]) -> tuple[BlockSpec, ...]:
    """TF-slim's minimalistic variant: 3x3 kernels, ReLU everywhere, no SE."""
    return tuple(
        dataclasses.replace(b, kernel_size=3, se_ratio=None, activation=RE) for b in blocks
    )


def to_stackwise(blocks: Sequence[BlockSpec]) -> dict[str, list[Any]]:
    """Columns of a block table, as the keras-cv `stackwise_*` arguments."""
    names = [f.name for f in dataclasses.fields(BlockSpec)]
    return {f"stackwise_{n}": [getattr(b, n) for b in blocks] for n in names}


def from_stackwise(**stackwise: Sequence[Any]) -> tuple[BlockSpec, ...]:
    """Rows of a block table from the keras-cv `stackwise_*` arguments.

    Raises:
        TypeError: when an argument is not a list.
        ValueError: when the lists are empty, differ in length, or hold
            values no block can have (see `validation` for the limits).
            The message names the argument.
    """
    columns = {name: validation.check_list(name, stackwise[name], validation.MAX_BLOCKS) for name in STACKWISE_FIELDS}
    lengths = {name: len(column) for name, column in columns.items()}
    if len(set(lengths.values())) != 1 or 0 in lengths.values():
        usual = collections.Counter(lengths.values()).most_common(1)[0][0]
        odd = [f"`{name}`" for name, length in lengths.items() if length != usual or not length]
        raise ValueError(
            f"{', '.join(odd) or 'Every list'}: the `stackwise_*` arguments must be non-empty lists of equal "
            f"length (one entry per block); got lengths {lengths}."
        )
    return tuple(_checked_block(index, *row) for index, row in enumerate(zip(*columns.values())))


def _checked_block(
    index: int, expansion: Any, filters: Any, kernel_size: Any, stride: Any, se_ratio: Any, activation: Any
) -> BlockSpec:
    """One row, checked and as plain Python values."""
    if se_ratio is not None:
        number = validation.is_number(se_ratio)
        if not number or not 0 < se_ratio <= 1:  # NaN fails the comparison
            raise (ValueError if number else TypeError)(
                f"`stackwise_se_ratio[{index}]` must be None (no squeeze-and-excite) or a number in (0, 1]; "
                f"got {se_ratio!r}."
            )
        se_ratio = float(se_ratio)
    return BlockSpec(
        expansion=validation.check_positive_number(f"stackwise_expansion[{index}]", expansion,
                                                   validation.MAX_EXPANSION),
        filters=validation.check_int(f"stackwise_filters[{index}]", filters, 1, validation.MAX_WIDTH),
        kernel_size=validation.check_int(f"stackwise_kernel_size[{index}]", kernel_size, 1,
                                         validation.MAX_KERNEL_SIZE),
        stride=validation.check_choice(f"stackwise_stride[{index}]", stride, STRIDES),
        se_ratio=se_ratio,
        activation=activation,
    )


def check_widths(blocks: Sequence[BlockSpec], alpha: float, stem_filters: int, last_expansion: int) -> None:
    """A ValueError naming the block's arguments when any layer would be
    wider than `validation.MAX_WIDTH` channels (checked before building)."""
    width = stem_filters
    for index, block in enumerate(blocks):
        expanded = make_divisible(width * block.expansion)
        width = make_divisible(block.filters * alpha)
        if max(expanded, width) > validation.MAX_WIDTH:
            raise ValueError(
                f"Block {index} would have {max(expanded, width):,} channels (`stackwise_filters[{index}]` * "
                f"`alpha`, and the input times `stackwise_expansion[{index}]`), more than the "
                f"{validation.MAX_WIDTH} allowed."
            )
    if make_divisible(width * last_expansion) > validation.MAX_WIDTH:
        raise ValueError(
            f"The last 1x1 conv would have {make_divisible(width * last_expansion):,} channels "
            f"(`stackwise_filters[-1]` * `alpha` * {last_expansion}), more than the {validation.MAX_WIDTH} allowed."
        )


# Layer names of the blocks, keras.applications' (and so every weight
# reader's): block 0's layers start with `expanded_conv_`, block i's with
# `expanded_conv_{i}_`; the backbone's feature tap after block i is `block_{i}`.
_BLOCK_LAYER = re.compile(r"^expanded_conv(?:_(\d+))?_")


def block_prefix(index: int) -> str:
    """The name prefix of block `index`'s layers.

    Example:

    ```python
    block_prefix(0), block_prefix(3)  # ('expanded_conv_', 'expanded_conv_3_')
    ```
    """
    return f"expanded_conv_{index}_" if index else "expanded_conv_"


def block_index(layer_name: str) -> int | None:
    """The block a backbone layer belongs to (`expanded_conv_3_...` -> 3;
    `expanded_conv_...` -> 0), or None for the stem and the last conv.

    Example:

    ```python
    block_index("expanded_conv_3_project"), block_index("Conv_1")  # (3, None)
    ```
    """
    match = _BLOCK_LAYER.match(layer_name)
    if match is None:
        return None
    return int(match.group(1)) if match.group(1) else 0


def block_tap(index: int) -> str:
    """The backbone's feature name of block `index`'s output."""
    return f"block_{index}"


def same_padding(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int, int]:
    """TF "SAME": (pad before, pad after, output size) along one axis."""
    effective = (kernel - 1) * dilation + 1
    out = -(-size // stride)
    total = max((out - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2, out
