"""`mobilenetv3 train DATA_DIR --preset P --out DIR`: fine-tune a classifier,
or, with `--task detect`, train an SSDLite detector (DATA_DIR: images plus a
COCO `annotations.json`; or `--synthetic N` generated shapes images), or, with
`--task segment --synthetic N`, an LR-ASPP segmenter on generated shapes."""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import subprocess
import sys
import warnings
from pathlib import Path

from mobilenetv3.cli import add_weights_args, weights_kwargs

# Top blocks fine-tuned by default on a pretrained backbone.
PRETRAINED_UNFREEZE = 3

# Defaults of the flags that depend on what is trained: real photos (a
# DATA_DIR), or the small generated shapes of `--synthetic N` (a random-init
# Small network at 96x96; the figures in docs/tasks.md come from these).
DEFAULTS = {"preset": "mobilenet_v3_small_imagenet", "image_size": 224, "batch_size": 32, "learning_rate": 1e-3,
            "epochs": 10, "validation_split": 0.2}
# `--qat`: a trained classifier, fine-tuned for a few epochs at a low rate.
QAT_DEFAULTS = {"preset": "mobilenet_v3_small_imagenet_classifier", "batch_size": 16, "learning_rate": 3e-5,
                "epochs": 8, "validation_split": 0.1}
# `--qat-target`: the twin's options (`quantize_aware`) for the runtime its int8 file is for.
QAT_TARGETS = {"litert": {}, "onnxruntime": {"hard_swish": "add_mul", "quantize_after_rescaling": True}}
SYNTHETIC_DEFAULTS = {
    "detect": {"preset": "mobilenet_v3_small", "image_size": 96, "batch_size": 16, "learning_rate": 2e-3, "epochs": 10,
               "validation_split": 0.2},
    "segment": {"preset": "mobilenet_v3_small", "image_size": 96, "batch_size": 16, "learning_rate": 5e-3, "epochs": 8,
                "validation_split": 0.2},
}


def resolve_defaults(args: argparse.Namespace) -> argparse.Namespace:
    """Fill the task-dependent flags left unset (`DEFAULTS`, or
    `SYNTHETIC_DEFAULTS[task]` with `--synthetic`)."""
    table = SYNTHETIC_DEFAULTS.get(args.task, DEFAULTS) if args.synthetic is not None else DEFAULTS
    if getattr(args, "qat", False):
        table = {**table, **QAT_DEFAULTS}
    for name, value in table.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


