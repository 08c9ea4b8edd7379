"""`mobilenetv3 demo`: the library's main job end to end, in about a minute.

Transfer learning on the package's generated shapes data
(`datasets.make_classification_folder`): a MobileNetV3-Small backbone gets a
new classifier head and is fine-tuned, with Keras' progress bars. The demo
then classifies images it has never seen, prints the accuracy next to
chance and some predictions, and writes a grid of those images with their
predicted labels to a PNG. With network access it starts from the ImageNet
weights (`mobilenet_v3_small_imagenet`); offline it says so in one line and
trains from random weights (BatchNorm statistics calibrated on the data).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

IMAGENET_PRESET = "mobilenet_v3_small_imagenet"
RANDOM_PRESET = "mobilenet_v3_small"
# (per_class, image side, head epochs, fine-tune epochs); --quick is for tests.
FULL = (60, 64, 1, 8)
QUICK = (6, 48, 1, 0)
GRID_PER_CLASS = 4  # unseen images per class in the picture
TEST_PER_CLASS = 20  # unseen images per class for the accuracy


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="train a classifier on generated shapes in about a minute; writes a picture of the predictions",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", default="mobilenetv3_demo.png", metavar="PNG",
                        help="where to write the grid of predictions (default mobilenetv3_demo.png)")
    parser.add_argument("--offline", action="store_true", help="do not try to download the ImageNet weights")
    parser.add_argument("--quick", action="store_true", help="a few seconds of training (a smoke test)")
    parser.set_defaults(func=run)


def imagenet_weights(offline: bool) -> str | None:
    """The ImageNet weights file (downloaded once into the cache), or None
    with a one-line note when it cannot be had."""
    from mobilenetv3 import presets
    from mobilenetv3.weights import download

    if offline:
        print("Offline (--offline): training from random weights.")
        return None
    source = presets.find(IMAGENET_PRESET).weights
    try:
        return str(download.fetch(source.url, md5=source.md5))
    except download.DownloadError:
        print(f"Offline: the ImageNet weights ({source.filename}) cannot be downloaded; "
              "training from random weights instead.")
        return None


def run(args: argparse.Namespace) -> int:
    import keras

    import mobilenetv3
    from mobilenetv3.core.utils import scratch_dir
    from mobilenetv3.datasets import DEFAULT_CLASSES, make_classification_folder
    from mobilenetv3.training import fine_tune

    start = time.perf_counter()
    per_class, size, head_epochs, fine_epochs = QUICK if args.quick else FULL
    print(f"mobilenetv3 {mobilenetv3.__version__}, Keras {keras.__version__} ({keras.backend.backend()} backend)")
    weights_file = imagenet_weights(args.offline)
    pretrained = weights_file is not None
    with scratch_dir("demo") as folder:
        data = make_classification_folder(folder / "shapes", per_class=per_class, size=size)
        print(f"\nData: {per_class * len(DEFAULT_CLASSES)} generated {size}x{size} images of "
              f"{len(DEFAULT_CLASSES)} classes ({', '.join(DEFAULT_CLASSES)}), 20% held out for validation.")
        print(f"Model: MobileNetV3-Small backbone ({'ImageNet weights' if pretrained else 'random weights'}) "
              "+ a new classifier head.\n")
        result = fine_tune(
            data,
            IMAGENET_PRESET if pretrained else RANDOM_PRESET,
            image_size=(size, size),
            batch_size=16,
            head_epochs=head_epochs,
            fine_tune_epochs=fine_epochs,
            unfreeze_blocks="all",
            train_batchnorm=not pretrained,
            fine_tune_learning_rate=1e-3 if pretrained else 2e-3,
            augment=True,
            weights_file=weights_file,
            verbose=2,
        )
    accuracy, grid = evaluate_unseen(result.model, result.class_names, size)
    chance = 1 / len(result.class_names)
    print(f"\nAccuracy on {TEST_PER_CLASS * len(result.class_names)} images never seen in training: "
          f"{accuracy:.0%} (chance: {chance:.0%}).")
    print("Some predictions (true -> predicted):")
    for true, predicted, confidence, _ in grid[:: max(1, len(grid) // 6)][:6]:
        print(f"  {true:<8} -> {predicted:<8} {confidence:.0%}{'' if true == predicted else '  (wrong)'}")
    write_grid(Path(args.out), grid, size, title=(
        f"MobileNetV3-Small ({'ImageNet' if pretrained else 'random'} start), fine-tuned on generated shapes: "
        f"{accuracy:.0%} right on unseen images (chance {chance:.0%})"))
    print(f"\nWrote {args.out}: {len(grid)} unseen images with their predicted labels "
          f"(green: right, red: wrong). Done in {time.perf_counter() - start:.0f} s.")
    return 0


def evaluate_unseen(model: Any, class_names: list[str], size: int) -> tuple[float, list]:
    """Accuracy on freshly rendered images (another dataset seed), and the
    grid entries `(true, predicted, confidence, image)`."""
    from mobilenetv3.datasets import render_image

    labels = [c for c in class_names for _ in range(TEST_PER_CLASS)]
    pictures = [render_image(c, i, size, seed=1) for c in class_names for i in range(TEST_PER_CLASS)]
    logits = np.asarray(model.predict(np.stack([np.asarray(p, "float32") for p in pictures]), verbose=0))
    probabilities = np.exp(logits - logits.max(1, keepdims=True))
    probabilities /= probabilities.sum(1, keepdims=True)
    predicted = probabilities.argmax(1)
    accuracy = float(np.mean([class_names[p] == t for p, t in zip(predicted, labels)]))
    picks = [i for i in range(len(labels)) if i % TEST_PER_CLASS < GRID_PER_CLASS]
    # Column per class: row r holds the r-th image of every class.
    order = sorted(picks, key=lambda i: (i % TEST_PER_CLASS, i // TEST_PER_CLASS))
    grid = [(labels[i], class_names[predicted[i]], float(probabilities[i].max()), pictures[i]) for i in order]
    return accuracy, grid


def write_grid(path: Path, grid: list, size: int, cell: int = 128, title: str = "") -> None:
    """A PNG of the images with `predicted (confidence)` under each, green
    when right and red when wrong, written atomically."""
    from PIL import Image, ImageDraw, ImageFont

    from mobilenetv3.core.utils import atomic_path

    columns = len({true for true, *_ in grid})
    rows = -(-len(grid) // columns)
    label, top = 34, 26 if title else 0
    canvas = Image.new("RGB", (columns * cell, top + rows * (cell + label)), "white")
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=13)
    draw.text((4, 5), title, fill=(0, 0, 0), font=font)
    for index, (true, predicted, confidence, picture) in enumerate(grid):
        x, y = (index % columns) * cell, top + (index // columns) * (cell + label)
        canvas.paste(picture.resize((cell - 6, cell - 6), Image.NEAREST), (x + 3, y + 3))
        color = (0, 128, 0) if true == predicted else (200, 0, 0)
        draw.text((x + 4, y + cell), f"{predicted} {confidence:.0%}", fill=color, font=font)
        draw.text((x + 4, y + cell + 16), f"true: {true}", fill=(90, 90, 90), font=font)
    with atomic_path(path) as staging:
        canvas.save(staging, format="PNG")
