"""Atomic writes and argument checks shared across the package."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, directory: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to `path`; move it onto `path` on success.

    Nothing is left at `path` (or beside it) when the body raises, and an
    existing file or folder at `path` is replaced only once the new one is
    complete.
    """
    target = Path(path)
    if target.exists() and target.is_dir() != directory:
        kind = "a folder" if directory else "a file"
        raise ValueError(f"`path` {str(target)!r} exists and is not {kind}.")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging_dir = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    staging = staging_dir / target.name
    try:
        yield staging
        if not staging.exists():
            raise RuntimeError(f"nothing was written for {str(target)!r}.")
        _replace(staging, target)
    finally:
        shutil.rmtree(staging_dir, ignore_errors=True)


def _replace(staging: Path, target: Path) -> None:
    if target.is_dir():
        old = target.with_name(f".{target.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
        os.replace(staging, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, target)


def check_choice(argument: str, value: Any, allowed: tuple) -> Any:
    """Return `value` if it is one of `allowed`, else raise a ValueError."""
    if isinstance(value, bool) or value not in allowed:
        raise ValueError(f"`{argument}` must be one of {list(allowed)}; got {value!r}.")
    return value


def check_positive_int(argument: str, value: Any, minimum: int = 1) -> None:
    """Raise a ValueError naming `argument` unless `value` is an integer
    (not a bool) of at least `minimum`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"`{argument}` must be an integer >= {minimum}; got {value!r}.")


class classproperty:  # noqa: N801 - mirrors keras-cv's decorator name
    """A read-only property on the class itself (`Backbone.presets`)."""

    def __init__(self, getter: Callable) -> None:
        self.getter = getter

    def __get__(self, instance: Any, owner: type) -> Any:
        return self.getter(owner)


def check_positive_number(argument: str, value: Any) -> None:
    """Raise a ValueError naming `argument` unless `value` is a number (not
    a bool) above zero."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ValueError(f"`{argument}` must be a positive number; got {value!r}.")
