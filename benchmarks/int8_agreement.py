"""int8 vs float: top-1 agreement and speed, on the real TF-slim Small weights.

Builds the classifier from the official TF-slim MobileNetV3-Small release
(`../shared/fixtures/tflite/v3-small_224_1.0_uint8.tflite`, read by
`mobilenetv3.weights.tflite`), exports it to ONNX and TFLite in float32 and
int8, and compares top-1 classes on crops/flips of the four real images in
`../shared/fixtures/images` (calibration uses a different set of crops of
the same photos: the fixtures hold only four images). Prints and writes
`benchmarks/results/int8.md`.

    python benchmarks/int8_agreement.py [--samples 96]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from mobilenetv3 import benchmark
from mobilenetv3.export import export_onnx, export_tflite, quantize_onnx

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"
MODEL = FIXTURES / "tflite" / "v3-small_224_1.0_uint8.tflite"
SIZE = 224


def crops(count: int, seed: int) -> np.ndarray:
    """`count` random crops (30-100% of the side) and flips of the fixture images, 224x224."""
    rng = np.random.default_rng(seed)
    photos = [Image.open(p).convert("RGB") for p in sorted((FIXTURES / "images").glob("*.bmp"))]
    out = []
    for index in range(count):
        photo = photos[index % len(photos)]
        width, height = photo.size
        side = int(min(width, height) * rng.uniform(0.3, 1.0))
        left, top = rng.integers(0, width - side + 1), rng.integers(0, height - side + 1)
        image = photo.crop((left, top, left + side, top + side)).resize((SIZE, SIZE), Image.BILINEAR)
        array = np.asarray(image, dtype=np.float32)
        out.append(array[:, ::-1] if rng.random() < 0.5 else array)
    return np.stack(out)


def _median_time(predict, images: np.ndarray, runs: int) -> float:
    predict(images)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        predict(images)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _top1(predict, images: np.ndarray, layout: str) -> np.ndarray:
    batch = images.transpose(0, 3, 1, 2) if layout == "nchw" else images
    return np.array([int(np.argmax(predict(batch[i : i + 1]))) for i in range(len(batch))])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=96)
    parser.add_argument("--calibration", type=int, default=64)
    args = parser.parse_args()

    from mobilenetv3 import weights
    from mobilenetv3.weights import tflite

    model = weights.build_model(tflite.read(str(MODEL)))
    evaluation, calibration = crops(args.samples, seed=1), crops(args.calibration, seed=2)
    reference = np.argmax(model.predict(evaluation, batch_size=16, verbose=0), axis=-1)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        files = Path(folder)
        export_onnx(model, files / "f.onnx", channels_first=True, input_size=SIZE)
        quantize_onnx(files / "f.onnx", files / "q.onnx", calibration, channels_first=True)
        export_tflite(model, files / "f.tflite", input_size=SIZE)
        export_tflite(model, files / "q.tflite", input_size=SIZE, int8=True, calibration=calibration)
        runtimes = [
            ("onnxruntime", benchmark._ort_session, "nchw", "onnx"),
            ("LiteRT", benchmark._litert, "nhwc", "tflite"),
        ]
        for runtime, open_model, layout, suffix in runtimes:
            float_fn, int8_fn = open_model(files / f"f.{suffix}"), open_model(files / f"q.{suffix}")
            float_top1, int8_top1 = _top1(float_fn, evaluation, layout), _top1(int8_fn, evaluation, layout)
            one = evaluation[:1].transpose(0, 3, 1, 2) if layout == "nchw" else evaluation[:1]
            many = np.concatenate([evaluation] * 1)[:32]
            many = many.transpose(0, 3, 1, 2) if layout == "nchw" else many
            speed = {}
            for name, fn in (("float", float_fn), ("int8", int8_fn)):
                speed[name] = (1 / _median_time(fn, one, 30), 32 / _median_time(fn, many, 5))
            rows.append(
                f"| {runtime} | {np.mean(float_top1 == reference):.1%} | {np.mean(int8_top1 == reference):.1%} "
                f"| {np.mean(int8_top1 == float_top1):.1%} | {speed['float'][0]:.0f} / {speed['int8'][0]:.0f} "
                f"| {speed['float'][1]:.0f} / {speed['int8'][1]:.0f} "
                f"| {speed['int8'][0] / speed['float'][0]:.2f}x / {speed['int8'][1] / speed['float'][1]:.2f}x |"
            )
    table = "\n".join(
        [
            f"TF-slim MobileNetV3-Small 1.0 (real weights), {args.samples} crops/flips of the 4 fixture images, "
            f"int8 calibrated on {args.calibration} other crops. {benchmark.machine_note()}",
            "",
            "| runtime | float top-1 = Keras | int8 top-1 = Keras | int8 top-1 = same-runtime float "
            "| img/s batch 1 float / int8 | img/s batch 32 float / int8 | int8 speed-up b1 / b32 |",
            "|---|---|---|---|---|---|---|",
            *rows,
        ]
    )
    print(table)
    out = Path(__file__).resolve().parent / "results"
    out.mkdir(exist_ok=True)
    (out / "int8.md").write_text(table + "\n")


if __name__ == "__main__":
    main()
