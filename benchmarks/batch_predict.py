"""Batch prediction end to end: images/s of `mobilenetv3 predict --output` on each runtime.

    python benchmarks/batch_predict.py --images 1000 --repeats 3

Writes `--images` real-size JPEGs (random ~500x375 crops and flips of the
fixture photos in ../shared/fixtures/images; skipped with a message when
that folder is absent), then times, over the same files, a
MobileNetV3-Small 224 ImageNet classifier (random weights: speed only):

- `predict_files` (decode + preprocess + model + JSONL rows, fsync'd per
  batch) on each installed runtime (keras, onnxruntime, litert, openvino);
- a plain Python loop over the files: `load_image` then Keras
  `model.predict` on one image, one row written per image (`--loop-images N`
  times it on the first N files only: its rate is per image);
- torchvision: a `DataLoader` (2 worker processes, the same squash to 224)
  feeding eager `mobilenet_v3_small` under `torch.inference_mode`, rows
  written the same way.

Each figure is the median of `--repeats` runs (after one warm-up call of the
model); ratios are against the Keras loop. A second table splits the time:
decoding alone (`stream_batches` with the predictor's `prepare`, no model)
and the model alone (`Predictor.run` on decoded batches). The machine line
and its load average are printed beside the tables: figures from a busy
machine are not final.
"""

from __future__ import annotations

# torchvision before TensorFlow: importing it afterwards segfaults here.
try:
    import torch
    import torchvision
except ImportError:  # the torchvision row is skipped
    torch = torchvision = None

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "images"
SIZE = 224


def make_images(folder: Path, count: int, source: Path = FIXTURES, seed: int = 0) -> list[str]:
    """`count` JPEGs of about 500x375: random crops (60-100% of each side)
    and flips of the fixture photos, resized to 500x375 or 375x500."""
    from PIL import Image, ImageOps

    photos = [Image.open(p).convert("RGB") for p in sorted(source.glob("*.bmp"))]
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        photo = photos[i % len(photos)]
        width, height = photo.size
        w, h = int(width * rng.uniform(0.6, 1.0)), int(height * rng.uniform(0.6, 1.0))
        left, top = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
        crop = photo.crop((left, top, left + w, top + h))
        if rng.random() < 0.5:
            crop = ImageOps.mirror(crop)
        crop = crop.resize((500, 375) if rng.random() < 0.75 else (375, 500), Image.BILINEAR)
        path = folder / f"photo_{i:05d}.jpg"
        crop.save(path, quality=90)
        paths.append(str(path))
    return paths


def build_model():
    import keras

    import mobilenetv3

    keras.utils.set_random_seed(0)
    backbone = mobilenetv3.MobileNetV3SmallBackbone(input_shape=(SIZE, SIZE, 3), include_rescaling=True)
    return mobilenetv3.MobileNetV3ImageClassifier(backbone, 1000, activation="softmax")


def time_runtime(model, runtime: str, files: list[str], folder: Path, batch: int, repeats: int) -> dict:
    """End-to-end images/s of `predict_files`, plus the decode-only and model-only split."""
    from mobilenetv3.serving.batch_predict import predict_files
    from mobilenetv3.serving.predictor import open_predictor
    from mobilenetv3.serving.stream import stream_batches

    rates = []
    with open_predictor(model, runtime, log=lambda line: None) as predictor:
        image, size = predictor.prepare(files[0])
        predictor.run(np.stack([image] * batch), [size] * batch)  # warm-up
        for repeat in range(repeats):
            output = folder / f"{runtime}-{repeat}.jsonl"
            start = time.perf_counter()
            summary = predict_files(predictor, files, output, batch_size=batch, log=lambda line: None)
            rates.append(len(files) / (time.perf_counter() - start))
            assert summary["written"] == len(files) and summary["errors"] == 0, summary
        start = time.perf_counter()
        batches = list(stream_batches(files, predictor.prepare, batch_size=batch))
        decode = len(files) / (time.perf_counter() - start)
        start = time.perf_counter()
        for item in batches:
            predictor.run(item.images, item.sizes)
        model_rate = len(files) / (time.perf_counter() - start)
    return {"name": f"predict_files, {runtime}", "rates": rates, "decode": decode, "model": model_rate}


