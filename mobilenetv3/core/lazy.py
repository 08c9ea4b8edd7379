"""Packages whose public names load on first use (PEP 562)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_attributes(package: str, exports: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list]]:
    """`(__getattr__, __dir__)` for `package`, whose public names are
    defined in other modules: `exports` maps each name to its module's
    absolute name, imported when the name is first read (and then kept).

    Example:

    ```python
    __getattr__, __dir__ = lazy_attributes(__name__, {"export_onnx": "mobilenetv3.export.onnx_export"})
    ```
    """

    def getattr_(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(exports[name]), name)
        setattr(importlib.import_module(package), name, value)
        return value

    def dir_() -> list:
        return sorted({*vars(importlib.import_module(package)), *exports})

    return getattr_, dir_
