"""`mobilenetv3 predict`: classify images with a classifier preset."""

from __future__ import annotations

import argparse
import os
from typing import Any

import numpy as np

TOP = 5


def register(subparsers: Any) -> None:
    """Add the `predict` subcommand."""
    parser = subparsers.add_parser(
        "predict",
        help="classify images with an ImageNet classifier preset",
        description=(
            "Print the top classes of each image, preparing the images as the preset's "
            "weights expect (resize/crop and pixel scaling recorded with the preset)."
        ),
    )
    parser.add_argument(
        "--preset",
        required=True,
        help="classifier preset name (e.g. mobilenet_v3_large_imagenet_classifier), preset folder or handle",
    )
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files (any format PIL reads)")
    parser.add_argument(
        "--weights-file", default=None, metavar="PATH", help="a downloaded weights file for a registered preset"
    )
    parser.add_argument(
        "--no-verify-weights-file", action="store_true",
        help="load --weights-file even when its md5 differs from the registered one",
    )
    parser.add_argument("--top", type=int, default=TOP, help=f"classes to print per image (default {TOP})")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Load the model, classify every image, print `--top` lines per image."""
    from mobilenetv3 import preprocessing, preset_io, presets
    from mobilenetv3.tasks import MobileNetV3ImageClassifier

    extra = {"weights_file": args.weights_file} if args.weights_file else {}
    if args.weights_file and args.no_verify_weights_file:
        extra["verify_weights_file"] = False
    model = MobileNetV3ImageClassifier.from_preset(args.preset, **extra)
    if args.preset in presets.all_presets():
        policy = preprocessing.preprocessing_for(args.preset)
    else:
        policy = preprocessing.preprocessing_for_model(model)
    images = preprocessing.load_images(args.images, policy)
    if not model.backbone.include_rescaling:
        images = preprocessing.rescale(images, policy.mode)
    scores = np.asarray(model.predict(images, verbose=0), dtype="float64")
    probabilities = scores if model.activation == "softmax" else _softmax(scores)
    class_names = preset_io.read_class_names(args.preset) if os.path.isdir(args.preset) else None
    for path, lines in zip(args.images, _top_classes(probabilities, args.top, class_names)):
        print(f"{path}:")
        for rank, (name, probability) in enumerate(lines, 1):
            print(f"  {rank}. {name:<40} {probability:.4f}")
    return 0


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def _top_classes(
    probabilities: np.ndarray, top: int, class_names: list[str] | None = None
) -> list[list[tuple[str, float]]]:
    """Per image `(label, probability)` pairs: the preset folder's own class
    names when it has them, ImageNet names for 1000/1001 classes, else
    `class <index>`."""
    from mobilenetv3 import decode

    if class_names is not None and len(class_names) == probabilities.shape[1]:
        order, best = decode.top_k(probabilities, top)
        return [[(class_names[i], float(p)) for i, p in zip(o, b)] for o, b in zip(order, best)]
    if probabilities.shape[1] in (decode.NUM_CLASSES, decode.NUM_CLASSES + 1):
        decoded = decode.decode_predictions(probabilities, top=top)
        return [[(f"{name} ({wnid})", p) for wnid, name, p in row] for row in decoded]
    order, best = decode.top_k(probabilities, top)
    return [[(f"class {i}", float(p)) for i, p in zip(o, b)] for o, b in zip(order, best)]
