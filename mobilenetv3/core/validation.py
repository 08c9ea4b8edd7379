"""Argument checks: the one validation layer of every constructor and loader.

Each check names the argument, says what is allowed, and returns the value
as a plain Python value (numpy scalars such as `np.int64(16)` or
`np.float32(0.25)` are accepted wherever a Python number is, and come back
as `int` / `float`, so configs stay JSON-serializable).

Upper bounds (documented in docs/reliability.md, "Argument limits"): sizes beyond
them are refused before any tensor is allocated.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from mobilenetv3.core.images import MAX_INPUT_SIDE

MAX_WIDTH = 8192  # channels of any layer (after `alpha` and expansion)
MAX_ALPHA = 8.0
MAX_EXPANSION = 32.0
MAX_KERNEL_SIZE = 15
MAX_BLOCKS = 256
MAX_DEPTH_MULTIPLIER = 8.0
MAX_CLASSES = 100_000
MAX_BN_EPSILON = 1.0
# keyword arguments a functional keras.Model uses (it drops any other silently).
KERAS_MODEL_KWARGS = ("name", "trainable")

__all__ = [
    "KERAS_MODEL_KWARGS", "MAX_ALPHA", "MAX_BLOCKS", "MAX_BN_EPSILON", "MAX_CLASSES", "MAX_DEPTH_MULTIPLIER",
    "MAX_EXPANSION", "MAX_INPUT_SIDE", "MAX_KERNEL_SIZE", "MAX_WIDTH", "check_bool", "check_choice", "check_int",
    "check_class_labels", "check_keywords", "check_list", "check_number", "check_optional_name", "check_positive_int",
    "check_positive_number", "is_integer", "is_number",
]


def is_integer(value: Any) -> bool:
    """An integer (Python or numpy), not a bool."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def is_number(value: Any) -> bool:
    """A real number (Python or numpy integer or float), not a bool."""
    return is_integer(value) or isinstance(value, (float, np.floating))


