"""`mobilenetv3 benchmark`: speed and memory against keras.applications, keras-cv, torchvision, timm."""

from __future__ import annotations

import argparse
import time
from typing import Any

from mobilenetv3 import benchmark


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "benchmark",
        help="time mobilenetv3 (every backend and export) against its peers",
        description="Batch-1 latency, batch-32 throughput, build time and peak memory for MobileNetV3 "
        "Small/Large at 224x224. Each case runs in its own subprocess; peers that are not installed "
        "are skipped with a note. --models detector runs the SSDLite group instead: our SSDLite (Keras TF, "
        "ONNX Runtime, LiteRT, OpenVINO; raw network and end to end) against torchvision's "
        "ssdlite320_mobilenet_v3_large (eager, and its torch.onnx export) at 320x320, batch 1 and 8. "
        "--models train runs the training group: one SGD step (sparse cross-entropy) of MobileNetV3-Small at "
        "224x224, batch 32, ours vs keras.applications on TensorFlow, JAX and PyTorch, and torchvision eager.",
    )
    parser.add_argument("--models", nargs="+", choices=benchmark.MODELS, default=None,
                        help="models to run (default: small and large; --quick: small); detector: the SSDLite group; "
                        "train: training steps")
    parser.add_argument("--cases", nargs="+", default=None, metavar="CASE",
                        help="implementations to run, names or globs such as '*openvino*' (default all): "
                        f"{', '.join(benchmark.CASE_NAMES)}")
    parser.add_argument("--quick", action="store_true", help="a short run (few repetitions, batch 4)")
    parser.add_argument("--out", default="benchmark_results", metavar="DIR",
                        help="folder for results.md, results.json and results.png (default benchmark_results)")
    parser.add_argument("--exports-dir", default=None, metavar="DIR", help="keep the exported models here")
    parser.add_argument("--calibration", default=None, metavar="DIR",
                        help="images to calibrate the int8 exports on (default: random pixels)")
    parser.add_argument("--rounds", type=int, default=1, metavar="N",
                        help="run every case N times (all cases once per round) and keep each case's best "
                        "round: steadier on a shared machine (default 1)")
    parser.add_argument("--system-malloc", action="store_true",
                        help="leave glibc's malloc defaults in the workers (default: keep freed memory, "
                        f"{' '.join(f'{k}={v}' for k, v in benchmark.ALLOCATOR_ENV.items())}, for every row)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    chart_note = benchmark.chart_note()  # checked before the cases run
    if chart_note:
        print(chart_note)
    start = time.perf_counter()
    rows = benchmark.run_benchmark(models=args.models, cases=args.cases, quick=args.quick,
                                   exports_dir=args.exports_dir, calibration=args.calibration,
                                   system_malloc=args.system_malloc, rounds=args.rounds)
    rounds = f" Best of {args.rounds} rounds per case." if args.rounds > 1 else ""
    note = f"{benchmark.machine_note(args.system_malloc)}{rounds} Run took {(time.perf_counter() - start) / 60:.1f} min."
    out = benchmark.write_report(rows, args.out, note)
    print()
    print(note)
    print(benchmark.summary(rows))
    print(benchmark.markdown_table(rows))
    print(f"\nwrote {out / 'results.md'}, results.json" + (" and results.png" if not chart_note else ""))
    return 0
