"""The one reader of PyTorch weight files (torchvision and timm `.pth`).

`load_state_dict` checks a zip archive's CRC32s before `torch.load` (which
does not check them), always loads with `weights_only=True` (nothing but
tensors and plain containers is ever unpickled), unwraps the usual
checkpoint wrappers and returns float32 numpy arrays. Every failure is a
`WeightsFileError` that names the file and never advises
`weights_only=False`.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from collections.abc import Mapping

import numpy as np

from mobilenetv3.core.utils import import_optional
from mobilenetv3.weights.canonical import WeightsFileError

# Training scripts wrap the state dict: timm (EMA first), torchvision references.
WRAPPERS = ("state_dict_ema", "state_dict", "model")


def load_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """`{name: float32 array}` of a torch state-dict file, checked.

    Raises:
        WeightsFileError: not a file, a corrupted or truncated archive (CRC
            mismatch), Python objects other than tensors, a single tensor
            or anything else that is not a state dict.
    """
    torch = import_optional("torch", "torch", f"Reading the PyTorch weights file {path}")
    path = str(path)
    if not os.path.isfile(path):
        raise WeightsFileError(f"No such weights file: {path}.")
    _check_zip(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise WeightsFileError(
            f"{path} holds Python objects other than tensors (a pickled model or training "
            "state, not a plain state dict). This package loads only state dicts of tensors "
            "and never unpickles other objects; save `model.state_dict()` instead."
        ) from None
    except Exception as error:  # torch raises many types for bad files.
        reason = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
        reason = "" if "weights_only" in reason else f": {reason}"
        raise WeightsFileError(
            f"{path} is not a readable PyTorch state dict (truncated or corrupted?){reason}"
        ) from None
    return _arrays(obj, path)


def _check_zip(path: str) -> None:
    if not zipfile.is_zipfile(path):
        return  # torch's legacy (pre-1.6) format carries no checksums.
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as error:
        raise WeightsFileError(f"{path} is a truncated or corrupted PyTorch archive ({error}).") from None
    if bad is not None:
        raise WeightsFileError(
            f"{path} is corrupted: the CRC32 of archive member {bad!r} does not match its "
            "contents. Download the file again."
        )


def _arrays(obj: object, path: str) -> dict[str, np.ndarray]:
    torch = import_optional("torch", "torch", f"Reading the PyTorch weights file {path}")

    if isinstance(obj, torch.Tensor):
        raise WeightsFileError(
            f"{path} holds a single tensor of shape {tuple(obj.shape)}, not a state dict "
            "({name: tensor}); save `model.state_dict()`."
        )
    for wrapper in WRAPPERS:
        if isinstance(obj, Mapping) and isinstance(obj.get(wrapper), Mapping):
            obj = obj[wrapper]
            break
    if not isinstance(obj, Mapping):
        raise WeightsFileError(f"{path} holds a {type(obj).__name__}, not a state dict ({{name: tensor}}).")
    arrays = {
        str(key).removeprefix("module."): value.detach().cpu().float().numpy()
        for key, value in obj.items()
        if isinstance(value, torch.Tensor)
    }
    if not arrays:
        raise WeightsFileError(f"{path} holds a dict without tensors, not a state dict.")
    return arrays
