"""Image files decoded in parallel into batches, in input order, with
bounded memory (a few batches in flight), and a progress line.

Example:

```python
import numpy as np

def prepare(path):
    return np.zeros((8, 8, 3), "float32"), (8, 8)

for batch in stream_batches(["a.jpg", "b.jpg", "c.jpg"], prepare, batch_size=2):
    print(batch.paths, batch.images.shape)
```
"""

from __future__ import annotations

import collections
import dataclasses
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

# Batches decoded ahead of the one the model is running on.
PREFETCH_BATCHES = 2
MAX_WORKERS = 8


@dataclasses.dataclass
class Batch:
    """Consecutive files of the input, decoded.

    Attributes:
        paths: the files decoded in this batch, in input order.
        images: `(len(paths), size, size, 3)` float32, None when every
            file of the span failed.
        sizes: each decoded file's original (height, width).
        failures: `(path, reason)` of the files of this span that could
            not be read (unreadable, corrupt, too large, ...).
    """

    paths: list[str]
    images: np.ndarray | None
    sizes: list[tuple[int, int]]
    failures: list[tuple[str, str]]

    @property
    def span(self) -> int:
        """How many input files this batch accounts for (decoded + failed)."""
        return len(self.paths) + len(self.failures)


def default_workers() -> int:
    """Decoding threads: one per core, at most `MAX_WORKERS` (Pillow
    releases the GIL while decoding and resizing)."""
    return max(1, min(MAX_WORKERS, os.cpu_count() or 1))


def stream_batches(
    files: Iterable[str],
    prepare: Callable[[str], tuple[np.ndarray, tuple[int, int]]],
    batch_size: int = 32,
    workers: int | None = None,
) -> Iterator[Batch]:
    """Yield `Batch`es of `batch_size` consecutive `files`, each file
    decoded by `prepare(path) -> (array, (height, width))` in a pool of
    `workers` threads (default `default_workers()`), at most
    `PREFETCH_BATCHES + 1` batches in memory. A file whose `prepare` raises
    a ValueError or OSError is a failure of its batch, not the end of the
    stream.

    Example:

    ```python
    batches = stream_batches(paths, predictor.prepare, batch_size=32)
    ```
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive integer; got {batch_size!r}.")
    workers = default_workers() if workers is None else workers
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"`workers` must be a positive integer; got {workers!r}.")
    window = batch_size * (PREFETCH_BATCHES + 1)
    pending: collections.deque[tuple[str, Future]] = collections.deque()
    source = iter(files)
    with ThreadPoolExecutor(workers, thread_name_prefix="decode") as pool:
        while True:
            for path in source:
                pending.append((str(path), pool.submit(prepare, str(path))))
                if len(pending) >= window:
                    break
            if not pending:
                return
            yield _collect(pending, batch_size)


def _collect(pending: collections.deque, batch_size: int) -> Batch:
    paths, arrays, sizes, failures = [], [], [], []
    for _ in range(min(batch_size, len(pending))):
        path, future = pending.popleft()
        try:
            array, size = future.result()
        except (ValueError, OSError) as error:
            failures.append((path, str(error) or type(error).__name__))
            continue
        paths.append(path)
        arrays.append(array)
        sizes.append(size)
    images = np.stack(arrays).astype("float32", copy=False) if arrays else None
    return Batch(paths, images, sizes, failures)


class progress:  # noqa: N801 - used as a context manager, like tqdm
    """A progress line on stderr for `total` items of `what`: tqdm's bar
    when tqdm is installed, else a plain line every 5% (and at the end).

    Example:

    ```python
    with progress(100, "images") as bar:
        bar.update(10)
    ```
    """

    def __init__(self, total: int, what: str, enabled: bool = True) -> None:
        self.total, self.what, self.enabled = total, what, enabled
        self.done, self.bar, self.next_report, self.start = 0, None, 0, time.perf_counter()

    def __enter__(self) -> progress:
        if self.enabled:
            try:
                from tqdm import tqdm

                self.bar = tqdm(total=self.total, unit=" " + self.what, file=sys.stderr, dynamic_ncols=True)
            except ImportError:
                self.bar = None
        return self

    def update(self, count: int) -> None:
        self.done += count
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(count)
        elif self.done >= self.next_report or self.done >= self.total:
            rate = self.done / max(time.perf_counter() - self.start, 1e-9)
            print(f"{self.done}/{self.total} {self.what} ({rate:.1f}/s)", file=sys.stderr, flush=True)
            self.next_report = self.done + max(1, self.total // 20)

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.close()
