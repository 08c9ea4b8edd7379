"""Run the mobilenetv3 benchmark: `python benchmarks/benchmark.py [--quick] [--models small large]`.

The same as `mobilenetv3 benchmark`; writes benchmarks/results/results.{md,json,png} by default and
calibrates the int8 exports on ../shared/fixtures/images when that folder exists.
"""

from __future__ import annotations

import sys
from pathlib import Path

from mobilenetv3.cli import main

if __name__ == "__main__":
    argv = sys.argv[1:]
    if "--out" not in argv:
        argv += ["--out", str(Path(__file__).resolve().parent / "results")]
    images = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "images"
    if "--calibration" not in argv and images.is_dir():
        argv += ["--calibration", str(images)]
    sys.exit(main(["benchmark", *argv]))
