"""`mobilenetv3 predict`: classify images with a classifier preset."""

from __future__ import annotations

import argparse
import os
from typing import Any

import numpy as np

from mobilenetv3.cli import add_weights_args, image_files, load_task
from mobilenetv3.core.utils import check_positive_int
from mobilenetv3.serving import batch_predict

TOP = 5


def register(subparsers: Any) -> None:
    """Add the `predict` subcommand."""
    parser = subparsers.add_parser(
        "predict",
        help="classify images with an ImageNet classifier preset",
        description=(
            "Print the top classes of each image, preparing the images as the preset's "
            "weights expect (resize/crop and pixel scaling recorded with the preset). With --output, "
            "batch mode: any number of images (folders recursively, quoted globs, --files-from), decoded in "
            "parallel, on any --runtime, one JSONL/CSV row per image (top classes and scores), resumable, "
            "with --shard to split the set across processes; unreadable images get an error row."
        ),
    )
    parser.add_argument(
        "--preset",
        required=True,
        help="classifier preset name (e.g. mobilenet_v3_large_imagenet_classifier), preset folder or handle",
    )
    parser.add_argument("images", nargs="*", metavar="IMAGE",
                        help="image files (any format PIL reads), folders of them or quoted glob patterns")
    add_weights_args(parser)
    parser.add_argument("--top", type=int, default=TOP, help=f"classes to print per image (default {TOP})")
    batch_predict.add_batch_arguments(parser, "classifier")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Load the model, classify every image, print `--top` lines per image."""
    from mobilenetv3 import presets
    from mobilenetv3.presets import preprocessing

    check_positive_int("--top", args.top)
    batch = batch_predict.check_batch_arguments(args, "classifier")
    files = image_files(args.images) if batch is None else batch
    classifiers = sorted(presets.classifier_presets())
    if not _is_path_or_handle(args.preset) and args.preset not in presets.all_presets():
        raise ValueError(f"Unknown preset {args.preset!r}. Classifier presets: {classifiers}; or a classifier "
                         "preset folder (e.g. written by `mobilenetv3 train` or `convert`) or handle.")
    model = load_task(args, "classifier", hint=(
        f"It has no classes to predict. Use a classifier preset ({classifiers}), or train one on your images "
        "with `mobilenetv3 train DATA_DIR --preset PRESET --out FOLDER`."
    ))
    if batch is not None:
        return batch_predict.run_batch(args, model, batch)
    policy = preprocessing.preprocessing_for_model(model)
    images = preprocessing.load_images(files, policy)
    if not getattr(model, "backbone", model).include_rescaling:  # a quantization-aware twin: its float model's
        images = preprocessing.rescale(images, policy.mode)
    scores = np.asarray(model.predict(images, verbose=0), dtype="float64")
    probabilities = scores if model.activation == "softmax" else _softmax(scores)
    class_names = getattr(model, "class_names", None)
    top = min(args.top, probabilities.shape[1])  # a 3-class model prints its 3 classes
    for path, lines in zip(files, _top_classes(probabilities, top, class_names)):
        print(f"{path}:")
        for rank, (name, probability) in enumerate(lines, 1):
            print(f"  {rank}. {name:<40} {probability:.4f}")
    return 0


def _is_path_or_handle(preset: str) -> bool:
    return os.path.exists(preset) or os.sep in preset or preset.startswith((".", "~", "kaggle://", "hf://"))


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def _top_classes(
    probabilities: np.ndarray, top: int, class_names: list[str] | None = None
) -> list[list[tuple[str, float]]]:
    """Per image `(label, probability)` pairs: the preset folder's own class
    names when it has them, ImageNet names for 1000/1001 classes, else
    `class <index>`."""
    from mobilenetv3.core import decode

    if class_names is not None and len(class_names) == probabilities.shape[1]:
        order, best = decode.top_k(probabilities, top)
        return [[(class_names[i], float(p)) for i, p in zip(o, b)] for o, b in zip(order, best)]
    if probabilities.shape[1] in (decode.NUM_CLASSES, decode.NUM_CLASSES + 1):
        decoded = decode.decode_predictions(probabilities, top=top)
        return [[(f"{name} ({wnid})", p) for wnid, name, p in row] for row in decoded]
    order, best = decode.top_k(probabilities, top)
    return [[(f"class {i}", float(p)) for i, p in zip(o, b)] for o, b in zip(order, best)]
