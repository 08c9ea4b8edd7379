"""Batch prediction over image sets of any size: JSONL or CSV rows, resumable and shardable.

`predict_files` runs a `Predictor` (any runtime) over files, decoded in
parallel by `stream.stream_batches`, and appends one row per image to
`output` (`.jsonl` or `.csv`, by its suffix), flushed and fsync'd after each
batch. A rerun with the same `output` skips the files it already holds (a
kill, even `kill -9`, loses at most the batch being written; a torn last line
is dropped first), and `shard=(i, n)` (1-based) takes every n-th file of the
sorted set from the i-th on, so the n shards cover it exactly once.

Rows, per task:

| task | JSONL row | CSV columns |
|---|---|---|
| classifier | `path`, `classes`, `labels`, `scores` (top-k, best first) | `path`, `class_1`, `label_1`, `score_1`, ... `score_k`, `error` |
| detector | `path`, `height`, `width`, `boxes` (in `bounding_box_format`), `classes`, `labels`, `scores` | the same, lists as JSON text |
| segmenter | `path`, `height`, `width`, `mask` (the PNG), `pixel_counts` (per class) | the same, counts as JSON text |

An unreadable image gets `{"path": ..., "error": ...}` (the CSV `error`
column), a line on stderr, and the job goes on. Masks are PNGs of class
indices (palette mode, VOC colours; 16-bit grey above 256 classes) under
`masks_dir`, at the image's path relative to the set's common folder plus
`.png`, each written atomically.

Example:

```python
# not run: needs a trained preset folder and images
from mobilenetv3 import MobileNetV3ImageClassifier
from mobilenetv3.serving import batch_predict, predictor

model = MobileNetV3ImageClassifier.from_preset("my_classifier/")
files = batch_predict.collect_files(["photos/", "more/*.jpg"])
with predictor.open_predictor(model, "onnxruntime") as opened:
    summary = batch_predict.predict_files(opened, files, "rows.jsonl", shard=(1, 2))
```
"""

from __future__ import annotations

import csv
import glob
import io
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mobilenetv3.core.images import IMAGE_SUFFIXES
from mobilenetv3.core.utils import atomic_path, check_positive_int

OUTPUT_FORMATS = {".jsonl": "jsonl", ".csv": "csv"}
DEFAULT_BATCH_SIZE = 32
DEFAULT_TOP_K = 5
_GLOB_CHARACTERS = "*?["


# -- the file set ----------------------------------------------------------------------------


def collect_files(inputs: Sequence[str], files_from: str | os.PathLike | None = None) -> list[str]:
    """The image files that `inputs` and the list file `files_from` name,
    sorted and de-duplicated (paths normalized; a file named twice, e.g.
    relative and absolute, is kept once, relative), so shards and resumes see the
    same order on every run.

    A folder gives its images recursively (by suffix, `IMAGE_SUFFIXES`;
    hidden folders skipped); a pattern with `*`, `?` or `[` is a glob (`**`
    recursive) whose matching images (and folders) are taken; a file is
    taken as it is. `files_from` holds one path per line (blank lines and
    lines starting with `#` skipped), relative to the current folder; its
    files are not checked here: a missing one becomes an error row.

    Raises:
        ValueError: naming a path that does not exist, a folder without
            images, a pattern matching no image, or an empty set.

    Example:

    ```python
    import PIL.Image
    PIL.Image.new("RGB", (8, 8)).save("a.png")
    collect_files(["a.png", "./a.png"])  # ['a.png']
    ```
    """
    found: list[str] = []
    for entry in inputs:
        entry = str(entry)
        if os.path.isdir(entry):
            images = _folder_images(entry)
            if not images:
                raise ValueError(f"Image folder {entry!r} has no images (looked for {', '.join(IMAGE_SUFFIXES)}).")
            found += images
        elif os.path.isfile(entry):
            found.append(entry)
        elif any(c in entry for c in _GLOB_CHARACTERS):
            matches = []
            for match in sorted(glob.glob(entry, recursive=True)):
                if os.path.isdir(match):
                    matches += _folder_images(match)
                elif _is_image_name(match):
                    matches.append(match)
            if not matches:
                raise ValueError(f"IMAGE pattern {entry!r} matches no image files ({', '.join(IMAGE_SUFFIXES)}).")
            found += matches
        else:
            raise ValueError(f"Cannot read image {entry}: no such file or folder.")
    if files_from is not None:
        found += read_file_list(files_from)
    spellings: dict[str, str] = {}  # one file named twice (relative, absolute, ./) is kept once
    for path in map(os.path.normpath, found):
        key = os.path.abspath(path)
        spellings[key] = min(spellings.get(key, path), path, key=lambda p: (os.path.isabs(p), p))  # relative first
    files = sorted(spellings.values())
    if not files:
        raise ValueError("No images given: name image files, folders or patterns, or --files-from LIST.")
    return files


