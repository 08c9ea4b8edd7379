"""Training throughput (images/s of a `fit` step) of MobileNetV3 vs keras.applications.

    KERAS_BACKEND=jax python benchmarks/train_throughput.py --steps 10 --repeats 3

Each model gets a classifier head (1000 classes), SGD and sparse
cross-entropy; one warm-up call compiles, then `--repeats` timed runs of
`--steps` `train_on_batch` steps each. Prints a Markdown table with the median
images/s and the ratio to keras.applications on the same backend.
"""

from __future__ import annotations

import argparse
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


def images_per_second(model: keras.Model, batch: int, size: int, steps: int, repeats: int) -> float:
    model.compile(
        optimizer=keras.optimizers.SGD(0.01),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=not _has_softmax(model)),
    )
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, size=(batch, size, size, 3)).astype("float32")
    labels = rng.integers(0, 1000, size=(batch,))
    model.train_on_batch(images, labels)  # compile / warm up
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            model.train_on_batch(images, labels)
        rates.append(batch * steps / (time.perf_counter() - start))
    return statistics.median(rates)


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

    print(f"backend {keras.backend.backend()}, batch {args.batch_size}, {args.image_size}x{args.image_size}, "
          f"median of {args.repeats} x {args.steps} steps")
    print("| model | mobilenetv3 img/s | keras.applications img/s | ratio |")
    print("|---|---|---|---|")
    for family in args.families:
        timing = [args.batch_size, args.image_size, args.steps, args.repeats]
        mine = images_per_second(ours(family, args.image_size), *timing)
        theirs = images_per_second(reference(family, args.image_size), *timing)
        print(f"| {family} | {mine:.1f} | {theirs:.1f} | {mine / theirs:.2f} |", flush=True)


if __name__ == "__main__":
    main()
