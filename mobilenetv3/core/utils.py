"""Atomic writes and argument checks shared across the package."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import socket
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

# The argument checks live in `validation`; these names stay importable from here.
from mobilenetv3.core.validation import check_choice, check_positive_int, check_positive_number  # noqa: F401

# Every atomic write stages inside this one folder beside its destination, in
# a subfolder named "<pid>@<host>-<name>-<random>"; `scratch_dir` uses the
# same layout under `$TMPDIR`. Each new write (or `clean_staging`) removes
# the subfolders of processes of this host that no longer run (killed
# mid-write), and the folder itself goes once it is empty.
STAGING_DIR = ".mobilenetv3-staging"
SCRATCH_DIR = "mobilenetv3-scratch"
# Subfolders older than this are removed even when their pid seems alive
# (a reused pid, or a writer on another host of a shared filesystem).
STALE_AFTER_S = 24 * 3600
_REPLACE_ATTEMPTS = 200
# The exit status of a process of a multi-process job that its stall watchdog
# ended (`mobilenetv3.training.distributed.stall_watchdog`); here, where the
# `train` command's watcher reads it without importing Keras.
STALLED_EXIT_CODE = 3


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, directory: bool = False) -> Iterator[Path]:
    """Yield a temporary path; move it onto `path` once the body succeeds.

    The temporary path lies in `<parent>/.mobilenetv3-staging/` (same
    filesystem, so the final move is a rename). Nothing is left at `path`
    or beside it when the body raises; an existing file or folder at `path`
    (or a symlink there, which is replaced, not followed) is replaced only
    once the new one is complete. Writers killed mid-write leave their
    staging subfolder behind; the next write into the same parent folder,
    or `clean_staging(parent)`, removes it. Two processes writing the same
    `path` at once both succeed; the last one to finish wins.

    Example:

    ```python
    with atomic_path("out.txt") as staging:
        staging.write_text("complete or absent")
    ```
    """
    target = Path(path)
    if _is_dir(target) not in (None, directory):
        kind = "a folder" if directory else "a file"
        raise ValueError(f"`path` {str(target)!r} exists and is not {kind}.")
    with _disk_full_named(f"writing {str(target)!r}", target.parent):
        target.parent.mkdir(parents=True, exist_ok=True)
    doing, outcome = f"writing {str(target)!r}", "nothing was written there (an existing copy is left as it was)"
    with _private_dir(target.parent / STAGING_DIR, target.name, doing, outcome, disk=target.parent) as staging_dir:
        staging = staging_dir / target.name
        yield staging
        if not staging.exists():
            raise RuntimeError(f"nothing was written for {str(target)!r}.")
        _replace(staging, target, staging_dir / ".old")


@contextlib.contextmanager
def scratch_dir(label: str) -> Iterator[Path]:
    """A temporary folder under `$TMPDIR/mobilenetv3-scratch/`, removed on
    exit; ones left by killed processes are removed by the next call.

    Example:

    ```python
    with scratch_dir("tflite") as folder:
        (folder / "saved_model").mkdir()
    ```
    """
    root = Path(tempfile.gettempdir()) / SCRATCH_DIR
    with _private_dir(root, label, f"in the temporary folder {str(root)!r} (set TMPDIR to a folder with room)") as folder:
        yield folder


def clean_staging(directory: str | os.PathLike) -> list[Path]:
    """Remove what killed writers left in `directory`'s staging folder (and
    in the `$TMPDIR` scratch folder); return the subfolders removed.

    Example:

    ```python
    clean_staging("presets/")
    ```
    """
    removed = []
    for root in (Path(directory) / STAGING_DIR, Path(tempfile.gettempdir()) / SCRATCH_DIR):
        removed += _remove_stale(root)
        with contextlib.suppress(OSError):
            root.rmdir()  # only when empty
    return removed


class DiskFullError(OSError):
    """A write failed because its disk (or the user's quota) is full; the
    one-line message names the path being written and the folder whose disk
    is full. `errno` is `ENOSPC`; `str()` is the message alone."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.errno = errno.ENOSPC


# Below this many free bytes, a failed write is taken for a full disk even
# when the writer's error does not say so (OpenVINO's "basic_ios::clear:
# iostream error", TensorFlow's ResourceExhaustedError, HDF5's messages).
LOW_SPACE_BYTES = 1 << 20
_FULL_DISK_ERRNOS = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))
_FULL_DISK_TEXTS = ("no space left on device", "errno = 28", "disk quota exceeded", "[errno 28]")


def full_disk_error(error: BaseException, folder: str | os.PathLike, doing: str, outcome: str = "") -> DiskFullError | None:
    """A `DiskFullError` saying "No space left on device {doing}" when
    `error` (raised writing into `folder`) comes from a full disk, else None.

    A full disk is recognized by the error's errno or text (`ENOSPC`,
    `EDQUOT`, "No space left on device", HDF5's "errno = 28"), or, for
    writers whose errors do not say (OpenVINO's `RuntimeError`, TensorFlow's
    `ResourceExhaustedError`), by an I/O error while the disk of `folder`
    has less than `LOW_SPACE_BYTES` free. Check right after the failure,
    before removing what was written: that frees the space again.

    Example:

    ```python
    try:
        Path("out/model.onnx").write_bytes(data)
    except OSError as error:
        raise full_disk_error(error, "out", "writing 'out/model.onnx'") or error
    ```
    """
    if isinstance(error, DiskFullError) or not isinstance(error, Exception):
        return None
    free = _free_bytes(Path(folder))
    said = getattr(error, "errno", None) in _FULL_DISK_ERRNOS or any(
        text in str(error).lower() for text in _FULL_DISK_TEXTS
    )
    # Only I/O-like errors count on low space alone (not a ValueError of the writer's own checks).
    io_like = isinstance(error, (OSError, RuntimeError)) or any(
        cls.__name__ == "OpError" for cls in type(error).__mro__
    )
    if not said and not (io_like and free is not None and free < LOW_SPACE_BYTES):
        return None
    room = "" if free is None else f" ({_size(free)} free)"
    message = f"No space left on device {doing}: the disk holding {str(folder)!r} is full{room}"
    return DiskFullError(message + (f"; {outcome}." if outcome else "."))