def read_file_list(path: str | os.PathLike) -> list[str]:
    """The paths of a `--files-from` list: one per line, blank lines and
    `#` comments skipped; an OSError names an unreadable list."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise OSError(f"--files-from {str(path)!r}: cannot read the list: {error.strerror or error}.") from None
    except UnicodeDecodeError:
        raise ValueError(f"--files-from {str(path)!r} is not a UTF-8 text file (one image path per line).") from None
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def _is_image_name(path: str) -> bool:
    return os.path.splitext(path)[1].lower() in IMAGE_SUFFIXES


def _folder_images(folder: str) -> list[str]:
    images = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        images += [os.path.join(root, name) for name in sorted(names) if _is_image_name(name)]
    return images


def parse_shard(text: str) -> tuple[int, int]:
    """`"i/n"` (1-based: `1/2` and `2/2` are the two halves) as `(i, n)`;
    a ValueError naming `--shard` otherwise.

    Example:

    ```python
    parse_shard("2/4")  # (2, 4)
    ```
    """
    parts = str(text).split("/")
    try:
        index, count = (int(p) for p in parts)
    except ValueError:
        index = count = 0
    if len(parts) != 2 or not 1 <= index <= count:
        raise ValueError(f"--shard must be i/n with 1 <= i <= n (1-based: 1/2 and 2/2 are the two halves); "
                         f"got {text!r}.")
    return index, count


def shard_files(files: Sequence[str], shard: tuple[int, int]) -> list[str]:
    """Shard `i` of `n` (1-based) of the sorted `files`: every n-th file from
    the i-th on, so the n shards cover `files` exactly once.

    Example:

    ```python
    shard_files(["a", "b", "c"], (1, 2))  # ['a', 'c']
    ```
    """
    index, count = parse_shard(f"{shard[0]}/{shard[1]}")
    return list(files[index - 1::count])


def output_format(path: str | os.PathLike) -> str:
    """`"jsonl"` or `"csv"` by `--output`'s suffix, else a ValueError."""
    suffix = os.path.splitext(str(path))[1].lower()
    if suffix not in OUTPUT_FORMATS:
        raise ValueError(f"--output {str(path)!r}: the suffix must be one of {list(OUTPUT_FORMATS)}; "
                         f"got {suffix or 'no suffix'!r}.")
    return OUTPUT_FORMATS[suffix]


# -- rows ------------------------------------------------------------------------------------


def csv_columns(kind: str, top_k: int = DEFAULT_TOP_K) -> list[str]:
    """The CSV header of a `kind` task's rows ("classifier", "detector", "segmenter")."""
    if kind == "classifier":
        return ["path", *[f"{name}_{rank}" for rank in range(1, top_k + 1) for name in ("class", "label", "score")],
                "error"]
    if kind == "detector":
        return ["path", "height", "width", "boxes", "classes", "labels", "scores", "error"]
    if kind == "segmenter":
        return ["path", "height", "width", "mask", "pixel_counts", "error"]
    raise ValueError(f"`kind` must be one of ['classifier', 'detector', 'segmenter']; got {kind!r}.")


def label_names(num_classes: int, class_names: Sequence[str] | None = None) -> list[str]:
    """A name per class: the model's `class_names` when it has one per
    class, ImageNet's for 1000 (or 1001, background first) classes, else
    `class <i>`.

    Example:

    ```python
    label_names(2)  # ['class 0', 'class 1']
    ```
    """
    from mobilenetv3.core import decode

    if class_names is not None and len(class_names) == num_classes:
        return [str(name) for name in class_names]
    if num_classes in (decode.NUM_CLASSES, decode.NUM_CLASSES + 1):
        names = [name for _, name in decode.imagenet_classes()]
        return ["background", *names] if num_classes == decode.NUM_CLASSES + 1 else names
    return [f"class {i}" for i in range(num_classes)]


