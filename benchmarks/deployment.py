"""Deployment runtimes side by side: per-image latency of one model on each.

    python benchmarks/deployment.py --runs 50

One MobileNetV3-Small 224 ImageNet classifier (random weights, softmax
output: speed only) is exported once per format, then timed on one image at
a time (batch 1), the median of `--runs` calls after a warm-up:

- onnxruntime (native, the reference of the ratios), LiteRT fp32 and int8
  (`open_litert`, on input already resized to 224 and in the model's range);
- LiteRT with our preprocessing: the same file, the 500x375 photo resized by
  Pillow first (what MediaPipe's row includes);
- MediaPipe Tasks `ImageClassifier` on the same `.tflite` (its metadata
  written by `export`): end to end from the 500x375 uint8 photo (its resize,
  normalization, inference and top-k), on the CPU;
- ExecuTorch fp32 and int8 (XNNPACK-delegated `.pte`, `open_executorch`);
- the `export --format web` page in headless Chromium (Debian's, through
  tests/web_page.py): onnxruntime-web on WASM, 1 thread and 2 threads
  (cross-origin isolated), the page's own inference time per image.

A runtime that is not installed (or Chromium / Node absent) is skipped with
its reason. The machine line (CPU, cores, load average) is printed with the
table: compare ratios within one run, on a quiet machine.
"""

from __future__ import annotations

# torchvision/torch before TensorFlow: importing them afterwards segfaults here.
try:
    import torch  # noqa: F401
except ImportError:
    pass

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT.parent / "shared" / "fixtures" / "images"
SIZE = 224


def build_model():
    import keras

    import mobilenetv3

    keras.utils.set_random_seed(0)
    backbone = mobilenetv3.MobileNetV3SmallBackbone(input_shape=(SIZE, SIZE, 3), include_rescaling=True)
    return mobilenetv3.MobileNetV3ImageClassifier(backbone, 1000, activation="softmax")


def photo() -> np.ndarray:
    """A 500x375 uint8 RGB photo: a fixture photo where ../shared is present, else a generated one."""
    from PIL import Image

    sources = sorted(FIXTURES.glob("*.bmp"))
    if sources:
        image = Image.open(sources[0]).convert("RGB")
    else:
        rng = np.random.default_rng(0)
        image = Image.fromarray(rng.integers(0, 256, (375, 500, 3), dtype=np.uint8))
    return np.asarray(image.resize((500, 375), Image.BILINEAR))


def resized(image: np.ndarray) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(image).resize((SIZE, SIZE), Image.BILINEAR), np.float32)[None]


