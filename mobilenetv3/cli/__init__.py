"""The `mobilenetv3` command. Each subcommand is a module in this package
with `register(subparsers)` adding its parser and setting `func`.

Subcommand modules import nothing heavy at module level (no Keras, no
backend): `mobilenetv3 --help` only builds the parsers. TensorFlow's and
absl's start-up lines are dropped unless `--verbose` is given."""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
import tempfile
from typing import Any

# Subcommand modules, in the order `--help` lists them.
COMMANDS = ["info", "demo", "predict", "train", "convert", "export", "benchmark", "segment", "detect", "evaluate"]

# Native start-up lines of TensorFlow/XLA/absl (glog format "I0000 ..."
# / "E0000 ...", absl's pre-init banner, cuda stub notes).
_NOISE = re.compile(
    r"^(?:[IWEF]\d{4} \d\d:\d\d:\d\d|WARNING: All log messages before absl::InitializeLog|"
    r"To enable the following instructions|.*(?:cuInit|cuda drivers|Unable to register cu|oneDNN custom operations))"
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mobilenetv3", description="MobileNetV3 for Keras 3: presets, weights, tasks, export."
    )
    parser.add_argument("--verbose", action="store_true",
                        help="show TensorFlow/absl start-up logs (hidden by default)")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        importlib.import_module(f"mobilenetv3.cli.{name}").register(subparsers)
    return parser


def add_weights_args(parser: argparse.ArgumentParser) -> None:
    """`--weights-file` / `--no-verify-weights-file`, for commands that load
    a preset."""
    parser.add_argument(
        "--weights-file", default=None, metavar="PATH",
        help="a downloaded weights file for a registered preset (instead of downloading it)",
    )
    parser.add_argument(
        "--no-verify-weights-file", action="store_true",
        help="load --weights-file even when its md5 differs from the registered one",
    )


def weights_kwargs(args: argparse.Namespace) -> dict:
    """The `from_preset` / `load_model` keywords of `add_weights_args`."""
    if args.weights_file is None:
        if args.no_verify_weights_file:
            raise ValueError("--no-verify-weights-file applies to --weights-file only.")
        return {}
    return {"weights_file": args.weights_file, "verify_weights_file": not args.no_verify_weights_file}


def load_task(args: argparse.Namespace, kind: str, head_args: dict | None = None, hint: str = "") -> Any:
    """The `kind` model ("classifier", "segmenter", "detector") that
    `--preset` holds, through the one loader (registered name, preset
    folder, weights file or handle; `--weights-file` honoured), with the
    preset's preprocessing and class names attached (or the quantization-
    aware twin of a `kind` model); a ValueError naming what `--preset`
    holds instead, followed by `hint`."""
    from mobilenetv3.presets import loader

    cls = loader.model_class(kind)
    model = loader.load_model(args.preset, cls, head_args=head_args, **weights_kwargs(args))
    if loader.task_kind(model) != kind:
        raise ValueError(f"--preset {args.preset!r} holds a {loader.task_kind(model)}, not a {kind}. {hint}".strip())
    return model


def image_files(paths: list[str]) -> list[str]:
    """Image arguments as files: a folder gives its images (sorted, by
    suffix), a file itself. Checked before any model loads, so a typo costs
    no start-up; a ValueError names the missing path or empty folder."""
    from pathlib import Path

    from mobilenetv3.core.images import IMAGE_SUFFIXES

    files: list[str] = []
    for path in paths:
        entry = Path(path)
        if entry.is_dir():
            found = sorted(str(f) for f in entry.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise ValueError(f"Image folder {path!r} has no images (looked for {', '.join(IMAGE_SUFFIXES)}).")
            files.extend(found)
        elif entry.is_file():
            files.append(path)
        else:
            raise ValueError(f"Cannot read image {path}: no such file or folder.")
    return files


def start_backend(verbose: bool = False) -> None:
    """Import Keras (and its backend) with native start-up logs filtered
    out of stderr, unless `verbose`."""
    if verbose:
        import keras  # noqa: F401
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with _filtered_native_stderr():
        import keras

        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            tf.config.list_physical_devices()  # device start-up (the cuInit line) happens here
    try:
        from absl import logging as absl_logging

        absl_logging.set_verbosity(absl_logging.ERROR)
    except ImportError:
        pass


class _filtered_native_stderr:  # noqa: N801 - used as a context manager
    """Redirect file descriptor 2 to a temporary file; on exit, restore it
    and replay every line that is not start-up noise."""

    def __enter__(self) -> None:
        sys.stderr.flush()
        self.saved = os.dup(2)
        self.capture = tempfile.TemporaryFile(mode="w+b")
        os.dup2(self.capture.fileno(), 2)

    def __exit__(self, *exc: object) -> None:
        sys.stderr.flush()
        os.dup2(self.saved, 2)
        os.close(self.saved)
        self.capture.seek(0)
        text = self.capture.read().decode("utf-8", "replace")
        self.capture.close()
        kept = [line for line in text.splitlines() if line.strip() and not _NOISE.match(line)]
        if kept:
            print("\n".join(kept), file=sys.stderr)


def as_flags(message: str) -> str:
    """Python advice in an error message, as the command's flags."""
    message = re.sub(r"from_preset\([^()]*weights_file='([^']*)'\)", r"--weights-file \1", message)
    return message.replace("pass load_weights=False", "pass --no-weights")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from mobilenetv3.core.utils import MissingExtraError

    args.argv = list(sys.argv[1:] if argv is None else argv)
    try:
        # A command may run itself as a watched child process (`train` in a
        # multi-process job): the watcher needs no backend.
        before_backend = getattr(args, "before_backend", None)
        code = before_backend(args) if before_backend is not None else None
        if code is not None:
            return code
        start_backend(args.verbose)
        return int(args.func(args) or 0)
    except (ValueError, OSError, RuntimeError, MissingExtraError) as error:
        print(f"mobilenetv3 {args.command}: error: {as_flags(str(error))}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
