"""`mobilenetv3 detect`: draw a detector's boxes, labels and scores on images.

Example:

```
mobilenetv3 detect --preset my_ssdlite_preset photo.jpg street.png --out detections/
mobilenetv3 detect --preset my_ssdlite_preset photos/ --output boxes.jsonl --bounding-box-format xywh
```
"""

from __future__ import annotations

import argparse
import colorsys
from pathlib import Path
from typing import Any

import numpy as np

from mobilenetv3.cli import add_weights_args, image_files, load_task
from mobilenetv3.serving import batch_predict

DEFAULT_SCORE_THRESHOLD = 0.3
DEFAULT_MAX_DETECTIONS = 20


def register(subparsers: Any) -> None:
    """Add the `detect` subcommand."""
    parser = subparsers.add_parser(
        "detect",
        help="detect objects in images and write them with boxes drawn (PNG)",
        description=(
            "Run a detector preset (a MobileNetV3ObjectDetector folder, e.g. one written by "
            "`mobilenetv3 convert` from torchvision's SSDLite, or by `mobilenetv3 train --task "
            "detect`) on each IMAGE at its own size, print the detections and write "
            "OUT/<image name>.png with each box, its class name and score drawn. With --output instead of "
            "--out, batch mode: one JSONL/CSV row of boxes (in --bounding-box-format), labels and scores per "
            "image, resumable, with --shard and --runtime (see `mobilenetv3 predict --help`)."
        ),
    )
    parser.add_argument("--preset", required=True, help="detector preset folder, name or handle")
    parser.add_argument("images", nargs="*", metavar="IMAGE",
                        help="image files (any format PIL reads), folders of them or quoted glob patterns")
    parser.add_argument("--out", metavar="DIR", help="folder for the annotated PNGs (or --output)")
    parser.add_argument(
        "--score-threshold", type=float, default=DEFAULT_SCORE_THRESHOLD,
        help=f"keep detections scoring above this, in [0, 1] (default {DEFAULT_SCORE_THRESHOLD})",
    )
    parser.add_argument(
        "--max-detections", type=int, default=DEFAULT_MAX_DETECTIONS,
        help=f"detections kept per image (default {DEFAULT_MAX_DETECTIONS})",
    )
    add_weights_args(parser)
    batch_predict.add_batch_arguments(parser, "detector")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Detect in every image, print the detections, write one PNG each."""
    from mobilenetv3.core import images
    from mobilenetv3.core.utils import atomic_path, check_positive_int

    if not 0 <= args.score_threshold <= 1:
        raise ValueError(f"--score-threshold must be in [0, 1]; got {args.score_threshold}.")
    check_positive_int("--max-detections", args.max_detections)
    if (args.out is None) == (args.output is None):
        raise ValueError("Give one of --out DIR (draw the boxes) or --output FILE.jsonl|.csv (batch mode).")
    batch = batch_predict.check_batch_arguments(args, "detector")
    files = image_files(args.images) if batch is None else batch
    head_args = {"score_threshold": args.score_threshold, "max_detections": args.max_detections,
                 "bounding_box_format": "xyxy"}
    model = load_task(args, "detector", head_args)
    if batch is not None:
        return batch_predict.run_batch(args, model, batch)
    names = getattr(model, "class_names", None)
    pictures = [images.read_rgb(path) for path in files]  # every file readable before any output
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for path, picture in zip(files, pictures):
        found = model.predict(picture[None].astype("float32"), verbose=0)
        count = int(found["num_detections"][0])
        boxes, scores = found["boxes"][0, :count], found["confidence"][0, :count]
        labels = [_name(int(label), names) for label in found["labels"][0, :count]]
        target = out / f"{Path(path).stem}.png"
        print(f"{path}: {count} detection{'s' * (count != 1)} -> {target}")
        for label, score, box in zip(labels, scores, boxes):
            print(f"  {label:<20} {score:.3f}  [{', '.join(f'{v:.1f}' for v in box)}]")
        drawn = draw_detections(picture, boxes, found["labels"][0, :count], scores, labels)
        with atomic_path(target) as staging:
            drawn.save(staging, format="PNG")
    return 0


def draw_detections(image: np.ndarray, boxes: Any, labels: Any, scores: Any, names: list[str]) -> Any:
    """`image` (uint8 RGB) as a PIL image with each `xyxy` pixel box
    outlined in its class's colour and captioned "name score"."""
    from PIL import Image, ImageDraw, ImageFont

    picture = Image.fromarray(image).convert("RGB")
    draw = ImageDraw.Draw(picture)
    side = min(picture.size)
    width = max(2, round(side / 160))
    font = ImageFont.load_default(size=max(11, round(side / 28)))
    boxes_drawn = list(zip(boxes, labels, scores, names))
    for box, label, _, _ in boxes_drawn:
        draw.rectangle(tuple(float(v) for v in box), outline=_color(int(label)), width=width)
    captions: list[tuple[float, float, float, float]] = []
    for box, label, score, name in boxes_drawn:  # best first: captions never cover a better one's
        caption = f"{name} {float(score):.2f}"
        left, top, right, bottom = draw.textbbox((0, 0), caption, font=font)
        w, h = right - left + 2 * width, bottom - top + 2 * width
        x1, y1 = float(box[0]), float(box[1])
        x = min(max(x1, 0.0), max(picture.size[0] - w, 0.0))
        y = y1 - h if y1 - h >= 0 else max(y1, 0.0)  # above the box, else inside its top
        for other in sorted(captions, key=lambda r: r[1]):
            if x < other[2] and other[0] < x + w and y < other[3] and other[1] < y + h:
                y = other[3]  # below an overlapping caption
        captions.append((x, y, x + w, y + h))
        color = _color(int(label))
        draw.rectangle((x, y, x + w, y + h), fill=color)
        draw.text((x + width - left, y + width - top), caption, fill=_text_color(color), font=font)
    return picture


def _name(label: int, names: list[str] | None) -> str:
    return names[label] if names is not None and 0 <= label < len(names) else f"class {label}"


def _color(label: int) -> tuple[int, int, int]:
    """A saturated colour per class, far apart for neighbouring labels."""
    hue = (label * 0.618033988749895) % 1.0
    return tuple(round(255 * c) for c in colorsys.hsv_to_rgb(hue, 0.85, 0.95))


def _text_color(background: tuple[int, int, int]) -> tuple[int, int, int]:
    luminance = 0.299 * background[0] + 0.587 * background[1] + 0.114 * background[2]
    return (0, 0, 0) if luminance > 140 else (255, 255, 255)
