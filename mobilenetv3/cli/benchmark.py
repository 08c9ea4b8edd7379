"""`mobilenetv3 benchmark --preset PRESET_OR_DIR`: time your model on this machine's runtimes.

Keras on the current backend, and its ONNX Runtime, LiteRT and OpenVINO
exports where those packages are installed (`mobilenetv3.export.speed`).
The comparison against other libraries is `python benchmarks/benchmark.py`
in a source checkout; its flags here stop with one line saying so."""

from __future__ import annotations

import argparse
from typing import Any

from mobilenetv3.cli import add_weights_args, weights_kwargs
from mobilenetv3.export.speed import RUNTIMES

# Flags of the peer comparison, which left the installed command.
PEER_FLAGS = {"models": "--models", "cases": "--cases", "rounds": "--rounds", "system_malloc": "--system-malloc",
              "out": "--out", "calibration": "--calibration"}
PEER_SCRIPT = "python benchmarks/benchmark.py"


def register(subparsers: Any) -> None:
    """Add the `benchmark` subcommand."""
    parser = subparsers.add_parser(
        "benchmark",
        help="time a model on the runtimes installed here (Keras, ONNX Runtime, LiteRT, OpenVINO)",
        description="Batch-1 latency and batch-N throughput (medians) of a model at its preset's input size: "
        "Keras on the current backend, and its exports on ONNX Runtime, LiteRT and OpenVINO when those "
        "packages are installed. Prints a Markdown table with each runtime's speed relative to Keras, and "
        f"the machine. The comparison against torchvision, timm, keras-cv and keras.applications is "
        f"`{PEER_SCRIPT}` in a source checkout.",
    )
    parser.add_argument("--preset", default=None, metavar="PRESET_OR_DIR",
                        help="the model to time: a registered preset name, a preset folder, a kaggle:// or hf:// "
                        "handle, or a weights file")
    parser.add_argument("--runtimes", nargs="+", choices=list(RUNTIMES), default=None, metavar="RUNTIME",
                        help=f"runtimes to time, from {', '.join(RUNTIMES)} (default: every one installed)")
    parser.add_argument("--runs", type=int, default=None, metavar="N",
                        help="timed batch-1 calls per runtime; batch-N calls are N/6 (default 30; --quick: 3)")
    parser.add_argument("--batch", type=int, default=None, metavar="N",
                        help="the throughput batch size (default 32; --quick: 4)")
    parser.add_argument("--quick", action="store_true", help="a short run: --runs 3 --batch 4")
    parser.add_argument("--exports-dir", default=None, metavar="DIR",
                        help="keep the exported models here (default: a temporary folder)")
    add_weights_args(parser)
    for dest, flag in PEER_FLAGS.items():  # accepted only to say where they went
        parser.add_argument(flag, dest=dest, nargs="*", default=None, help=argparse.SUPPRESS)
    parser.set_defaults(func=run)


def _check_args(args: argparse.Namespace) -> None:
    used = [flag for dest, flag in PEER_FLAGS.items() if getattr(args, dest) is not None]
    if used:
        raise ValueError(f"{used[0]} belongs to the peer comparison, which is not installed: run `{PEER_SCRIPT} "
                         f"{used[0]} ...` from a source checkout; `mobilenetv3 benchmark --preset PRESET_OR_DIR` "
                         "times your own model.")
    if args.preset is None:
        raise ValueError("--preset is required: the preset name, preset folder or weights file to time "
                         f"(the peer comparison is `{PEER_SCRIPT}` in a source checkout).")
    for flag in ("runs", "batch"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise ValueError(f"--{flag} must be at least 1; got {value}.")


def run(args: argparse.Namespace) -> int:
    """Load the model, time it on each runtime, print the machine and the table."""
    import keras

    from mobilenetv3.export import speed
    from mobilenetv3.presets import loader

    _check_args(args)
    runtimes = args.runtimes or speed.available_runtimes()
    speed.check_runtimes(runtimes)  # before the model loads: a missing package costs no start-up
    unavailable = {name: speed.unavailable_reason(name) for name in RUNTIMES if name not in runtimes}
    skipped = [f"{name} ({reason})" for name, reason in unavailable.items() if reason is not None]
    print(f"loading {args.preset} ...")
    model = loader.load_model(args.preset, **weights_kwargs(args))
    runs = args.runs or (3 if args.quick else 30)
    batch = args.batch or (4 if args.quick else 32)
    rows = speed.time_runtimes(model, runtimes, runs=runs, batch=batch, exports_dir=args.exports_dir)
    print()
    print(f"{type(model).__name__} from {args.preset}, Keras {keras.__version__} on {keras.backend.backend()}; "
          f"medians of {runs} batch-1 calls and {max(1, runs // 6)} batch-{batch} calls.")
    print(speed.machine_line())
    if skipped:
        print(f"Not timed: {'; '.join(skipped)}.")
    print()
    print(speed.speed_table(rows))
    return 0
