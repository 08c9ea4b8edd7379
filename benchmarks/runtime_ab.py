"""A/B of two checkouts of the package on the paths the runtime layer serves.

Runs the same measurements with each checkout on `PYTHONPATH`, alternating
A and B every round (each measurement in a fresh process), and prints the
median of the rounds per cell with the ratio B / A (time: below 1 is
faster). Cells: PyTorch `model(x)` and `predict_on_batch` at batch 1, and
`predict_on_batch` at batch 32; JAX first and later `model(x)` at batch 1;
TensorFlow `predict_on_batch` at batch 1. MobileNetV3-Small classifier,
224x224, random weights.

    python benchmarks/runtime_ab.py --a /path/to/old/checkout --b . --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

WORKER = r"""
import json, statistics, sys, time
import numpy as np
import mobilenetv3, keras
backend = keras.backend.backend()
model = mobilenetv3.MobileNetV3ImageClassifier.from_preset(
    "mobilenet_v3_small", num_classes=1000, input_shape=(224, 224, 3))
x1 = np.random.default_rng(0).uniform(0, 255, (1, 224, 224, 3)).astype("float32")
x32 = np.random.default_rng(1).uniform(0, 255, (32, 224, 224, 3)).astype("float32")

def median_time(fn, runs):
    times = []
    for _ in range(runs):
        start = time.perf_counter(); fn(); times.append(time.perf_counter() - start)
    return statistics.median(times)

out = {}
if backend == "torch":
    import torch
    t1 = torch.from_numpy(x1)
    with torch.no_grad():
        for _ in range(5): model(t1)
        out["torch model(x) b1 ms"] = 1000 * median_time(lambda: model(t1), 40)
    for _ in range(5): model.predict_on_batch(x1)
    out["torch predict_on_batch b1 ms"] = 1000 * median_time(lambda: model.predict_on_batch(x1), 40)
    model.predict_on_batch(x32)
    out["torch predict_on_batch b32 ms"] = 1000 * median_time(lambda: model.predict_on_batch(x32), 8)
elif backend == "jax":
    start = time.perf_counter(); np.asarray(model(x1)); out["jax first model(x) s"] = time.perf_counter() - start
    out["jax later model(x) b1 ms"] = 1000 * median_time(lambda: np.asarray(model(x1)), 20)
else:
    for _ in range(5): model.predict_on_batch(x1)
    out["tf predict_on_batch b1 ms"] = 1000 * median_time(lambda: model.predict_on_batch(x1), 40)
print("AB_RESULT " + json.dumps(out))
"""


def measure(root: str, backend: str) -> dict:
    # Freed memory kept by glibc, as the benchmark harness does for every row (PyTorch's batch-32 rows vary
    # 2x between processes otherwise).
    allocator = {"MALLOC_MMAP_THRESHOLD_": "2000000000", "MALLOC_TRIM_THRESHOLD_": "4000000000"}
    env = {**os.environ, **allocator, "PYTHONPATH": os.path.abspath(root), "KERAS_BACKEND": backend,
           "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run([sys.executable, "-c", WORKER], capture_output=True, text=True, env=env, timeout=900,
                            cwd=os.path.abspath(root))
    for line in result.stdout.splitlines():
        if line.startswith("AB_RESULT "):
            return json.loads(line[len("AB_RESULT "):])
    raise RuntimeError(f"{root} on {backend} failed:\n{result.stderr[-3000:]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--a", required=True, help="checkout A (the baseline)")
    parser.add_argument("--b", required=True, help="checkout B")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backends", nargs="+", default=["torch", "jax", "tensorflow"])
    args = parser.parse_args()
    cells: dict[str, dict[str, list[float]]] = {"A": {}, "B": {}}
    for round_index in range(args.rounds):
        for backend in args.backends:
            for side, root in (("A", args.a), ("B", args.b)) if round_index % 2 == 0 else (("B", args.b), ("A", args.a)):
                for key, value in measure(root, backend).items():
                    cells[side].setdefault(key, []).append(value)
                print(f"round {round_index + 1}/{args.rounds}: {backend} {side} done", file=sys.stderr, flush=True)
    load = os.getloadavg()
    print(f"\nMedian of {args.rounds} rounds, each cell a fresh process, A and B alternating; "
          f"{os.cpu_count()} cores, load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} at the end.\n")
    print("| cell | A | B | B / A |\n|---|---|---|---|")
    for key in cells["A"]:
        a, b = statistics.median(cells["A"][key]), statistics.median(cells["B"][key])
        print(f"| {key} | {a:.2f} | {b:.2f} | {b / a:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
