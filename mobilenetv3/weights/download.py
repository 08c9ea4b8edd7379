"""Downloads that are verified, cached, atomic and say clearly when they fail.

What `fetch` catches, with or without a published hash:

- a stalled or crawling server: every read waits at most `READ_TIMEOUT`
  seconds, and the whole transfer has a deadline (`download_deadline`);
- a connection closed early: fewer bytes than `Content-Length`, or a chunked
  transfer cut off before its last chunk;
- an error page served instead of the file (an HTML or text content type);
- a cached file changed after it was downloaded: its sha256 is recorded
  beside it (`<file>.sha256`) and checked on every cache hit;
- a full disk, named as such.

Without a published hash, a body sent with neither `Content-Length` nor
chunked framing (the server just closes the connection) that ends early
cannot be told from a complete one; pass `md5=` / `sha256=` to catch that.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import http.client
import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, BinaryIO

from mobilenetv3.core.utils import atomic_path

CHUNK = 1 << 20

# Seconds one read may wait for the next bytes before the server counts as stalled.
READ_TIMEOUT = 30.0
# The default deadline of a whole download: at least MIN_DEADLINE seconds, and
# as long as the expected size takes at MIN_RATE bytes per second (an unknown
# size gets UNKNOWN_SIZE_DEADLINE). `$MOBILENETV3_DOWNLOAD_TIMEOUT` (seconds)
# or `fetch(..., timeout=)` replaces it.
MIN_DEADLINE = 600.0
MIN_RATE = 50_000
UNKNOWN_SIZE_DEADLINE = 3600.0
TIMEOUT_ENV = "MOBILENETV3_DOWNLOAD_TIMEOUT"
# Suffix of the file recording a cached file's sha256 (`sha256sum` format).
HASH_SUFFIX = ".sha256"
# Content types of error pages; never a weights file.
_PAGE_TYPES = ("text/", "application/xhtml", "application/xml", "application/json")


class DownloadError(RuntimeError):
    """A file could not be fetched, or what arrived is not the expected file."""


def cache_dir() -> Path:
    """`$MOBILENETV3_CACHE`, else `~/.cache/mobilenetv3`."""
    return Path(os.environ.get("MOBILENETV3_CACHE", Path.home() / ".cache" / "mobilenetv3"))


def file_hash(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """The hex digest of a file's contents.

    Args:
        path: the file.
        algorithm: a `hashlib` algorithm name ("sha256", "md5", ...).

    Returns:
        The lowercase hex digest.
    """
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify(
    path: str | os.PathLike,
    md5: str | None = None,
    sha256: str | None = None,
    source: str | None = None,
) -> None:
    """Raise `DownloadError` unless the file has the expected hash(es).

    Args:
        path: the file to check.
        md5: expected md5 hex digest, or None.
        sha256: expected sha256 hex digest, or None.
        source: what to name in the message instead of `path` (the URL of
            a download that is still in its staging file).

    Raises:
        DownloadError: naming the file (or `source`) and both hashes.
    """
    for algorithm, expected in (("md5", md5), ("sha256", sha256)):
        if expected:
            actual = file_hash(path, algorithm)
            if actual != expected.lower():
                advice = (
                    "The server sent a corrupted, truncated or different file; nothing was cached."
                    if source
                    else "The file is corrupted, truncated or a different file; delete it and download again."
                )
                raise DownloadError(f"{source or path}: {algorithm} is {actual}, expected {expected}. {advice}")


def download_deadline(size: int | None, timeout: float | None = None) -> float:
    """Seconds a whole download may take.

    Args:
        size: the expected size in bytes (`Content-Length`), or None.
        timeout: seconds given by the caller; None for
            `$MOBILENETV3_DOWNLOAD_TIMEOUT`, else the default: the longer of
            `MIN_DEADLINE` and `size / MIN_RATE` (`UNKNOWN_SIZE_DEADLINE`
            when the size is unknown).

    Returns:
        The deadline in seconds.

    Raises:
        ValueError: `timeout` or the environment variable is not a positive
            number of seconds.
    """
    if timeout is None and os.environ.get(TIMEOUT_ENV, "").strip():
        value = os.environ[TIMEOUT_ENV]
        try:
            timeout = float(value)
        except ValueError:
            raise ValueError(f"${TIMEOUT_ENV} must be a number of seconds; got {value!r}.") from None
        if not timeout > 0:
            raise ValueError(f"${TIMEOUT_ENV} must be a positive number of seconds; got {value!r}.")
    if timeout is not None:
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            raise ValueError(f"`timeout` must be a positive number of seconds; got {timeout!r}.")
        return float(timeout)
    if size is None:
        return UNKNOWN_SIZE_DEADLINE
    return max(MIN_DEADLINE, size / MIN_RATE)


def _plain_name(name: str, url: str) -> str:
    """`name` if it is a plain file name (no folder part, not `.`/`..`)."""
    if (
        not isinstance(name, str)
        or name in ("", ".", "..")
        or name != os.path.basename(name)
        or "\\" in name
        or "\0" in name
        or name.startswith(".mobilenetv3")
        or name.endswith(HASH_SUFFIX)
    ):
        raise ValueError(
            f"`filename` must be a plain file name (no folders, not '.' or '..', not ending in "
            f"{HASH_SUFFIX!r}); got {name!r} for {url}."
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


def _hash_file(target: Path) -> Path:
    return target.with_name(target.name + HASH_SUFFIX)


def _recorded_hash(target: Path) -> str | None:
    """The sha256 recorded beside a cached file, or None when there is none."""
    try:
        text = _hash_file(target).read_text()
    except (FileNotFoundError, UnicodeDecodeError):
        return None
    digest = text.split(maxsplit=1)[0].lower() if text.strip() else ""
    return digest if len(digest) == 64 and all(c in "0123456789abcdef" for c in digest) else None


def _record_hash(target: Path, digest: str) -> None:
    with atomic_path(_hash_file(target)) as staging:
        staging.write_text(f"{digest}  {target.name}\n")


def _check_cached(target: Path, md5: str | None, sha256: str | None) -> bool:
    """Whether the cached `target` may be used: it has the published hash,
    or (with none published) the sha256 recorded when it was downloaded.

    A file with a wrong published hash is removed (it is downloaded again);
    one that differs from its recorded hash raises, since without a published
    hash nothing says which copy is right.
    """
    if md5 or sha256:
        try:
            verify(target, md5, sha256)
        except DownloadError:
            with contextlib.suppress(FileNotFoundError):  # another process replaced it first.
                target.unlink()
            return False
        return True
    actual = file_hash(target)
    recorded = _recorded_hash(target)
    if recorded is None:  # put there by hand (as a failed download suggests), or by an old version
        with contextlib.suppress(OSError):  # recording is best effort on a read-only or full disk
            _record_hash(target, actual)
    elif actual != recorded:
        raise DownloadError(
            f"Cached file {target} has changed since it was downloaded: its sha256 is {actual}, "
            f"but {_hash_file(target).name} recorded {recorded}. Delete {target} to download it again."
        )
    return True


def _header_length(response: Any, url: str) -> int | None:
    value = response.headers.get("Content-Length")
    if value is None or not value.strip():
        return None
    try:
        length = int(value.strip())
    except ValueError:
        length = -1
    if length < 0:
        raise DownloadError(f"{url}: the server sent an invalid Content-Length header {value!r}; download refused.")
    return length


def _check_content_type(response: Any, url: str) -> None:
    if not url.lower().startswith(("http://", "https://")):
        return  # file:// guesses a type from the name (text/plain when it cannot).
    content_type = (response.headers.get("Content-Type") or "").split(";")[0].strip().lower()
    if content_type.startswith(_PAGE_TYPES):
        raise DownloadError(
            f"{url}: the server sent a {content_type} page, not a weights file (an error or login "
            "page?); download refused."
        )


def _disk_full(error: OSError) -> bool:
    return error.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))


def fetch(
    url: str,
    md5: str | None = None,
    sha256: str | None = None,
    filename: str | None = None,
    local_hint: str = "",
    timeout: float | None = None,
) -> Path:
    """Return a verified local copy of `url`, downloading it into the cache.

    A cached file is checked on every call: against `md5` / `sha256` when
    given (a corrupted one is downloaded again), else against the sha256
    recorded beside it (`<file>.sha256`, written when it was downloaded
    without a published hash, or first used) (a changed one is refused). A download is written to a temp file and renamed only
    after it is complete and its hash checks out.

    A download fails when a read waits more than `READ_TIMEOUT` seconds,
    when the whole transfer passes its deadline (see `download_deadline`),
    when fewer bytes arrive than `Content-Length` says or a chunked transfer
    ends early, or when an http(s) server answers with an HTML or text page.
    Without a hash, a body with no `Content-Length` that the server ends
    early by closing the connection cannot be detected: pass `md5` or
    `sha256` to catch that too.

    Args:
        url: the address (http(s) or file://).
        md5: expected md5 hex digest (as published by the source).
        sha256: expected sha256 hex digest.
        filename: name in the cache (default: the URL's last part).
        local_hint: how to pass a manually downloaded file instead, appended
            to the error when the download fails.
        timeout: seconds the whole download may take; None for
            `$MOBILENETV3_DOWNLOAD_TIMEOUT`, else a default from the size
            (see `download_deadline`). A transfer ends at most one read
            timeout (`READ_TIMEOUT`, or `timeout` when shorter) after it.

    Returns:
        The path of the verified file in the cache.

    Raises:
        DownloadError: with the URL, the reason, and how to load a local file.
        ValueError: `filename` is not a plain file name (a folder part, `..`),
            or `timeout` is not a positive number of seconds.

    Example:

    ```python
    from mobilenetv3.weights import download
    path = download.fetch("https://example.com/w.h5", sha256="...", timeout=120)
    ```
    """
    target = cache_dir() / _plain_name(url.rsplit("/", 1)[-1] if filename is None else filename, url)
    explicit = _explicit_deadline(timeout)  # a bad value fails before any network access
    if target.is_dir():
        raise DownloadError(f"Cache entry {target} is a folder, not a file; remove it and try again.")
    if target.exists() and _check_cached(target, md5, sha256):
        return target
    fallback = f"Download the file elsewhere and either put it at {target} or {local_hint or 'pass its path'}."
    try:
        with atomic_path(target) as staging:
            with open(staging, "wb") as out:
                digest = _download(url, out, f"Downloading {target.name}", explicit, fallback)
            if md5 or sha256:
                verify(staging, md5, sha256, source=url)
        if not (md5 or sha256):  # a published hash needs no record
            _record_hash(target, digest)
    except OSError as error:  # writing into the cache; the transfer's errors are DownloadErrors
        if _disk_full(error):
            raise DownloadError(
                f"Could not download {url}: the disk holding the download cache {cache_dir()} is full "
                f"({os.strerror(error.errno)}). Free some space, or set $MOBILENETV3_CACHE to a folder "
                "on another disk."
            ) from None
        raise DownloadError(f"Could not write {url} into the download cache {cache_dir()}: {error}") from None
    return target


def _explicit_deadline(timeout: float | None) -> float | None:
    """The deadline the caller or the environment sets, or None for the default."""
    if timeout is None and not os.environ.get(TIMEOUT_ENV, "").strip():
        return None
    return download_deadline(None, timeout)


class _WriteFailed(Exception):
    """Carries an `OSError` from writing the staging file out of the
    transfer's error handling."""

    def __init__(self, error: OSError) -> None:
        super().__init__(error)
        self.error = error


def _download(url: str, out: BinaryIO, label: str, explicit: float | None, fallback: str) -> str:
    """Copy `url` into `out`; return the sha256 of what arrived.

    Errors writing `out` propagate as the `OSError` they are; everything
    about the transfer is a `DownloadError` naming the URL.
    """
    start = time.monotonic()
    read_timeout = min(READ_TIMEOUT, explicit) if explicit else READ_TIMEOUT
    digest = hashlib.sha256()
    done, total, deadline = 0, None, explicit
    try:
        with urllib.request.urlopen(url, timeout=read_timeout) as response:
            total = _header_length(response, url)
            _check_content_type(response, url)
            deadline = explicit or download_deadline(total)
            read = getattr(response, "read1", response.read)  # read1: returns what has arrived
            while True:
                if time.monotonic() - start > deadline:
                    raise TimeoutError
                chunk = read(CHUNK)
                if not chunk:
                    break
                try:
                    out.write(chunk)
                except OSError as error:
                    raise _WriteFailed(error) from None
                digest.update(chunk)
                done += len(chunk)
                _progress(done, total, label)
            sys.stderr.write("\n")
    except _WriteFailed as failed:
        raise failed.error from None
    except TimeoutError:
        arrived = f"{done} of {total if total is not None else 'an unknown number of'} bytes arrived"
        if deadline is not None and time.monotonic() - start >= deadline:
            why = (
                f"passed its deadline of {deadline:g} s with {arrived} (a very slow server?); set "
                f"${TIMEOUT_ENV} (seconds) for more time"
            )
        else:
            why = f"stalled: no data for {read_timeout:g} s, with {arrived}"
        raise DownloadError(f"{url}: the download {why}. {fallback}") from None
    except http.client.HTTPException as error:  # IncompleteRead: a chunked transfer cut short, ...
        raise DownloadError(
            f"{url}: the connection broke after {done} bytes ({type(error).__name__}); the download is "
            f"incomplete. {fallback}"
        ) from None
    except urllib.error.HTTPError as error:
        raise DownloadError(
            f"Could not download {url}: the server answered HTTP {error.code} {error.reason}. {fallback}"
        ) from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise DownloadError(f"Could not download {url} ({reason}). Are you offline? {fallback}") from None
    if total is not None and done != total:
        raise DownloadError(
            f"{url}: got {done} of {total} bytes (the connection closed early); the download is "
            f"incomplete. {fallback}"
        )
    return digest.hexdigest()
