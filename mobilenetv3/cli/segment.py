"""`mobilenetv3 segment`: overlay a segmenter's predicted mask on an image.

Example:

```
mobilenetv3 segment --preset my_lraspp_preset photo.jpg --out overlay.png
mobilenetv3 segment --preset my_lraspp_preset photos/ --output masks.jsonl --masks-dir masks/
```
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from mobilenetv3.cli import add_weights_args, image_files, load_task
from mobilenetv3.serving import batch_predict
from mobilenetv3.serving.batch_predict import palette

# --out suffix -> the PIL format written.
OUT_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".bmp": "BMP", ".tif": "TIFF",
               ".tiff": "TIFF"}

DEFAULT_OPACITY = 0.5


def register(subparsers: Any) -> None:
    """Add the `segment` subcommand."""
    parser = subparsers.add_parser(
        "segment",
        help="segment an image and write it with the predicted mask overlaid",
        description=(
            "Run a segmentation preset (a preset folder holding a MobileNetV3ImageSegmenter, "
            "e.g. one written by `mobilenetv3 convert` from torchvision's LR-ASPP) on IMAGE at "
            "its own size and write the image with each class in its own colour "
            "(background, class 0, is left as is). With --output and --masks-dir instead of --out, batch "
            "mode: a mask PNG per image and one JSONL/CSV row (mask path, class pixel counts) per image, "
            "resumable, with --shard and --runtime (see `mobilenetv3 predict --help`)."
        ),
    )
    parser.add_argument("--preset", required=True, help="segmenter preset folder or handle")
    parser.add_argument("images", nargs="*", metavar="IMAGE",
                        help="an image file (any format PIL reads); with --output, any files, folders or patterns")
    parser.add_argument("--out", metavar="OVERLAY.png",
                        help=f"where to write the overlay; its suffix names the format ({', '.join(OUT_FORMATS)})")
    parser.add_argument(
        "--opacity",
        type=float,
        default=DEFAULT_OPACITY,
        help=f"mask opacity in [0, 1] (default {DEFAULT_OPACITY})",
    )
    add_weights_args(parser)
    batch_predict.add_batch_arguments(parser, "segmenter")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Load the segmenter, predict the mask, write the overlay."""
    from PIL import Image

    from mobilenetv3.core import images
    from mobilenetv3.core.utils import atomic_path

    if not 0 <= args.opacity <= 1:
        raise ValueError(f"`--opacity` must be in [0, 1]; got {args.opacity}.")
    if (args.out is None) == (args.output is None):
        raise ValueError("Give one of --out OVERLAY.png (one image) or --output FILE.jsonl|.csv (batch mode).")
    batch = batch_predict.check_batch_arguments(args, "segmenter")
    if batch is not None:
        return batch_predict.run_batch(args, load_task(args, "segmenter"), batch)
    if len(args.images) != 1:
        raise ValueError(f"--out overlays one IMAGE; got {len(args.images)}. For many, use --output and --masks-dir.")
    args.image = args.images[0]
    out_format = _out_format(args.out)
    image_files([args.image])
    model = load_task(args, "segmenter")
    # The whole image goes through the network at full resolution: at most
    # images.WHOLE_IMAGE_MAX_PIXELS (4096 x 4096).
    pixels = images.read_rgb(args.image, max_pixels=images.WHOLE_IMAGE_MAX_PIXELS).astype("float32")
    mask = predict_mask(model, pixels)
    overlay = overlay_mask(pixels.astype("uint8"), mask, args.opacity)
    with atomic_path(args.out) as staging:
        Image.fromarray(overlay).save(staging, format=out_format)
    counts = np.bincount(mask.ravel(), minlength=model.num_classes)
    found = ", ".join(f"class {c}: {n} px" for c, n in enumerate(counts) if n and c)
    print(f"{args.out}: {mask.shape[1]}x{mask.shape[0]}, {found or 'background only'}")
    return 0


def _out_format(path: str) -> str:
    """The image format `--out`'s suffix names, or a ValueError listing them."""
    import os

    suffix = os.path.splitext(path)[1].lower()
    if suffix not in OUT_FORMATS:
        raise ValueError(f"--out {path!r}: the suffix must name an image format, one of {list(OUT_FORMATS)}; "
                         f"got {suffix or 'no suffix'!r}.")
    return OUT_FORMATS[suffix]


def predict_mask(model: Any, pixels: np.ndarray) -> np.ndarray:
    """The per-pixel argmax class of one `(height, width, 3)` 0..255 image.

    The model is given raw pixels: its backbone rescales them when it was
    built with `include_rescaling=True` (every converted preset is).
    """
    scores = model.predict(pixels[None], verbose=0)[0]
    return np.argmax(scores, axis=-1).astype("int32")


def overlay_mask(image: np.ndarray, mask: np.ndarray, opacity: float = DEFAULT_OPACITY) -> np.ndarray:
    """`image` (uint8 RGB) with every non-background pixel blended with its
    class colour.

    Example:

    ```python
    overlay_mask(np.zeros((4, 4, 3), "uint8"), np.eye(4, dtype="int32")).shape  # (4, 4, 3)
    ```
    """
    colors = palette(int(mask.max()) + 1).astype("float32")
    blended = image.astype("float32") * (1 - opacity) + colors[mask] * opacity
    return np.where((mask > 0)[..., None], blended, image).round().astype("uint8")