def median_ms(call: Callable[[], object], runs: int) -> float:
    call()  # warm-up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def export(model, folder: Path, name: str, fmt: str, **options) -> Path:
    from mobilenetv3.export.formats import export_model

    start = time.perf_counter()
    path = export_model(model, folder / name, fmt, **options)
    print(f"exported {name} in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    return path


def skipped(rows: list[dict], name: str, reason: str) -> None:
    print(f"{name}: skipped ({reason})", file=sys.stderr)
    rows.append({"name": name, "ms": None, "note": f"skipped: {reason}"})


def time_native(model, folder: Path, image: np.ndarray, calibration: np.ndarray, runs: int, rows: list) -> None:
    from mobilenetv3.export.runtimes import open_litert, open_onnxruntime, unavailable_reason

    x = resized(image)
    if unavailable_reason("onnxruntime") is None:
        run = open_onnxruntime(export(model, folder, "m.onnx", "onnx"), threads=2)
        rows.append({"name": "onnxruntime (native)", "ms": median_ms(lambda: run(x), runs),
                     "note": "input resized to 224", "reference": True})
    if unavailable_reason("litert") is not None:
        skipped(rows, "LiteRT", unavailable_reason("litert"))
        return
    tflite = export(model, folder, "m.tflite", "tflite")
    run = open_litert(tflite, threads=2)
    rows.append({"name": "LiteRT fp32 (bare)", "ms": median_ms(lambda: run(x), runs), "note": "input resized to 224"})
    rows.append({"name": "LiteRT fp32 + Pillow resize", "ms": median_ms(lambda: run(resized(image)), runs),
                 "note": "from the 500x375 photo"})
    int8 = open_litert(export(model, folder, "m8.tflite", "tflite", int8=True, calibration=calibration), threads=2)
    rows.append({"name": "LiteRT int8 (bare)", "ms": median_ms(lambda: int8(x), runs), "note": "input resized to 224"})
    time_mediapipe(tflite, image, runs, rows)


def time_mediapipe(tflite: Path, image: np.ndarray, runs: int, rows: list) -> None:
    try:
        from mobilenetv3.export.litert_metadata import open_mediapipe

        predict = open_mediapipe(tflite, "classifier")
    except (ImportError, ValueError, OSError) as error:
        skipped(rows, "MediaPipe ImageClassifier", str(error).splitlines()[0])
        return
    rows.append({"name": "MediaPipe ImageClassifier (end to end)", "ms": median_ms(lambda: predict(image), runs),
                 "note": "from the 500x375 photo; its own thread count"})
    predict.close()


def time_executorch(model, folder: Path, image: np.ndarray, calibration: np.ndarray, runs: int, rows: list) -> None:
    try:
        from mobilenetv3.export.executorch_export import open_executorch

        fp32 = open_executorch(export(model, folder, "m.pte", "executorch"))
        int8 = open_executorch(export(model, folder, "m8.pte", "executorch", int8=True, calibration=calibration))
    except (ImportError, ValueError, OSError) as error:
        skipped(rows, "ExecuTorch", str(error).splitlines()[0])
        return
    x = resized(image)
    rows.append({"name": "ExecuTorch fp32 (XNNPACK)", "ms": median_ms(lambda: fp32(x), runs),
                 "note": "input resized to 224"})
    rows.append({"name": "ExecuTorch int8 (XNNPACK)", "ms": median_ms(lambda: int8(x), runs),
                 "note": "input resized to 224"})


def time_browser(model, folder: Path, image: np.ndarray, runs: int, rows: list) -> None:
    from PIL import Image

    sys.path.insert(0, str(ROOT / "tests"))
    import web_page

    reason = web_page.missing()
    if reason:
        skipped(rows, "onnxruntime-web in Chromium", reason)
        return
    page = export(model, folder, "web", "web")
    jpeg = folder / "photo.jpg"
    Image.fromarray(image).save(jpeg, quality=95)
    for threads in (1, 2):
        timing = web_page.time_page(page, jpeg, runs=runs, threads=threads)
        backend = timing["backend"]
        isolation = "cross-origin isolated" if backend.get("crossOriginIsolated") else "not isolated"
        rows.append({"name": f"{backend['runtime']} WASM SIMD, {backend['threads']} thread(s), {isolation}",
                     "ms": timing["median_ms"],
                     "note": f"headless Chromium; the page's inference time; first image "
                             f"{timing['first'].get('inference_ms', float('nan')):.0f} ms"})


def table(rows: list[dict]) -> str:
    reference = next((r["ms"] for r in rows if r.get("reference")), None)
    lines = ["| runtime | ms per image (median) | x onnxruntime native | what is timed |", "|---|---:|---:|---|"]
    for row in rows:
        if row["ms"] is None:
            lines.append(f"| {row['name']} | - | - | {row['note']} |")
            continue
        ratio = f"{row['ms'] / reference:.2f}" if reference else "-"
        lines.append(f"| {row['name']} | {row['ms']:.2f} | {ratio} | {row['note']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--skip", default="", help="comma-separated: native, executorch, browser")
    args = parser.parse_args()
    from mobilenetv3.export.speed import machine_line

    model = build_model()
    image = photo()
    rng = np.random.default_rng(0)
    calibration = np.stack([resized(image)[0]] + [rng.uniform(0, 255, (SIZE, SIZE, 3)).astype(np.float32)
                                                  for _ in range(7)])
    rows: list[dict] = []
    skip = set(filter(None, args.skip.split(",")))
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        if "native" not in skip:
            time_native(model, folder, image, calibration, args.runs, rows)
        if "executorch" not in skip:
            time_executorch(model, folder, image, calibration, args.runs, rows)
        if "browser" not in skip:
            time_browser(model, folder, image, args.runs, rows)
    print(f"MobileNetV3-Small 224 classifier (random weights, 1000 classes), batch 1, median of {args.runs} "
          "runs after a warm-up.")
    print(table(rows))
    print()
    print(machine_line())


if __name__ == "__main__":
    main()
