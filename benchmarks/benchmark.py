"""The peer-comparison benchmark: `python benchmarks/benchmark.py [--quick] [--models small large]`.

mobilenetv3 (every Keras backend and export) against keras.applications,
keras-cv, torchvision and timm; the harness is `harness.py` beside this file.
Writes benchmarks/results/results.{md,json,png} by default and calibrates
the int8 exports on ../shared/fixtures/images when that folder exists. Runs
from any working folder. (The installed `mobilenetv3 benchmark --preset ...`
times one model on this machine's runtimes instead.)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import harness

HERE = Path(__file__).resolve().parent
SHARED_IMAGES = HERE.parents[1] / "shared" / "fixtures" / "images"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python benchmarks/benchmark.py",
        description="Batch-1 latency, batch-32 throughput, build time and peak memory for MobileNetV3 "
        "Small/Large at 224x224. Each case runs in its own subprocess; peers that are not installed "
        "are skipped with a note. --models detector runs the SSDLite group instead: our SSDLite (Keras TF, "
        "ONNX Runtime, LiteRT, OpenVINO; raw network and end to end) against torchvision's "
        "ssdlite320_mobilenet_v3_large (eager, and its torch.onnx export) at 320x320, batch 1 and 8. "
        "--models train runs the training group: one SGD step (sparse cross-entropy) of MobileNetV3-Small at "
        "224x224, batch 32, ours vs keras.applications on TensorFlow, JAX and PyTorch, and torchvision eager.",
    )
    parser.add_argument("--models", nargs="+", choices=harness.MODELS, default=None,
                        help="models to run (default: small and large; --quick: small); detector: the SSDLite group; "
                        "train: training steps")
    parser.add_argument("--cases", nargs="+", default=None, metavar="CASE",
                        help="implementations to run, names or globs such as '*openvino*' (default all): "
                        f"{', '.join(harness.CASE_NAMES)}")
    parser.add_argument("--quick", action="store_true", help="a short run (few repetitions, batch 4)")
    parser.add_argument("--out", default=str(HERE / "results"), metavar="DIR",
                        help="folder for results.md, results.json and results.png (default benchmarks/results)")
    parser.add_argument("--exports-dir", default=None, metavar="DIR", help="keep the exported models here")
    parser.add_argument("--calibration", default=str(SHARED_IMAGES) if SHARED_IMAGES.is_dir() else None,
                        metavar="DIR", help="images to calibrate the int8 exports on (default: "
                        "../shared/fixtures/images when it exists, else random pixels)")
    parser.add_argument("--rounds", type=int, default=1, metavar="N",
                        help="run every case N times (all cases once per round) and keep each case's best "
                        "round: steadier on a shared machine (default 1)")
    parser.add_argument("--system-malloc", action="store_true",
                        help="leave glibc's malloc defaults in the workers (default: keep freed memory, "
                        f"{' '.join(f'{k}={v}' for k, v in harness.ALLOCATOR_ENV.items())}, for every row)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the selected cases, print the summary and table, write the report."""
    args = build_parser().parse_args(argv)
    chart_note = harness.chart_note()  # checked before the cases run
    if chart_note:
        print(chart_note)
    start = time.perf_counter()
    try:
        rows = harness.run_benchmark(models=args.models, cases=args.cases, quick=args.quick,
                                     exports_dir=args.exports_dir, calibration=args.calibration,
                                     system_malloc=args.system_malloc, rounds=args.rounds)
    except ValueError as error:
        print(f"benchmark.py: error: {error}", file=sys.stderr)
        return 2
    rounds = f" Best of {args.rounds} rounds per case." if args.rounds > 1 else ""
    note = f"{harness.machine_note(args.system_malloc)}{rounds} Run took {(time.perf_counter() - start) / 60:.1f} min."
    out = harness.write_report(rows, args.out, note)
    print()
    print(note)
    print(harness.summary(rows))
    print(harness.markdown_table(rows))
    print(f"\nwrote {out / 'results.md'}, results.json" + (" and results.png" if not chart_note else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