def _float(value: Any) -> float:
    return round(float(value), 6)


class _Rows:
    """Turns one `Predictor.run` result into a row dict for a task."""

    def __init__(self, kind: str, class_names: Sequence[str] | None, top_k: int, box_format: str,
                 masks_dir: Path | None, root: str, num_classes: int | None = None) -> None:
        self.kind, self.class_names, self.top_k, self.box_format = kind, class_names, top_k, box_format
        self.num_classes = num_classes or (len(class_names) if class_names else None)
        self.masks_dir, self.root = masks_dir, root
        self._names: list[str] | None = None

    def names(self, num_classes: int) -> list[str]:
        if self._names is None or len(self._names) < num_classes:
            self._names = label_names(num_classes, self.class_names)
        return self._names

    def name(self, label: int) -> str:
        names = self._names or []
        return names[label] if 0 <= label < len(names) else f"class {label}"

    def row(self, path: str, result: dict, size: tuple[int, int]) -> dict:
        if self.kind == "classifier":
            probabilities = np.asarray(result["probabilities"], "float64")
            names = self.names(len(probabilities))
            order = np.argsort(-probabilities, kind="stable")[: self.top_k]
            return {"path": path, "classes": [int(i) for i in order], "labels": [names[i] for i in order],
                    "scores": [_float(probabilities[i]) for i in order]}
        height, width = (int(v) for v in size)
        if self.kind == "detector":
            if self.class_names is not None:
                self.names(len(self.class_names))
            boxes = np.asarray(result["boxes"], "float32").reshape(-1, 4)
            labels = [int(v) for v in np.asarray(result["labels"]).reshape(-1)]
            if len(boxes) and self.box_format != "xyxy":
                import keras

                from mobilenetv3.detection.boxes import from_xyxy

                boxes = keras.ops.convert_to_numpy(from_xyxy(boxes, self.box_format, height, width))
            return {"path": path, "height": height, "width": width,
                    "boxes": [[_float(v) for v in box] for box in boxes], "classes": labels,
                    "labels": [self.name(label) for label in labels],
                    "scores": [_float(v) for v in np.asarray(result["scores"]).reshape(-1)]}
        mask = np.asarray(result["mask"])
        target = self.mask_path(path)
        num_classes = max(self.num_classes or 0, int(mask.max(initial=0)) + 1)
        write_mask(target, mask, num_classes)
        counts = np.bincount(mask.reshape(-1).astype("int64"), minlength=num_classes)
        return {"path": path, "height": int(mask.shape[0]), "width": int(mask.shape[1]), "mask": str(target),
                "pixel_counts": [int(n) for n in counts]}

    def mask_path(self, path: str) -> Path:
        assert self.masks_dir is not None
        relative = os.path.relpath(os.path.abspath(path), self.root)
        return self.masks_dir / f"{relative}.png"


def palette(num_classes: int) -> np.ndarray:
    """Distinct RGB colours per class (PASCAL VOC's bit-interleaved scheme).

    Example:

    ```python
    palette(3).tolist()  # [[0, 0, 0], [128, 0, 0], [0, 128, 0]]
    ```
    """
    colors = np.zeros((num_classes, 3), "uint8")
    for label in range(num_classes):
        value, shift = label, 7
        while value:
            for channel in range(3):
                colors[label, channel] |= ((value >> channel) & 1) << shift
            value >>= 3
            shift -= 1
    return colors


def write_mask(path: str | os.PathLike, mask: np.ndarray, num_classes: int) -> None:
    """A class-index mask as a PNG, written atomically: palette mode (the
    pixel values are the classes, shown in VOC colours) up to 256 classes,
    16-bit grey above."""
    from PIL import Image

    if num_classes <= 256:
        image = Image.fromarray(mask.astype("uint8"), mode="P")
        image.putpalette(palette(256).reshape(-1).tolist())
    else:
        image = Image.fromarray(mask.astype("uint16"))
    with atomic_path(path) as staging:
        image.save(staging, format="PNG")


