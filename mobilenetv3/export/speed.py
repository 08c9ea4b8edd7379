"""How fast a model runs here: Keras on the current backend, and its ONNX
Runtime, LiteRT and OpenVINO exports on the runtimes that are installed.

`time_runtimes` exports the model once per runtime (into a scratch folder,
or `exports_dir`), opens each export the way a deployment does (every core,
channels-first where the format can take it: no transposes), then times
batch-1 latency (median of `runs` single-image calls after warm-up) and
batch-N throughput (median of repeated batch calls), Python's garbage
collector paused while timing, as `timeit` does. `speed_table` prints the
rows as Markdown with each runtime's speed relative to the Keras row. The
`mobilenetv3 benchmark --preset ...` command is these two functions.

The comparison against other libraries (torchvision, timm, keras-cv,
keras.applications) is not part of the package: it is
`python benchmarks/benchmark.py` in a source checkout.

Example:

```python
import mobilenetv3
from mobilenetv3.export import speed

backbone = mobilenetv3.MobileNetV3SmallBackbone(input_shape=(64, 64, 3))
model = mobilenetv3.MobileNetV3ImageClassifier(backbone, 3)
rows = speed.time_runtimes(model, ["keras"], runs=3, batch=4)
print(speed.speed_table(rows))
```
"""

from __future__ import annotations

import functools
import gc
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mobilenetv3.core.utils import scratch_dir
from mobilenetv3.export.formats import EXPORTERS, export_model
from mobilenetv3.export.runtimes import (  # noqa: F401 - re-exported: speed's public names
    _OPENERS,
    KERAS,
    RUNTIMES,
    Runtime,
    available_runtimes,
    check_runtimes,
    open_litert,
    open_onnxruntime,
    open_openvino,
    unavailable_reason,
)


def input_size(model: Any) -> int:
    """The square image size to time `model` at: its fixed input size, a
    detector's `image_size`, else its preset's (`preprocessing_for_model`).

    Example:

    ```python
    import mobilenetv3

    input_size(mobilenetv3.MobileNetV3SmallBackbone(input_shape=(96, 96, 3)))  # 96
    ```
    """
    from mobilenetv3.export.detector_export import is_detector
    from mobilenetv3.presets.preprocessing import preprocessing_for_model

    height, width = tuple(model.input_shape[1:3])
    if height is not None and height == width:
        return int(height)
    if is_detector(model):
        return int(model.image_size)
    return preprocessing_for_model(model).image_size


# -- timing ---------------------------------------------------------------------------------


def timed(predict: Callable[[np.ndarray], Any], images: np.ndarray, runs: int) -> list[float]:
    """Seconds of each of `runs` calls `predict(images)`, with Python's cyclic
    garbage collector paused as `timeit` does (after one full collection): a
    collection of the ~500,000 objects Keras, TensorFlow and PyTorch leave in
    a process takes 250 ms, and whichever call it lands in measures it.

    Example:

    ```python
    import numpy as np

    seconds = timed(lambda x: x.sum(), np.ones((4, 4)), runs=5)
    ```
    """
    gc.collect()
    paused = gc.isenabled()
    gc.disable()
    try:
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            predict(images)
            times.append(time.perf_counter() - start)
    finally:
        if paused:
            gc.enable()
    return times


def _keras_predict(model: Any) -> Callable[[np.ndarray], Any]:
    """The Keras model's batch call; a detector's raw network (as its exports are, without NMS)."""
    import keras

    from mobilenetv3.export.detector_export import is_detector

    if is_detector(model):
        return keras.Model(model.inputs, model.outputs).predict_on_batch
    return model.predict_on_batch


