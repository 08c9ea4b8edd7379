"""`mobilenetv3 benchmark`: speed and memory against keras.applications, keras-cv, torchvision, timm."""

from __future__ import annotations

import argparse
from typing import Any

from mobilenetv3 import benchmark


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "benchmark",
        help="time mobilenetv3 (every backend and export) against its peers",
        description="Batch-1 latency, batch-32 throughput, build time and peak memory for MobileNetV3 "
        "Small/Large at 224x224. Each case runs in its own subprocess; peers that are not installed "
        "are skipped with a note.",
    )
    parser.add_argument("--models", nargs="+", choices=benchmark.MODELS, default=None,
                        help="models to run (default: small and large; --quick: small)")
    parser.add_argument("--cases", nargs="+", choices=benchmark.CASE_NAMES, default=None, metavar="CASE",
                        help=f"implementations to run (default all): {', '.join(benchmark.CASE_NAMES)}")
    parser.add_argument("--quick", action="store_true", help="a short run (few repetitions, batch 4)")
    parser.add_argument("--out", default="benchmark_results", metavar="DIR",
                        help="folder for results.md, results.json and results.png (default benchmark_results)")
    parser.add_argument("--exports-dir", default=None, metavar="DIR", help="keep the exported models here")
    parser.add_argument("--calibration", default=None, metavar="DIR",
                        help="images to calibrate the int8 exports on (default: random pixels)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    chart_note = benchmark.chart_note()  # checked before the cases run
    if chart_note:
        print(chart_note)
    rows = benchmark.run_benchmark(models=args.models, cases=args.cases, quick=args.quick,
                                   exports_dir=args.exports_dir, calibration=args.calibration)
    note = benchmark.machine_note()
    out = benchmark.write_report(rows, args.out, note)
    print()
    print(note)
    print(benchmark.markdown_table(rows))
    print(f"\nwrote {out / 'results.md'}, results.json" + (" and results.png" if not chart_note else ""))
    return 0
