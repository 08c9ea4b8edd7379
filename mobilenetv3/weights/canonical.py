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
    """
    variables = {v.path: v for v in model.weights}
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
