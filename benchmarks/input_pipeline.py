"""Is the input pipeline the bottleneck? Images/s of the pipeline alone vs a training step alone.

    python benchmarks/input_pipeline.py --image-size 224 --batch-size 32

Writes a generated class-per-folder tree of PNG images (`--source-size`
pixels), then measures (1) `mobilenetv3.training.data_pipeline.image_folder_pipeline`
alone (decode, resize, augment, batch, prefetch; no model) and (2) the
training step alone (`train_on_batch` of a MobileNetV3-Small classifier on an
in-memory batch), and prints both in images/s and their ratio. A ratio above
1 means the pipeline keeps up. The machine's load average is printed beside
the figures: numbers measured on a busy machine are not final.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import keras
import numpy as np

import mobilenetv3
from mobilenetv3.datasets import make_classification_folder
from mobilenetv3.training.data_pipeline import image_folder_pipeline


def pipeline_rate(folder: Path, size: int, batch: int, batches: int) -> float:
    dataset, _ = image_folder_pipeline(folder, (size, size), batch, augment=True, repeat=True)
    iterator = iter(dataset)
    next(iterator)  # warm up (autotune, first decode)
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batch * batches / (time.perf_counter() - start)


def step_rate(size: int, batch: int, steps: int, classes: int) -> float:
    backbone = mobilenetv3.MobileNetV3SmallBackbone(input_shape=(size, size, 3))
    model = mobilenetv3.MobileNetV3ImageClassifier(backbone, classes)
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (batch, size, size, 3)).astype("float32")
    labels = rng.integers(0, classes, batch)
    model.train_on_batch(images, labels)  # compile
    start = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(images, labels)
    return batch * steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--source-size", type=int, default=256, help="side of the generated PNG files")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--per-class", type=int, default=50)
    parser.add_argument("--batches", type=int, default=20, help="timed pipeline batches")
    parser.add_argument("--steps", type=int, default=5, help="timed training steps")
    args = parser.parse_args()

    folder = make_classification_folder(
        Path(tempfile.mkdtemp(prefix="mobilenetv3_pipeline_")) / "data", per_class=args.per_class, size=args.source_size
    )
    load_before = os.getloadavg()
    data = pipeline_rate(folder, args.image_size, args.batch_size, args.batches)
    step = step_rate(args.image_size, args.batch_size, args.steps, 6)
    load_after = os.getloadavg()
    print(f"backend {keras.backend.backend()}, {os.cpu_count()} CPUs, batch {args.batch_size}, "
          f"{args.source_size}px PNG -> {args.image_size}x{args.image_size}, augment on")
    print(f"load average (1 min) before {load_before[0]:.1f}, after {load_after[0]:.1f}")
    print("| stage | images/s |")
    print("|---|---|")
    print(f"| input pipeline alone | {data:.0f} |")
    print(f"| training step alone (MobileNetV3-Small) | {step:.1f} |")
    print(f"| ratio pipeline / step | {data / step:.1f}x |")


if __name__ == "__main__":
    main()
