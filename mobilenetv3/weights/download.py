"""Downloads that are verified, cached, atomic and say clearly when they fail."""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import BinaryIO

from mobilenetv3.core.utils import atomic_path

CHUNK = 1 << 20


class DownloadError(RuntimeError):
    """A file could not be fetched, or what arrived is not the expected file."""


def cache_dir() -> Path:
    """`$MOBILENETV3_CACHE`, else `~/.cache/mobilenetv3`."""
    return Path(os.environ.get("MOBILENETV3_CACHE", Path.home() / ".cache" / "mobilenetv3"))


def file_hash(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify(path: str | os.PathLike, md5: str | None = None, sha256: str | None = None) -> None:
    """Raise `DownloadError` unless the file has the expected hash(es)."""
    for algorithm, expected in (("md5", md5), ("sha256", sha256)):
        if expected:
            actual = file_hash(path, algorithm)
            if actual != expected.lower():
                raise DownloadError(
                    f"{path}: {algorithm} is {actual}, expected {expected}. The file is "
                    "corrupted, truncated or a different file; delete it and download again."
                )


def _plain_name(name: str, url: str) -> str:
    """`name` if it is a plain file name (no folder part, not `.`/`..`)."""
    if (
        not isinstance(name, str)
        or name in ("", ".", "..")
        or name != os.path.basename(name)
        or "\\" in name
        or "\0" in name
        or name.startswith(".mobilenetv3")
    ):
        raise ValueError(
            f"`filename` must be a plain file name (no folders, not '.' or '..'); got {name!r} for {url}."
        )
    return name


def _progress(done: int, total: int | None, label: str) -> None:
    if total:
        width = 30
        filled = int(width * done / total)
        bar = "=" * filled + "." * (width - filled)
        sys.stderr.write(f"\r{label} [{bar}] {done / 1e6:.1f}/{total / 1e6:.1f} MB")
    else:
        sys.stderr.write(f"\r{label} {done / 1e6:.1f} MB")
    sys.stderr.flush()


def fetch(
    url: str,
    md5: str | None = None,
    sha256: str | None = None,
    filename: str | None = None,
    local_hint: str = "",
) -> Path:
    """Return a verified local copy of `url`, downloading it into the cache.

    A cached file is re-verified; a corrupted one is replaced. A download is
    written to a temp file and renamed only after its hash checks out.

    Args:
        url: the address (http(s) or file://).
        md5: expected md5 hex digest (as published by the source).
        sha256: expected sha256 hex digest.
        filename: name in the cache (default: the URL's last part).
        local_hint: how to pass a manually downloaded file instead, appended
            to the error when the download fails.

    Raises:
        DownloadError: with the URL, the reason, and how to load a local file.
        ValueError: `filename` is not a plain file name (a folder part, `..`).
    """
    target = cache_dir() / _plain_name(url.rsplit("/", 1)[-1] if filename is None else filename, url)
    if target.is_dir():
        raise DownloadError(f"Cache entry {target} is a folder, not a file; remove it and try again.")
    if target.exists():
        try:
            verify(target, md5, sha256)
            return target
        except DownloadError:
            with contextlib.suppress(FileNotFoundError):  # another process replaced it first.
                target.unlink()
    label = f"Downloading {target.name}"

    def write(out: BinaryIO) -> None:
        try:
            with urllib.request.urlopen(url, timeout=30) as response:
                total = int(response.headers.get("Content-Length") or 0) or None
                done = 0
                for chunk in iter(lambda: response.read(CHUNK), b""):
                    out.write(chunk)
                    done += len(chunk)
                    _progress(done, total, label)
                sys.stderr.write("\n")
                if total and done != total:
                    raise DownloadError(f"{url}: got {done} of {total} bytes (truncated).")
        except (urllib.error.URLError, OSError, TimeoutError) as error:
            reason = getattr(error, "reason", error)
            raise DownloadError(
                f"Could not download {url} ({reason}). Are you offline? Download the file "
                f"elsewhere and either put it at {target} or {local_hint or 'pass its path'}."
            ) from None

    with atomic_path(target) as staging:
        with open(staging, "wb") as out:
            write(out)
        verify(staging, md5, sha256)
    return target