def _default_help(name: str) -> str:
    synthetic = ", ".join(f"{value[name]} with --task {task} --synthetic" for task, value in SYNTHETIC_DEFAULTS.items())
    return f"default {DEFAULTS[name]}; {synthetic}"


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
    parser.add_argument(
        "data_dir", nargs="?", default=None,
        help="classify: one sub-folder of images per class; detect: images + COCO annotations.json",
    )
    parser.add_argument(
        "--task", choices=("classify", "detect", "segment"), default="classify",
        help="classify (default), detect (an SSDLite detector) or segment (an LR-ASPP segmenter, on "
        "--synthetic N only); detect and segment use --image-size, --batch-size, --epochs, --learning-rate, "
        "--validation-split, --no-weights, --seed",
    )
    parser.add_argument(
        "--synthetic", type=int, default=None, metavar="N",
        help="detect, segment: train on N generated shapes images instead of DATA_DIR",
    )
    parser.add_argument("--epochs", type=int, default=None,
                        help=f"detect, segment, --qat: training epochs ({_default_help('epochs')}; "
                        f"{QAT_DEFAULTS['epochs']} with --qat)")
    parser.add_argument("--preset", default=None,
                        help="backbone preset name, or a preset folder of a backbone or classifier (its backbone "
                        "gets the new head, e.g. a folder written by `mobilenetv3 convert`; "
                        f"{_default_help('preset')})")
    qat = parser.add_argument_group(
        "quantization-aware training (an int8-ready twin of a trained classifier)")
    qat.add_argument(
        "--qat", action="store_true",
        help="train the quantization-aware twin of the classifier --preset (a classifier preset name or folder, "
        f"default {QAT_DEFAULTS['preset']}) on DATA_DIR and write it to --out for `mobilenetv3 export` (int8 "
        "LiteRT, ONNX, OpenVINO): with DATA_DIR's labels where its sub-folders are the classifier's classes, "
        "else by distillation from the float classifier (DATA_DIR: any folder of images, e.g. your own "
        "unlabelled photos); uses --epochs, --batch-size, --learning-rate, --validation-split, --seed",
    )
    qat.add_argument("--qat-crops", type=int, default=16, metavar="N",
                     help="--qat: random crops of each image per epoch (default 16)")
    qat.add_argument("--qat-target", choices=list(QAT_TARGETS), default="litert",
                     help="--qat: the runtime the twin is for: litert (default; also ONNX and OpenVINO, hard-swish "
                     "float) or onnxruntime (hard-swish as int8 add and multiply, the rescaled input quantized: "
                     "onnxruntime runs every op int8; not exportable to LiteRT)")
    qat.add_argument("--distill", action=argparse.BooleanOptionalAction, default=None,
                     help="--qat: distillation from the float classifier even where DATA_DIR has labels "
                     "(--no-distill: labels, an error without them)")
    parser.add_argument("--out", required=True, help="preset folder to write the classifier to")
    parser.add_argument("--image-size", type=int, default=None,
                        help=f"square image side ({_default_help('image_size')})")
    parser.add_argument("--batch-size", type=int, default=None, help=f"({_default_help('batch_size')})")
    parser.add_argument("--head-epochs", type=int, default=5, help="epochs with the backbone frozen")
    parser.add_argument("--fine-tune-epochs", type=int, default=5, help="epochs with the top blocks unfrozen")
    parser.add_argument(
        "--unfreeze-blocks", type=_unfreeze_blocks, default=None,
        help=f"top blocks to fine-tune, or 'all' (default: {PRETRAINED_UNFREEZE} for a pretrained preset, all without "
        "pretrained weights)",
    )
    parser.add_argument("--learning-rate", type=float, default=None,
                        help=f"head phase learning rate ({_default_help('learning_rate')})")
    parser.add_argument("--fine-tune-learning-rate", type=float, default=1e-4)
    parser.add_argument("--weight-decay", type=float, default=0.0, help="AdamW weight decay (0: Adam)")
    parser.add_argument("--dropout", type=float, default=0.2, help="head dropout")
    parser.add_argument("--drop-path-rate", type=float, default=0.0, help="stochastic depth of the backbone")
    parser.add_argument("--augment", action="store_true", help="random flips and shifts")
    parser.add_argument(
        "--train-batchnorm", action=argparse.BooleanOptionalAction, default=None,
        help="calibrate and train BatchNorm (default: on without pretrained weights, off for a pretrained preset)",
    )
    parser.add_argument("--dtype", default=None, help="e.g. mixed_bfloat16 or mixed_float16")
    parser.add_argument("--no-weights", action="store_true", help="random initialization (load_weights=False)")
    add_weights_args(parser)
    parser.add_argument("--validation-split", type=float, default=None,
                        help=f"fraction of the images held out (default 0.2; {QAT_DEFAULTS['validation_split']} "
                        "with --qat)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    resilience = parser.add_argument_group("checkpoints (survive being killed)")
    resilience.add_argument(
        "--checkpoint-dir", default=None, help="write a checkpoint here (atomically) at the end of every epoch"
    )
    resilience.add_argument("--checkpoint-every-steps", type=int, default=0, help="also every N batches")
    resilience.add_argument(
        "--resume", action="store_true", help="continue from the checkpoint in --checkpoint-dir, if there is one"
    )
    job = parser.add_argument_group("multi-process data parallel (JAX or TensorFlow backend)")
    job.add_argument(
        "--job-addresses",
        default=None,
        help="host:port of every process, comma separated, process 0 first (JAX uses process 0's as coordinator)",
    )
    job.add_argument("--num-processes", type=int, default=1, help="processes in the job")
    job.add_argument("--process-id", type=int, default=0, help="this process's index (0 writes the outputs)")
    job.add_argument(
        "--sync-batchnorm", action="store_true", help="trained BatchNorm uses the global batch's statistics"
    )
    job.add_argument(
        "--job-timeout", type=float, default=900.0, metavar="SECONDS",
        help="a process that makes no progress for this long (a peer died or hangs) stops with an error (default 900)",
    )
    parser.set_defaults(func=run, before_backend=watch_job_process)


# Set in the child process `watch_job_process` starts.
_CHILD_ENV = "MOBILENETV3_TRAIN_JOB_CHILD"
_SIGNAL_REASONS = {
    signal.SIGABRT: "was aborted by the JAX runtime (SIGABRT): the job lost a peer process (it died or was killed) "
    "or a collective failed",
    signal.SIGKILL: "was killed (SIGKILL: kill -9, or out of memory)",
    signal.SIGTERM: "was terminated (SIGTERM)",
    signal.SIGSEGV: "crashed (SIGSEGV)",
}


def watch_job_process(args: argparse.Namespace) -> int | None:
    """In a multi-process job, run this very command as a child process and
    say, in one line, what happened when it dies abnormally and how to
    resume; None (run in this process) otherwise.

    The runtime of a job ends a process whose peer died with a C++ abort
    (SIGABRT, 1 to 100 s later), and a stuck process is ended by the stall
    watchdog (`--job-timeout`); neither leaves the process itself a chance
    to say how to go on, so its parent says it. Signals sent to this
    process (SIGTERM, SIGHUP) are passed on; the child dies with it.
    """
    if args.job_addresses is None or args.task != "classify" or os.environ.get(_CHILD_ENV):
        return None
    from mobilenetv3.core.utils import STALLED_EXIT_CODE
    from mobilenetv3.core.validation import check_job_arguments

    check_job_arguments(args.job_addresses, args.num_processes, args.process_id, args.job_timeout)  # errors here

    child = subprocess.Popen(
        [sys.executable, "-m", "mobilenetv3", *args.argv], env={**os.environ, _CHILD_ENV: "1"},
        preexec_fn=_die_with_parent if sys.platform == "linux" else None,  # noqa: PLW1509 - no threads here
    )
    forwarded = {}
    for number in (signal.SIGTERM, signal.SIGHUP):
        forwarded[number] = signal.signal(number, lambda received, _: child.send_signal(received))
    previous_int = signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the child itself
    try:
        code = child.wait()
    finally:
        for number, handler in forwarded.items():
            signal.signal(number, handler)
        signal.signal(signal.SIGINT, previous_int)
    if code >= 0 and code != STALLED_EXIT_CODE:
        return code  # success, or an error the child has printed
    if code == STALLED_EXIT_CODE:
        reason = f"stopped after no progress for {args.job_timeout:g} s (--job-timeout)"
    else:
        reason = _SIGNAL_REASONS.get(-code, f"was killed by signal {-code}")
    print(f"mobilenetv3 train: error: process {args.process_id} of the {args.num_processes}-process job {reason}; "
          f"{_how_to_resume(args)}", file=sys.stderr)
    return code if code > 0 else 128 - code


def _how_to_resume(args: argparse.Namespace) -> str:
    if args.checkpoint_dir is None:
        return ("no checkpoint was written (no --checkpoint-dir): run the job again, with --checkpoint-dir DIR to "
                "make it resumable.")
    argv = [*args.argv] if "--resume" in args.argv else [*args.argv, "--resume"]
    return (f"resume every process of the job (each with its own --process-id) from the last checkpoint in "
            f"{args.checkpoint_dir}: mobilenetv3 {shlex.join(argv)}")


def _die_with_parent() -> None:
    """Linux: the child gets SIGTERM when its parent (the watcher) dies."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def run(args: argparse.Namespace) -> int:
    from mobilenetv3.core.images import SkippedImagesWarning

    with warnings.catch_warnings():  # restores showwarning
        show = warnings.showwarning

        def show_skipped(message, category, *rest, **kwargs):  # noqa: ANN001, ANN202
            if issubclass(category, SkippedImagesWarning):
                print(f"mobilenetv3 train: warning: {message}", file=sys.stderr)
            else:
                show(message, category, *rest, **kwargs)

        warnings.simplefilter("always", SkippedImagesWarning)
        warnings.showwarning = show_skipped
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    resolve_defaults(args)
    if args.image_size < 32:
        raise ValueError(f"--image-size must be at least 32 pixels; got {args.image_size}.")
    if args.qat:
        return _train_qat(args)
    if args.task == "detect":
        return _train_detector(args)
    if args.task == "segment":
        return _train_segmenter(args)
    if args.data_dir is None or args.synthetic is not None:
        raise ValueError("classify: pass DATA_DIR (--synthetic is for --task detect or segment).")
    if args.resume and args.checkpoint_dir is None:
        raise ValueError("--resume needs --checkpoint-dir.")
    if args.job_addresses is not None:
        from mobilenetv3.training.distributed import join_data_parallel

        join_data_parallel(args.job_addresses, args.num_processes, args.process_id, args.job_timeout)  # first
    elif args.num_processes != 1:
        raise ValueError("--num-processes > 1 needs --job-addresses.")
    from mobilenetv3.training import fine_tune

    unfreeze_blocks, train_batchnorm = _schedule(args)
    result = fine_tune(
        args.data_dir,
        args.preset,
        image_size=(args.image_size, args.image_size),
        batch_size=args.batch_size,
        head_epochs=args.head_epochs,
        fine_tune_epochs=args.fine_tune_epochs,
        unfreeze_blocks=unfreeze_blocks,
        train_batchnorm=train_batchnorm,
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
        sync_batchnorm=args.sync_batchnorm,
        checkpoint_dir=args.checkpoint_dir,
        checkpoint_every_steps=args.checkpoint_every_steps,
        resume=args.resume,
        **weights_kwargs(args),
    )
    print(f"classes: {', '.join(result.class_names)}")
    print(f"validation accuracy: {result.val_accuracy:.4f}")
    from mobilenetv3.training.distributed import is_chief

    if is_chief():
        print(f"wrote classifier preset to {Path(args.out)}")
    else:
        print(f"process {args.process_id}: the classifier preset is written by process 0")
    return 0


def _schedule(args: argparse.Namespace) -> tuple[int | str, bool]:
    """`(unfreeze_blocks, train_batchnorm)`: the flags as given; where not
    given, a pretrained backbone is frozen but for its top blocks (BatchNorm
    in inference mode), and one without pretrained weights trains whole, with
    BatchNorm in training mode (frozen random features learn nothing), said
    in one line."""
    from mobilenetv3 import presets

    registered = presets.all_presets().get(args.preset)
    weightless = args.no_weights or (registered is not None and registered.weights is None)
    if not weightless:
        return (PRETRAINED_UNFREEZE if args.unfreeze_blocks is None else args.unfreeze_blocks,
                bool(args.train_batchnorm))
    unfreeze = "all" if args.unfreeze_blocks is None else args.unfreeze_blocks
    train_batchnorm = True if args.train_batchnorm is None else args.train_batchnorm
    if args.unfreeze_blocks is None or args.train_batchnorm is None:
        name = "the backbone (--no-weights)" if args.no_weights else args.preset
        flags = f"--unfreeze-blocks {unfreeze} --{'' if train_batchnorm else 'no-'}train-batchnorm"
        print(f"mobilenetv3 train: {name} has no pretrained weights: training with {flags} "
              "(a frozen random backbone learns nothing); pass either flag to choose.")
    return unfreeze, train_batchnorm


def _task_training_kwargs(args: argparse.Namespace) -> dict:
    """The keywords `train_detector` and `train_segmenter` share."""
    return {"image_size": args.image_size, "batch_size": args.batch_size, "epochs": args.epochs,
            "learning_rate": args.learning_rate, "load_weights": False if args.no_weights else None,
            "validation_split": args.validation_split, "out": args.out, "seed": args.seed,
            "verbose": 0 if args.quiet else 1}


def _train_qat(args: argparse.Namespace) -> int:
    if args.task != "classify" or args.data_dir is None or args.synthetic is not None:
        raise ValueError("--qat trains the twin of a classifier on DATA_DIR (a folder of images); "
                         "--task detect / segment and --synthetic do not apply.")
    from mobilenetv3.training.qat import quantize_classifier

    result = quantize_classifier(
        args.preset, args.data_dir, epochs=args.epochs, batch_size=args.batch_size,
        learning_rate=args.learning_rate, crops_per_image=args.qat_crops, distill=args.distill,
        validation_split=args.validation_split, out=args.out, seed=args.seed, verbose=0 if args.quiet else 2,
        **QAT_TARGETS[args.qat_target],
    )
    print(f"quantization-aware training by {result.loss}: {result.model.count_params():,} parameters")
    if result.held_out:
        print(f"held-out images: {result.held_out}; top-1 agreement with the float classifier: "
              f"{result.agreement:.4f}")
        if result.accuracy is not None:
            print(f"held-out accuracy: {result.accuracy:.4f}")
    print(f"wrote quantization-aware preset to {Path(args.out)} (int8 files from it: "
          f"`mobilenetv3 export {args.out} model.tflite --format tflite`; onnx, openvino alike)")
    return 0


def _train_detector(args: argparse.Namespace) -> int:
    from mobilenetv3.training.detector import train_detector

    result = train_detector(
        args.data_dir,
        args.preset,
        synthetic_images=args.synthetic,
        **_task_training_kwargs(args),
    )
    print(f"classes: {', '.join(result.class_names[1:])}")
    if result.map50 is not None:
        print(f"validation COCO AP@0.5: {result.map50:.4f}")
    elif args.validation_split > 0:
        print("validation COCO AP@0.5: none (the held-out images hold no box)")
    print(f"wrote detector preset to {Path(args.out)}")
    return 0


def _train_segmenter(args: argparse.Namespace) -> int:
    if args.data_dir is not None or args.synthetic is None:
        raise ValueError("--task segment trains on --synthetic N generated shapes images only (no DATA_DIR: "
                         "for your own images and masks, use MobileNetV3ImageSegmenter.fit).")
    if args.synthetic < 2:
        raise ValueError(f"--synthetic must be at least 2; got {args.synthetic}.")
    from mobilenetv3.training.segmenter import train_segmenter

    result = train_segmenter(
        args.synthetic,
        args.preset,
        **_task_training_kwargs(args),
    )
    print(f"classes: {', '.join(result.class_names[1:])} (0: background)")
    if result.foreground_iou is not None:
        print(f"validation foreground mean IoU: {result.foreground_iou:.4f}")
    print(f"wrote segmenter preset to {Path(args.out)}")
    return 0