# -- the output file -------------------------------------------------------------------------


def read_done(output: str | os.PathLike, columns: list[str] | None = None) -> set[str]:
    """The paths `output` already has rows for (error rows included), after
    cutting a torn last line (a writer killed mid-line) off the file.

    Raises:
        ValueError: a complete line that is not a row of ours, or a CSV
            header other than `columns` (another task or `--top`).
    """
    path = Path(output)
    if not path.is_file() or path.stat().st_size == 0:
        return set()
    _drop_torn_line(path)
    done: set[str] = set()
    with open(path, encoding="utf-8", newline="") as handle:
        if output_format(path) == "jsonl":
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    done.add(json.loads(line)["path"])
                except (ValueError, KeyError, TypeError):
                    raise ValueError(f"--output {str(path)!r}: line {number} is not a prediction row "
                                     f"({line[:80]!r}); write to another file.") from None
            return done
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            return done
        if columns is not None and header != columns:
            raise ValueError(f"--output {str(path)!r} holds other columns ({', '.join(header)}) than this run "
                             f"writes ({', '.join(columns)}): another task or --top; write to another file.")
        done.update(row[0] for row in reader if row)
    return done


def _drop_torn_line(path: Path) -> None:
    """Truncate `path` after its last newline (a line cut by a kill)."""
    with open(path, "rb+") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        handle.seek(max(0, size - 1))
        if handle.read(1) == b"\n":
            return
        block, end = 1 << 16, size
        while end > 0:
            start = max(0, end - block)
            handle.seek(start)
            chunk = handle.read(end - start)
            cut = chunk.rfind(b"\n")
            if cut >= 0:
                handle.truncate(start + cut + 1)
                break
            end = start
        else:
            handle.truncate(0)
        handle.flush()
        os.fsync(handle.fileno())


class _Writer:
    """Appends rows to the output, flushed and fsync'd per batch."""

    def __init__(self, path: Path, fmt: str, columns: list[str]) -> None:
        self.fmt, self.columns = fmt, columns
        path.parent.mkdir(parents=True, exist_ok=True)
        self.handle = open(path, "a", encoding="utf-8", newline="")
        if fmt == "csv" and self.handle.tell() == 0:
            self.write([dict(zip(columns, columns))], header=True)

    def write(self, rows: list[dict], header: bool = False) -> None:
        if self.fmt == "jsonl":
            text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        else:
            buffer = io.StringIO()
            writer = csv.writer(buffer, lineterminator="\n")
            for row in rows:
                writer.writerow(row[c] if header else _csv_cell(row, c) for c in self.columns)
            text = buffer.getvalue()
        self.handle.write(text)
        self.handle.flush()
        os.fsync(self.handle.fileno())

    def close(self) -> None:
        self.handle.close()


def _csv_cell(row: dict, column: str) -> Any:
    if column.startswith(("class_", "label_", "score_")):
        name, rank = column.rsplit("_", 1)
        values = row.get({"class": "classes", "label": "labels", "score": "scores"}[name], [])
        return values[int(rank) - 1] if int(rank) <= len(values) else ""
    value = row.get(column, "")
    return json.dumps(value, ensure_ascii=False) if isinstance(value, (list, dict)) else value


# -- the job ---------------------------------------------------------------------------------


