"""`mobilenetv3 train DATA_DIR --preset P --out DIR`: fine-tune a classifier."""

from __future__ import annotations

import argparse
from pathlib import Path

from mobilenetv3.cli import add_weights_args, weights_kwargs


def _unfreeze_blocks(value: str) -> int | str:
    if value == "all":
        return value
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer or 'all'; got {value!r}") from None


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="fine-tune a classifier on a folder of images (one sub-folder per class)",
        description=(
            "Transfer learning: load a backbone preset, freeze it (BatchNorm in inference "
            "mode), train a new head, then unfreeze the top blocks with a lower learning "
            "rate. Writes a classifier preset folder with labels.txt for `mobilenetv3 predict`."
        ),
    )
    parser.add_argument("data_dir", help="folder with one sub-folder of images per class")
    parser.add_argument("--preset", default="mobilenet_v3_small_imagenet",
                        help="backbone preset name, or a preset folder of a backbone or classifier (its backbone "
                        "gets the new head, e.g. a folder written by `mobilenetv3 convert`)")
    parser.add_argument("--out", required=True, help="preset folder to write the classifier to")
    parser.add_argument("--image-size", type=int, default=224, help="square image side (default 224)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--head-epochs", type=int, default=5, help="epochs with the backbone frozen")
    parser.add_argument("--fine-tune-epochs", type=int, default=5, help="epochs with the top blocks unfrozen")
    parser.add_argument("--unfreeze-blocks", type=_unfreeze_blocks, default=3, help="top blocks to fine-tune, or 'all'")
    parser.add_argument("--learning-rate", type=float, default=1e-3, help="head phase learning rate")
    parser.add_argument("--fine-tune-learning-rate", type=float, default=1e-4)
    parser.add_argument("--weight-decay", type=float, default=0.0, help="AdamW weight decay (0: Adam)")
    parser.add_argument("--dropout", type=float, default=0.2, help="head dropout")
    parser.add_argument("--drop-path-rate", type=float, default=0.0, help="stochastic depth of the backbone")
    parser.add_argument("--augment", action="store_true", help="random flips and shifts")
    parser.add_argument(
        "--train-batchnorm",
        action="store_true",
        help="for backbones without pretrained weights: calibrate and train BatchNorm",
    )
    parser.add_argument("--dtype", default=None, help="e.g. mixed_bfloat16 or mixed_float16")
    parser.add_argument("--no-weights", action="store_true", help="random initialization (load_weights=False)")
    add_weights_args(parser)
    parser.add_argument("--validation-split", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mobilenetv3.training import fine_tune

    if args.image_size < 32:
        raise ValueError(f"--image-size must be at least 32 pixels; got {args.image_size}.")
    result = fine_tune(
        args.data_dir,
        args.preset,
        image_size=(args.image_size, args.image_size),
        batch_size=args.batch_size,
        head_epochs=args.head_epochs,
        fine_tune_epochs=args.fine_tune_epochs,
        unfreeze_blocks=args.unfreeze_blocks,
        train_batchnorm=args.train_batchnorm,
        head_learning_rate=args.learning_rate,
        fine_tune_learning_rate=args.fine_tune_learning_rate,
        weight_decay=args.weight_decay,
        dropout=args.dropout,
        drop_path_rate=args.drop_path_rate,
        dtype=args.dtype,
        augment=args.augment,
        validation_split=args.validation_split,
        load_weights=False if args.no_weights else None,
        out=args.out,
        seed=args.seed,
        verbose=0 if args.quiet else 1,
        **weights_kwargs(args),
    )
    print(f"classes: {', '.join(result.class_names)}")
    print(f"validation accuracy: {result.val_accuracy:.4f}")
    print(f"wrote classifier preset to {Path(args.out)}")
    return 0
