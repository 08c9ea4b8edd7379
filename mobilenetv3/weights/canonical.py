"""The one mapping interface every weights source goes through.

A source module reads its file into a dict of numpy arrays keyed by this
package's variable paths (`Keras variable.path`, e.g. `Conv/kernel`,
`expanded_conv_3_squeeze_excite/squeeze_conv/bias`) in Keras layouts. `assign`
then checks every name and shape against the model before writing anything,
so a wrong file fails loudly and leaves the model untouched.
"""

from __future__ import annotations

from collections.abc import Mapping

import keras
import numpy as np


class WeightsMismatchError(ValueError):
    """A weights file does not fit the model it is loaded into."""


class WeightsFileError(ValueError):
    """A weights file cannot be read or holds values no trained network has:
    corrupted, truncated, or another format."""


# Largest magnitude a plausible tensor holds. Real MobileNetV3 weights stay
# far below (the TF-slim releases, BatchNorm folded in: under 500); a flipped
# exponent bit goes far above. Moving statistics get more room.
MAX_ABS = 1e5
MAX_ABS_MOVING = 1e7


def check_tensors(tensors: Mapping[str, np.ndarray], source: str) -> None:
    """Refuse tensors no trained network has: NaN or Inf anywhere, negative
    BatchNorm moving variances, magnitudes over `MAX_ABS` (`MAX_ABS_MOVING`
    for moving statistics).

    Raises:
        WeightsFileError: naming the first bad tensor and what is wrong.
    """
    for path, value in tensors.items():
        array = np.asarray(value)
        if not np.issubdtype(array.dtype, np.floating) or not array.size:
            continue
        bad = int(array.size - np.count_nonzero(np.isfinite(array)))
        if bad:
            raise WeightsFileError(
                f"{source}: tensor '{path}' holds {bad} NaN/Inf values; the file is corrupted."
            )
        if path.endswith("moving_variance") and array.min() < 0:
            raise WeightsFileError(
                f"{source}: BatchNorm variance '{path}' has negative values (min {array.min():.3g}); "
                "the file is corrupted."
            )
        limit = MAX_ABS_MOVING if "/moving_" in path else MAX_ABS
        largest = float(np.abs(array).max())
        if largest > limit:
            raise WeightsFileError(
                f"{source}: tensor '{path}' has a value of magnitude {largest:.3g} (> {limit:.0e}, "
                "implausible for trained weights); the file is corrupted."
            )


def model_weights(model: keras.Model) -> dict[str, np.ndarray]:
    """Every variable of `model` as `{path: array}` (the canonical layout)."""
    return {v.path: keras.ops.convert_to_numpy(v) for v in model.weights}


def assign(
    model: keras.Model,
    tensors: Mapping[str, np.ndarray],
    source: str,
    allow_unused: tuple[str, ...] = (),
) -> None:
    """Write `tensors` into `model`'s variables after checking all of them.

    Args:
        model: the model to fill.
        tensors: canonical `{variable path: array}`.
        source: the file or handle the tensors came from, for messages.
        allow_unused: prefixes of tensor names the model may lack (e.g. a
            classifier head when loading only the backbone).

    Raises:
        WeightsMismatchError: naming the first variable that is missing or
            whose shape differs, with both shapes.
        WeightsFileError: a tensor fails `check_tensors` (NaN/Inf, negative
            variance, implausible magnitude).
    """
    variables = {v.path: v for v in model.weights}
    check_tensors(tensors, source)
    for path, variable in variables.items():
        if path not in tensors:
            raise WeightsMismatchError(
                f"{source} has no weights for layer variable '{path}' (shape "
                f"{tuple(variable.shape)}) of model '{model.name}': the file holds another "
                "architecture or variant. First names in the file: "
                f"{sorted(tensors)[:5]}."
            )
        got = tuple(np.shape(tensors[path]))
        if got != tuple(variable.shape):
            layer = path.rsplit("/", 1)[0]
            raise WeightsMismatchError(
                f"Shape mismatch at layer '{layer}' ({path}): {source} has {got}, the model "
                f"expects {tuple(variable.shape)}. The file was made for another "
                "architecture, width (alpha) or variant."
            )
    unused = [k for k in tensors if k not in variables and not k.startswith(allow_unused)]
    if unused:
        raise WeightsMismatchError(
            f"{source} holds {len(unused)} tensors that model '{model.name}' has no place "
            f"for, e.g. {unused[:3]}: the file holds another architecture or variant."
        )
    for path, variable in variables.items():
        variable.assign(np.asarray(tensors[path], dtype=variable.dtype))