def _measure(load: Callable[[], Callable], size: int, channels_first: bool, batch: int, runs: int) -> dict:
    """Start-up (`load()` and the first call, which traces or compiles), then the timed calls."""
    rng = np.random.default_rng(0)
    shape = (3, size, size) if channels_first else (size, size, 3)
    one = rng.uniform(0, 255, (1, *shape)).astype(np.float32)
    many = rng.uniform(0, 255, (batch, *shape)).astype(np.float32)
    start = time.perf_counter()
    predict = load()
    predict(one)
    startup_s = time.perf_counter() - start
    warmup = min(3, runs)
    timed(predict, one, warmup)
    latency = statistics.median(timed(predict, one, runs))
    timed(predict, many, max(1, warmup // 2))
    batch_time = statistics.median(timed(predict, many, max(1, runs // 6)))
    return {"startup_s": round(startup_s, 3), "batch1_ms": round(latency * 1000, 3), "batch1_img_s": round(1 / latency, 1), "batch": batch,
            "batch_img_s": round(batch / batch_time, 1)}


def time_runtimes(
    model: Any,
    runtimes: list[str] | None = None,
    *,
    runs: int = 30,
    batch: int = 32,
    exports_dir: str | os.PathLike | None = None,
    log: Callable[[str], None] = print,
) -> list[dict]:
    """Time `model` on each runtime of `runtimes`.

    Args:
        model: a Keras model of this package (backbone or task; a
            detector is timed as its raw network, without NMS).
        runtimes: names from `RUNTIMES` (default: every available one,
            `available_runtimes()`). A named runtime that cannot run here
            raises a ValueError saying why (see `unavailable_reason`).
        runs: timed batch-1 calls (the batch-N calls: `runs // 6`, at least
            one); up to three warm-up calls come first.
        batch: the throughput batch size.
        exports_dir: keep the exported files here (default: a scratch
            folder, removed afterwards).
        log: progress printer.

    Returns:
        One dict per runtime: `runtime`, `layout`, `image_size`,
        `startup_s` (open the export, or take the Keras model's batch call,
        plus the first call, which traces or compiles), `batch1_ms`,
        `batch1_img_s`, `batch`, `batch_img_s`; or `skipped` with the
        reason when its export or run failed.

    Example:

    ```python
    rows = time_runtimes(model, ["keras", "onnxruntime"], runs=5, batch=8)
    ```
    """
    if runs < 1 or batch < 1:
        raise ValueError(f"`runs` and `batch` must be at least 1; got runs={runs}, batch={batch}.")
    if runtimes is None:
        runtimes = available_runtimes()
    check_runtimes(runtimes)
    size = input_size(model)
    with scratch_dir("speed") as scratch:
        folder = Path(exports_dir or scratch)
        folder.mkdir(parents=True, exist_ok=True)
        return [_time_one(model, name, size, folder, runs, batch, log) for name in runtimes]


def _time_one(model: Any, name: str, size: int, folder: Path, runs: int, batch: int, log: Callable) -> dict:
    runtime = RUNTIMES[name]
    exporter = EXPORTERS[runtime.format] if runtime.format else None
    channels_first = bool(exporter and exporter.channels_first)
    row = {"runtime": name, "layout": "NCHW" if channels_first else "NHWC", "image_size": size}
    try:
        if exporter is None:
            load = functools.partial(_keras_predict, model)
        else:
            path = folder / f"model{exporter.suffix}"
            log(f"exporting to {exporter.name} ({row['layout']}, {size}x{size}) ...")
            export_model(model, path, exporter.name, input_size=size, channels_first=channels_first)
            load = functools.partial(_OPENERS[name], path)
        log(f"timing {name}: {runs} batch-1 calls, {max(1, runs // 6)} of batch {batch} ...")
        row.update(_measure(load, size, channels_first, batch, runs))
    except (ValueError, OSError, RuntimeError, ImportError) as error:
        log(f"  {name} skipped: {error}")
        return {**row, "skipped": str(error).splitlines()[0] if str(error) else type(error).__name__}
    log(f"  batch 1: {row['batch1_ms']:.2f} ms, batch {batch}: {row['batch_img_s']:.0f} img/s")
    return row


# -- reporting ------------------------------------------------------------------------------


def _ratio(row: dict, base: dict | None, key: str) -> str:
    return f"{row[key] / base[key]:.2f}x" if base else "-"


def speed_table(rows: list[dict]) -> str:
    """`time_runtimes` rows as a Markdown table, with each runtime's images/s
    relative to the Keras row (batch 1 / batch N).

    Example:

    ```python
    print(speed_table([{"runtime": "keras", "layout": "NHWC", "image_size": 224, "startup_s": 0.1,
                        "batch1_ms": 10.0, "batch1_img_s": 100.0, "batch": 32, "batch_img_s": 400.0}]))
    ```
    """
    base = next((r for r in rows if r["runtime"] == KERAS and "skipped" not in r), None)
    lines = ["| runtime | input | batch 1 latency (ms) | batch 1 img/s | batch N img/s (N) "
             "| vs keras (b1 / bN) | start-up (s) |", "|" + "---|" * 7]
    for row in rows:
        shape = f"{row['layout']} {row['image_size']}x{row['image_size']}"
        if "skipped" in row:
            lines.append(f"| {row['runtime']} | {shape} | skipped: {row['skipped'][:100]} | | | | |")
            continue
        ratios = f"{_ratio(row, base, 'batch1_img_s')} / {_ratio(row, base, 'batch_img_s')}"
        lines.append(f"| {row['runtime']} | {shape} | {row['batch1_ms']:.2f} | {row['batch1_img_s']:.0f} "
                     f"| {row['batch_img_s']:.0f} ({row['batch']}) | {ratios} | {row['startup_s']:.2f} |")
    return "\n".join(lines)


def cpu_name() -> str:
    """This machine's CPU model as /proc/cpuinfo names it ("unknown CPU"
    where it cannot be read).

    Example:

    ```python
    cpu_name()  # e.g. 'AMD EPYC 7B13'
    ```
    """
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def int8_sums_saturate() -> bool:
    """Whether this is an x86 CPU without VNNI (no `avx512_vnni`,
    `avx_vnni` or `amx_int8` flag), where onnxruntime's and OpenVINO's
    uint8 x int8 kernels add pairs of products in saturating int16
    (`vpmaddubsw`): int8 files can be off by many steps there.

    Example:

    ```python
    int8_sums_saturate()  # False on Intel Xeon with AMX, True on an AVX2-only EPYC
    ```
    """
    import platform

    if platform.machine().lower() not in ("x86_64", "amd64", "i686", "x86"):
        return False
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return not {"avx512_vnni", "avx_vnni", "amx_int8"} & set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return False


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, as "0.52, 0.61, 0.70".

    Example:

    ```python
    load_average()
    ```
    """
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def machine_line() -> str:
    """The machine beside a timing table: CPU model, cores, load average now.

    Example:

    ```python
    print(machine_line())  # Machine: AMD EPYC 7B13, 2 cores; load average (1/5/15 min): 0.52, 0.61, 0.70.
    ```
    """
    return f"Machine: {cpu_name()}, {os.cpu_count()} cores; load average (1/5/15 min): {load_average()}."