def predict_files(
    predictor: Any,
    files: Sequence[str],
    output: str | os.PathLike,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    workers: int | None = None,
    shard: tuple[int, int] = (1, 1),
    top_k: int = DEFAULT_TOP_K,
    bounding_box_format: str = "xyxy",
    masks_dir: str | os.PathLike | None = None,
    log: Callable[[str], Any] = print,
) -> dict:
    """Predict every file of shard `shard` of `files` and append its row to `output`.

    Args:
        predictor: a `mobilenetv3.serving.predictor.Predictor` (any runtime).
        files: the whole sorted set (`collect_files`); this process takes
            shard `shard` of it.
        output: a `.jsonl` or `.csv` file; rows it already has are skipped.
        batch_size: images per model call.
        workers: decoding threads (None: the stream's default).
        shard: `(i, n)`, 1-based: every n-th file from the i-th.
        top_k: classes per image (classifiers).
        bounding_box_format: the boxes' format (detectors): one of
            `mobilenetv3.detection.boxes.BOX_FORMATS` (keras' names).
        masks_dir: where segmenters' mask PNGs go (required for them).
        log: receives the start and summary lines.

    Returns:
        A summary: `files` (in this shard), `skipped` (already in
        `output`), `written` (rows this run, error rows included),
        `errors` and `error_files` (unreadable images this run),
        `seconds`, `images_per_second`, `output`.

    Example:

    ```python
    # not run: needs a predictor
    summary = predict_files(predictor, collect_files(["photos/"]), "rows.csv", shard=(1, 2))
    ```
    """
    from mobilenetv3.serving.stream import progress, stream_batches

    fmt = output_format(output)
    check_positive_int("--batch-size", batch_size)
    if workers is not None:
        check_positive_int("--workers", workers)
    check_positive_int("--top", top_k)
    top_k = min(top_k, predictor.num_classes)  # a 3-class model writes its 3 classes
    kind = predictor.kind
    columns = csv_columns(kind, top_k)
    if kind == "detector":
        from mobilenetv3.detection.boxes import check_box_format

        check_box_format(bounding_box_format)
    if kind == "segmenter" and masks_dir is None:
        raise ValueError("A segmenter writes one mask PNG per image: give --masks-dir.")
    mine = shard_files(list(files), shard)
    done = read_done(output, columns if fmt == "csv" else None)
    todo = [path for path in mine if path not in done]
    root = os.path.commonpath([os.path.dirname(os.path.abspath(p)) for p in files]) if files else os.getcwd()
    rows = _Rows(kind, predictor.class_names, top_k, bounding_box_format,
                 Path(masks_dir) if masks_dir is not None else None, root, predictor.num_classes)
    shard_note = f" (shard {shard[0]}/{shard[1]} of {len(files)})" if shard[1] > 1 else ""
    log(f"{len(mine)} images{shard_note}: {len(mine) - len(todo)} already in {output}, {len(todo)} to predict "
        f"on {predictor.runtime}.")
    position = {path: i for i, path in enumerate(todo)}
    error_files: list[str] = []
    written = 0
    start = time.perf_counter()
    writer = _Writer(Path(output), fmt, columns)
    try:
        with progress(len(todo), "images") as bar:
            for batch in stream_batches(todo, predictor.prepare, batch_size=batch_size, workers=workers):
                out: list[dict] = []
                if batch.paths:
                    results = predictor.run(batch.images, batch.sizes)
                    out += [rows.row(p, r, s) for p, r, s in zip(batch.paths, results, batch.sizes)]
                for path, reason in batch.failures:
                    print(f"{path}: skipped: {reason}", file=sys.stderr)
                    error_files.append(path)
                    out.append({"path": path, "error": str(reason)})
                out.sort(key=lambda row: position.get(row["path"], -1))
                writer.write(out)
                written += len(out)
                bar.update(len(out))
    finally:
        writer.close()
    seconds = time.perf_counter() - start
    summary = {"files": len(mine), "skipped": len(mine) - len(todo), "written": written, "errors": len(error_files),
               "error_files": error_files, "seconds": round(seconds, 3),
               "images_per_second": round(written / seconds, 2) if seconds > 0 and written else 0.0,
               "output": str(output)}
    log(f"{output}: {written} rows written ({len(error_files)} unreadable, listed as errors), "
        f"{summary['skipped']} already there; {summary['images_per_second']} images/s.")
    return summary


# -- the commands' batch mode (`predict`, `detect`, `segment` with --output) -------------------------

RUNTIME_NAMES = ("keras", "onnxruntime", "litert", "openvino")
_BATCH_ONLY = ("shard", "files_from", "runtime", "batch_size", "workers", "masks_dir", "bounding_box_format")