def time_keras_loop(model, files: list[str], folder: Path, repeats: int) -> dict:
    from mobilenetv3.presets import preprocessing

    policy = preprocessing.preprocessing_for_model(model).resized_to(SIZE)
    model.predict(preprocessing.load_image(files[0], policy)[None], verbose=0)
    rates = []
    for repeat in range(repeats):
        start = time.perf_counter()
        with open(folder / f"loop-{repeat}.jsonl", "w") as out:
            for path in files:
                scores = model.predict(preprocessing.load_image(path, policy)[None], verbose=0)[0]
                top = np.argsort(-scores)[:5]
                out.write(json.dumps({"path": path, "classes": top.tolist(),
                                      "scores": [float(scores[i]) for i in top]}) + "\n")
        rates.append(len(files) / (time.perf_counter() - start))
    return {"name": "Python loop over keras model.predict", "rates": rates}


class _Files(torch.utils.data.Dataset if torch is not None else object):
    def __init__(self, files: list[str]) -> None:
        from torchvision import transforms

        self.files = files
        self.transform = transforms.Compose([
            transforms.Resize((SIZE, SIZE)), transforms.ToTensor(),
            transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
        ])

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int):
        from PIL import Image

        with Image.open(self.files[index]) as image:
            return self.transform(image.convert("RGB")), index


def time_torchvision(files: list[str], folder: Path, batch: int, repeats: int) -> dict | None:
    if torch is None:
        print("torchvision is not installed: its row is skipped.")
        return None
    model = torchvision.models.mobilenet_v3_small().eval()
    with torch.inference_mode():
        model(torch.zeros(batch, 3, SIZE, SIZE))
    rates = []
    for repeat in range(repeats):
        start = time.perf_counter()
        loader = torch.utils.data.DataLoader(_Files(files), batch_size=batch, num_workers=2)
        with open(folder / f"torch-{repeat}.jsonl", "w") as out, torch.inference_mode():
            for images, indices in loader:
                probabilities = torch.softmax(model(images), dim=1)
                scores, classes = probabilities.topk(5, dim=1)
                for index, row_classes, row_scores in zip(indices.tolist(), classes.tolist(), scores.tolist()):
                    out.write(json.dumps({"path": files[index], "classes": row_classes, "scores": row_scores}) + "\n")
                out.flush()
                os.fsync(out.fileno())
        rates.append(len(files) / (time.perf_counter() - start))
    return {"name": "torchvision DataLoader (2 workers) + eager mobilenet_v3_small", "rates": rates}


def tables(rows: list[dict]) -> str:
    base = statistics.median(next(r for r in rows if r["name"].startswith("Python loop"))["rates"])
    lines = ["| pipeline | images/s (median) | runs | vs Keras loop |", "|---|---:|---:|---:|"]
    for row in rows:
        rate = statistics.median(row["rates"])
        lines.append(f"| {row['name']} | {rate:.1f} | {len(row['rates'])} | {rate / base:.2f}x |")
    lines += ["", "| runtime | end to end images/s | decode only images/s | model only images/s | "
              "decode share of the time |", "|---|---:|---:|---:|---:|"]
    for row in rows:
        if "decode" in row:
            share = (1 / row["decode"]) / (1 / row["decode"] + 1 / row["model"])
            lines.append(f"| {row['name'].split(', ')[1]} | {statistics.median(row['rates']):.1f} | "
                         f"{row['decode']:.1f} | {row['model']:.1f} | {share:.0%} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--loop-images", type=int, default=None,
                        help="time the per-image Keras loop on the first N files only (default all: it is slow)")
    parser.add_argument("--runtimes", default="keras,onnxruntime,litert,openvino",
                        help="comma-separated; those not installed are skipped")
    args = parser.parse_args()
    if not FIXTURES.is_dir():
        print(f"The fixture photos are not at {FIXTURES} (../shared is absent): nothing to time.")
        return
    from mobilenetv3.export.runtimes import unavailable_reason
    from mobilenetv3.export.speed import machine_line

    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        files = make_images(folder / "images", args.images)
        model = build_model()
        rows = []
        for runtime in args.runtimes.split(","):
            reason = unavailable_reason(runtime)
            if reason:
                print(f"{runtime}: skipped ({reason})")
                continue
            rows.append(time_runtime(model, runtime, files, folder, args.batch_size, args.repeats))
            print(f"{rows[-1]['name']}: {statistics.median(rows[-1]['rates']):.1f} images/s", file=sys.stderr)
        rows.append(time_keras_loop(model, files[: args.loop_images], folder, args.repeats))
        if args.loop_images:
            rows[-1]["name"] += f" (first {len(files[: args.loop_images])} files)"
        torch_row = time_torchvision(files, folder, args.batch_size, args.repeats)
        if torch_row:
            rows.append(torch_row)
    print(f"{args.images} JPEGs of about 500x375, MobileNetV3-Small 224, batch {args.batch_size}, "
          f"{args.repeats} runs each.")
    print(tables(rows))
    print()
    print(machine_line())


if __name__ == "__main__":
    main()