@contextlib.contextmanager
def _disk_full_named(doing: str, folder: Path, outcome: str = "") -> Iterator[None]:
    """Re-raise a full disk's error inside as one `DiskFullError` line."""
    try:
        yield
    except Exception as error:
        full = full_disk_error(error, folder, doing, outcome)
        if full is None:
            raise
        raise full from None


def _free_bytes(folder: Path) -> int | None:
    for candidate in (folder, *folder.parents):
        try:
            return shutil.disk_usage(candidate).free
        except OSError:
            continue
    return None


def _size(count: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count} {unit}" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count} bytes"


@contextlib.contextmanager
def _private_dir(root: Path, label: str, doing: str, outcome: str = "", disk: Path | None = None) -> Iterator[Path]:
    """A new subfolder of `root` for one writer, removed on exit. An error of
    a full disk raised inside (or making it) becomes one `DiskFullError`
    line saying what was being done (`doing`), which disk is full (the one
    holding `disk`, default `root`) and `outcome`."""
    _remove_stale(root)
    disk = root if disk is None else disk
    with _disk_full_named(doing, disk, outcome):
        folder = _make_private(root, label)
    try:
        with _disk_full_named(doing, disk, outcome):
            yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        with contextlib.suppress(OSError):
            root.rmdir()  # only when empty: other writers may be staging here.


def _make_private(root: Path, label: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "._" else "_" for c in label)[:60]
    for _ in range(_REPLACE_ATTEMPTS):
        root.mkdir(parents=True, exist_ok=True)
        try:
            return Path(tempfile.mkdtemp(dir=root, prefix=f"{os.getpid()}@{_host()}-{safe}-"))
        except FileNotFoundError:
            continue  # another writer removed the empty root in between.
    raise OSError(f"could not create a staging folder in {root}.")


def _remove_stale(root: Path) -> list[Path]:
    try:
        entries = list(root.iterdir())
    except OSError:
        return []
    removed = []
    for entry in entries:
        if _is_stale(entry):
            _remove(entry)
            removed.append(entry)
    return removed


def _host() -> str:
    return "".join(c for c in socket.gethostname() if c.isalnum())[:30] or "host"


def _is_stale(entry: Path) -> bool:
    """A writer's subfolder whose process is gone: same host and pid not
    running, or (another host, container or unknown name) older than a day."""
    pid_text, _, host = entry.name.split("-", 1)[0].partition("@")
    try:
        age = time.time() - entry.lstat().st_mtime
    except OSError:
        return False
    if age > STALE_AFTER_S:
        return True
    return pid_text.isdigit() and host == _host() and not _pid_alive(int(pid_text))


def _pid_alive(pid: int) -> bool:
    if os.name == "nt":  # os.kill(pid, 0) would terminate it; rely on age there.
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else.
    return True


def _is_dir(path: Path) -> bool | None:
    """Whether `path` is a folder (following symlinks); None when nothing is
    there. One `stat`: another writer may be swapping `path` meanwhile."""
    try:
        return stat.S_ISDIR(path.stat().st_mode)
    except FileNotFoundError:
        return None


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink()


def _replace(staging: Path, target: Path, aside: Path) -> None:
    """Rename `staging` onto `target`. A folder (or a symlink) at `target` is
    first moved into `aside` (inside the staging folder, removed with it);
    when another writer gets in between, try again."""
    if not staging.is_dir():
        os.replace(staging, target)  # atomic for files, whatever is there.
        return
    for attempt in range(_REPLACE_ATTEMPTS):
        if target.is_symlink() or target.exists():
            try:
                _remove(aside)
                os.replace(target, aside)
            except FileNotFoundError:
                pass  # another writer moved it first.
        try:
            os.replace(staging, target)
            return
        except OSError as error:
            if error.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR, errno.EISDIR):
                raise
            time.sleep(0.001 * (attempt % 10))  # another writer's folder landed first.
    raise OSError(f"could not replace {target}: other processes keep writing it.")


class classproperty:  # noqa: N801 - mirrors keras-cv's decorator name
    """A read-only property on the class itself (`Backbone.presets`)."""

    def __init__(self, getter: Callable) -> None:
        self.getter = getter

    def __get__(self, instance: Any, owner: type) -> Any:
        return self.getter(owner)


class MissingExtraError(ImportError):
    """An optional dependency is not installed; the message names the
    `pip install "mobilenetv3[extra]"` that brings it."""


def import_optional(module: str, extra: str, purpose: str) -> Any:
    """`import module`, or a one-line `MissingExtraError` naming the extra.

    Example:

    ```python
    from mobilenetv3.core.utils import import_optional

    np = import_optional("numpy", "all", "this example")
    ```
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtraError(
            f"{purpose} needs the `{module.split('.')[0]}` package, which is not installed: "
            f"pip install \"mobilenetv3[{extra}]\""
        ) from None
