"""Training throughput (images/s of a `fit` step) of MobileNetV3 vs keras.applications.

    KERAS_BACKEND=jax python benchmarks/train_throughput.py --steps 10 --repeats 3

Each model gets a classifier head (1000 classes), SGD and sparse
cross-entropy; one warm-up call compiles, then `--repeats` timed runs of
`--steps` `train_on_batch` steps each, the two models alternating (A B, B A,
...) in the same process so load changes hit both alike. Prints a Markdown table with the median
images/s and the ratio to keras.applications on the same backend.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import keras
import numpy as np

import mobilenetv3

FAMILIES = ("small", "large")


def ours(family: str, size: int) -> keras.Model:
    alias = mobilenetv3.MobileNetV3SmallBackbone if family == "small" else mobilenetv3.MobileNetV3LargeBackbone
    return mobilenetv3.MobileNetV3ImageClassifier(alias(input_shape=(size, size, 3)), 1000)


def reference(family: str, size: int) -> keras.Model:
    builder = keras.applications.MobileNetV3Small if family == "small" else keras.applications.MobileNetV3Large
    return builder(input_shape=(size, size, 3), weights=None, classes=1000, include_preprocessing=True)


def _prepare(model: keras.Model, batch: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    model.compile(
        optimizer=keras.optimizers.SGD(0.01),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=not _has_softmax(model)),
    )
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, size=(batch, size, size, 3)).astype("float32")
    labels = rng.integers(0, 1000, size=(batch,))
    model.train_on_batch(images, labels)  # compile / warm up
    return images, labels


def _rate(model: keras.Model, images: np.ndarray, labels: np.ndarray, steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(images, labels)
    return len(images) * steps / (time.perf_counter() - start)


def ab_images_per_second(models: list[keras.Model], batch: int, size: int, steps: int, repeats: int) -> list[float]:
    """Median images/s of each model, timed in alternation in one process
    (A B, B A, A B, ...) so that load changes hit both alike."""
    data = [_prepare(model, batch, size) for model in models]
    rates: list[list[float]] = [[] for _ in models]
    for repeat in range(repeats):
        order = range(len(models)) if repeat % 2 == 0 else reversed(range(len(models)))
        for i in order:
            rates[i].append(_rate(models[i], *data[i], steps))
    return [statistics.median(r) for r in rates]


def _has_softmax(model: keras.Model) -> bool:
    activation = getattr(model.layers[-1], "activation", None)
    return getattr(activation, "__name__", "") == "softmax"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--families", nargs="+", choices=FAMILIES, default=list(FAMILIES))
    args = parser.parse_args()

    print(f"load average (1 min) {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (figures are final only on a quiet machine)")
    print(f"backend {keras.backend.backend()}, batch {args.batch_size}, {args.image_size}x{args.image_size}, "
          f"median of {args.repeats} x {args.steps} steps")
    print("| model | mobilenetv3 img/s | keras.applications img/s | ratio |")
    print("|---|---|---|---|")
    for family in args.families:
        models = [ours(family, args.image_size), reference(family, args.image_size)]
        mine, theirs = ab_images_per_second(models, args.batch_size, args.image_size, args.steps, args.repeats)
        print(f"| {family} | {mine:.1f} | {theirs:.1f} | {mine / theirs:.2f} |", flush=True)


if __name__ == "__main__":
    main()