def check_bool(argument: str, value: Any) -> bool:
    """`value` as a bool; a ValueError naming `argument` unless it is True
    or False (a string such as "no" is refused, not read as truthy)."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"`{argument}` must be True or False; got {value!r} of type {type(value).__name__}.")
    return bool(value)


def check_int(argument: str, value: Any, minimum: int = 1, maximum: int | None = None) -> int:
    """`value` as an int in `[minimum, maximum]`; a ValueError naming
    `argument` otherwise (floats such as 16.0 are refused: integers only).

    Example:

    ```python
    check_int("num_classes", np.int64(10))  # 10
    ```
    """
    if not is_integer(value) or value < minimum or (maximum is not None and value > maximum):
        upper = f" and <= {maximum:,}" if maximum is not None else ""
        raise ValueError(f"`{argument}` must be an integer >= {minimum}{upper}; got {value!r}.")
    return int(value)


def check_number(
    argument: str,
    value: Any,
    minimum: float | None = None,
    maximum: float | None = None,
    *,
    open_minimum: bool = False,
    open_maximum: bool = False,
) -> float:
    """`value` as a finite float within the bounds; a ValueError naming
    `argument` otherwise (NaN, infinities and bools are refused).

    Example:

    ```python
    check_number("dropout", 0.2, 0, 1, open_maximum=True)  # 0.2
    ```
    """
    ok = is_number(value) and math.isfinite(float(value))
    if ok and minimum is not None:
        ok = value > minimum if open_minimum else value >= minimum
    if ok and maximum is not None:
        ok = value < maximum if open_maximum else value <= maximum
    if not ok:
        raise ValueError(
            f"`{argument}` must be {_describe_range(minimum, maximum, open_minimum, open_maximum)}; got {value!r}."
        )
    return int(value) if is_integer(value) else float(value)


def _describe_range(minimum: float | None, maximum: float | None, open_minimum: bool, open_maximum: bool) -> str:
    if minimum == 0 and open_minimum:
        return "a positive number" + (f" (at most {maximum:g})" if maximum is not None else "")
    if minimum is None and maximum is None:
        return "a finite number"
    low = "(-inf" if minimum is None else f"{'(' if open_minimum else '['}{minimum:g}"
    high = "inf)" if maximum is None else f"{maximum:g}{')' if open_maximum else ']'}"
    return f"a number in {low}, {high}"


def check_positive_int(argument: str, value: Any, minimum: int = 1) -> int:
    """`check_int` without an upper bound."""
    return check_int(argument, value, minimum)


def check_positive_number(argument: str, value: Any, maximum: float | None = None) -> float:
    """A finite number above zero (at most `maximum`)."""
    return check_number(argument, value, 0, maximum, open_minimum=True)


def check_choice(argument: str, value: Any, allowed: Sequence) -> Any:
    """The element of `allowed` equal to `value` (so `np.int64(16)` gives
    16), else a ValueError naming `argument` and the allowed values."""
    if not isinstance(value, (bool, np.bool_)):
        for choice in allowed:
            if type(choice) is type(value) or (is_integer(choice) and is_integer(value)):
                if choice == value:
                    return choice
    raise ValueError(f"`{argument}` must be one of {list(allowed)}; got {value!r}.")


def check_list(argument: str, value: Any, max_length: int | None = None) -> list:
    """`value` (a list, tuple or 1-D array) as a list; a TypeError naming
    `argument` for None, a string, a scalar or a mapping."""
    if isinstance(value, np.ndarray) and value.ndim == 1:
        value = value.tolist()
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"`{argument}` must be a list (one entry per block); got {value!r} of type "
                        f"{type(value).__name__}.")
    if max_length is not None and len(value) > max_length:
        raise ValueError(f"`{argument}` has {len(value)} entries; at most {max_length} are allowed.")
    return list(value)


def check_optional_name(argument: str, value: Any) -> str | None:
    """None or a string (an activation or layer name), else a TypeError."""
    if value is not None and not isinstance(value, str):
        raise TypeError(f"`{argument}` must be None or a name (a string); got {value!r} of type "
                        f"{type(value).__name__}.")
    return value


def check_keywords(owner: str, kwargs: Iterable[str], valid: Iterable[str]) -> None:
    """A TypeError naming the first keyword argument of `kwargs` that is not
    in `valid`, with the closest valid names (a typo such as
    `include_rescalling` must not pass silently).

    Example:

    ```python
    check_keywords("MobileNetV3Backbone", ["include_rescalling"], ["include_rescaling", "name"])
    # TypeError: ... `include_rescalling`; did you mean `include_rescaling`? ...
    ```
    """
    valid = sorted(set(valid))
    for key in kwargs:
        if key in valid:
            continue
        close = difflib.get_close_matches(str(key), valid, n=3, cutoff=0.6)
        hint = f" Did you mean {' or '.join(f'`{c}`' for c in close)}?" if close else ""
        raise TypeError(
            f"{owner} got an unknown keyword argument `{key}`.{hint} Valid arguments: {', '.join(valid)}."
        )


# Elements checked per numpy pass by `check_class_labels` (bounds its temporaries).
_LABEL_CHUNK = 1 << 24


def check_class_labels(
    labels: Any,
    num_classes: int,
    *,
    ignore_index: int | None = None,
    source: str = "`y`",
    axes: Sequence[str] = (),
) -> None:
    """Check sparse class labels (a classifier's labels, a segmenter's
    masks): a ValueError naming `source` and the first bad element unless
    every value is an integer in `[0, num_classes)` or `ignore_index`.

    Floats are accepted when they hold whole numbers (a fractional label
    would be truncated silently), booleans as 0 and 1. One vectorized pass on
    the host, in chunks; nothing is copied beyond a chunk.

    Args:
        labels: an array (any shape) of class indices.
        num_classes: labels must be below this.
        ignore_index: one more allowed value (a loss's `ignore_class`,
            e.g. 255 or -1), or None.
        source: what the labels are, for the message (e.g. "`y`", or a
            mask file's path).
        axes: names of the leading axes for the message, e.g.
            `("image", "row", "column")`; unnamed axes print as indices.

    Example:

    ```python
    check_class_labels(np.array([0, 2, 1]), 3)
    check_class_labels(np.array([[0, 255]]), 2, ignore_index=255)
    check_class_labels(np.array([0, 3]), 3)  # ValueError: `y` ... 3 ...
    ```
    """
    array = np.asarray(labels)
    if array.dtype == np.bool_:
        return
    allowed = f"integers in [0, {num_classes})" + ("" if ignore_index is None else f" or {ignore_index} (ignored)")
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise ValueError(f"{source} must hold class labels, {allowed}; got dtype {array.dtype}.")
    flat = array.reshape(-1)
    for start in range(0, flat.size, _LABEL_CHUNK):
        chunk = flat[start : start + _LABEL_CHUNK]
        bad = (chunk < 0) | (chunk >= num_classes)
        if np.issubdtype(chunk.dtype, np.floating):
            bad |= ~np.isfinite(chunk) | (chunk != np.floor(chunk))
        if ignore_index is not None:
            bad &= chunk != ignore_index
        if bad.any():
            position = np.unravel_index(start + int(np.argmax(bad)), array.shape)
            value = array[position]
            where = ", ".join(
                f"{axes[i]} {int(p)}" if i < len(axes) else f"index {int(p)}" for i, p in enumerate(position)
            )
            kind = "a fractional label" if np.isfinite(value) and value != np.floor(value) else "a label"
            raise ValueError(
                f"{source} holds {kind} {value.item()!r} at {where or 'its only element'}; class labels must be "
                f"{allowed}."
            )


def check_job_arguments(job_addresses: str | Sequence[str], num_processes: Any, process_id: Any,
                        timeout_s: Any) -> list[str]:
    """Check the arguments of a multi-process job
    (`mobilenetv3.training.distributed.join_data_parallel`) without starting
    anything; return the `host:port` addresses as a list.

    Example:

    ```python
    check_job_arguments("10.0.0.1:7000,10.0.0.2:7000", 2, 0, 900)  # ['10.0.0.1:7000', '10.0.0.2:7000']
    ```
    """
    addresses = job_addresses.split(",") if isinstance(job_addresses, str) else list(job_addresses)
    addresses = [a.strip() for a in addresses if a.strip()]
    for address in addresses:
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"`job_addresses` must be 'host:port' entries; got {address!r}.")
    if isinstance(num_processes, bool) or not isinstance(num_processes, int) or num_processes < 1:
        raise ValueError(f"`num_processes` must be an integer >= 1; got {num_processes!r}.")
    if isinstance(process_id, bool) or not isinstance(process_id, int) or not 0 <= process_id < num_processes:
        raise ValueError(f"`process_id` must be an integer from 0 to {num_processes - 1}; got {process_id!r}.")
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) or not timeout_s > 0:
        raise ValueError(f"`timeout_s` must be a number of seconds > 0; got {timeout_s!r}.")
    return addresses
