"""`mobilenetv3 convert SOURCE OUTPUT_DIR`: any supported weights file to a
preset folder that `from_preset(OUTPUT_DIR)` loads."""

from __future__ import annotations

import argparse


def run(args: argparse.Namespace) -> int:
    from mobilenetv3.presets import conversion

    options = {}
    if args.variant is not None:
        options["variant"] = args.variant
    if args.tf_padding is not None:
        options["tf_padding"] = args.tf_padding
    if options and args.format not in ("auto", "timm"):
        raise ValueError("--variant and --tf-padding apply to timm checkpoints only (--from timm).")
    conversion.convert(args.source, args.output_dir, args.format, args.overwrite, report=_print_summary, **options)
    print(f"Wrote preset folder {args.output_dir}.")
    return 0


def _print_summary(found: dict) -> None:
    names = found.pop("class_names", None)
    for key, value in found.items():
        print(f"{key:>14}: {value}")
    if names:
        print(f"{'class names':>14}: {len(names)} ({', '.join(names[:4])}, ...)")
    print(f"{'load it with':>14}: {found['model']}.from_preset(FOLDER)")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "convert",
        help="convert keras.applications/keras-cv/torchvision/timm/TFLite weights to a preset folder",
        description=__doc__,
    )
    parser.add_argument("source", help="weights file, keras-cv preset folder, or hf://timm/<model>")
    parser.add_argument("output_dir", help="preset folder to write")
    parser.add_argument(
        "--from",
        dest="format",
        default="auto",
        help="source format (default: auto, detected from the file; a wrong name lists the formats)",
    )
    parser.add_argument("--variant", help="timm model name, e.g. tf_mobilenetv3_large_100 (timm only)")
    parser.add_argument(
        "--tf-padding",
        dest="tf_padding",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="timm only: tf_mobilenetv3_* conventions (SAME padding, eps 1e-3) or not",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty OUTPUT_DIR")
    parser.set_defaults(func=run)