def add_batch_arguments(parser: Any, kind: str) -> None:
    """The batch-mode options of the `kind` task's command (`--output` and
    what goes with it). Nothing here imports Keras: `--help` stays fast."""
    parser.add_argument("--output", default=None, metavar="FILE.jsonl|FILE.csv",
                        help="batch mode: append one row per image to this JSONL or CSV file (by its suffix); a "
                             "rerun with the same file skips the images it holds (resumes after a kill)")
    if kind == "segmenter":
        parser.add_argument("--masks-dir", default=None, metavar="DIR",
                            help="batch mode: where each image's mask PNG goes (class indices, palette colours), "
                                 "at its path relative to the images' common folder plus .png")
    if kind == "detector":
        parser.add_argument("--bounding-box-format", default=None, metavar="FORMAT",
                            help="batch mode: the boxes' format, as keras names them: xyxy (default), yxyx, xywh, "
                                 "center_xywh, center_yxhw, rel_xyxy, rel_yxyx, rel_xywh, rel_center_xywh")
    parser.add_argument("--files-from", default=None, metavar="LIST",
                        help="batch mode: a text file of image paths, one per line (relative to the current folder)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help=f"batch mode: images per model call (default {DEFAULT_BATCH_SIZE})")
    parser.add_argument("--workers", type=int, default=None, help="batch mode: image-decoding threads")
    parser.add_argument("--runtime", default=None, choices=RUNTIME_NAMES,
                        help="batch mode: run the model on Keras (default) or on its export for this runtime")
    parser.add_argument("--shard", default=None, metavar="I/N",
                        help="batch mode: predict only shard I of N (1-based: 1/2 and 2/2 are the halves) of the "
                             "sorted image set, e.g. one per process or machine")


def check_batch_arguments(args: Any, kind: str) -> list[str] | None:
    """The sorted image set of a batch-mode command line (`--output`
    given), checked before any model loads; None without `--output`, after
    refusing batch-only options there."""
    if args.output is None:
        given = [f"--{name.replace('_', '-')}" for name in _BATCH_ONLY if getattr(args, name, None) is not None]
        if given:
            raise ValueError(f"{', '.join(given)} appl{'ies' if len(given) == 1 else 'y'} to the batch mode only: "
                             "add --output FILE.jsonl or FILE.csv.")
        if not args.images:
            raise ValueError("Name at least one IMAGE (a file, folder or pattern).")
        return None
    output_format(args.output)
    if os.path.isdir(args.output):
        raise ValueError(f"--output {args.output!r} is a folder; name a .jsonl or .csv file.")
    if args.shard is not None:
        parse_shard(args.shard)
    for name in ("batch_size", "workers"):
        if getattr(args, name) is not None:
            check_positive_int(f"--{name.replace('_', '-')}", getattr(args, name))
    if getattr(args, "top", None) is not None:
        check_positive_int("--top", args.top)
    if kind == "detector" and args.bounding_box_format is not None:
        from mobilenetv3.detection.boxes import BOX_FORMATS

        if args.bounding_box_format not in BOX_FORMATS:
            raise ValueError(f"--bounding-box-format must be one of {list(BOX_FORMATS)}; "
                             f"got {args.bounding_box_format!r}.")
    if kind == "segmenter" and args.masks_dir is None:
        raise ValueError("--masks-dir is required with --output for segment: each image's mask PNG goes there.")
    if args.runtime not in (None, "keras"):
        from mobilenetv3.export.runtimes import check_runtimes

        check_runtimes([args.runtime])
    if not args.images and args.files_from is None:
        raise ValueError("Name at least one IMAGE (a file, folder or pattern) or --files-from LIST.")
    return collect_files(args.images, args.files_from)


def run_batch(args: Any, model: Any, files: list[str]) -> int:
    """Predict `files` with `model` as the command line says; print the summary."""
    from mobilenetv3.serving.predictor import open_predictor

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    with open_predictor(model, args.runtime or "keras", log=log) as predictor:
        summary = predict_files(
            predictor, files, args.output, batch_size=args.batch_size or DEFAULT_BATCH_SIZE, workers=args.workers,
            shard=parse_shard(args.shard) if args.shard else (1, 1),
            top_k=getattr(args, "top", None) or DEFAULT_TOP_K,
            bounding_box_format=getattr(args, "bounding_box_format", None) or "xyxy",
            masks_dir=getattr(args, "masks_dir", None), log=print,
        )
    for path in summary["error_files"][:20]:
        print(f"  unreadable: {path}")
    if summary["errors"] > 20:
        print(f"  ... and {summary['errors'] - 20} more (their rows in {args.output} say why)")
    return 0
