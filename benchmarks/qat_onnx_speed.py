"""onnxruntime int8 files of the real TF-slim Small: post-training vs the
quantization-aware twins, speed and agreement with the float model.

The twins are calibrated on the 64 calibration crops of `int8_agreement.py`
and not trained (speed and the runtime's arithmetic are the point, not
accuracy): the default twin (hard-swish float, raw pixels quantized), the
onnxruntime twin (`hard_swish="add_mul"`, `quantize_after_rescaling=True`,
what `train --qat-target onnxruntime` trains) with its weights written as
uint8 with zero point 128 (the default: onnxruntime's u8 x u8 kernels) and
as int8 (u8 x i8 kernels, which add pairs of products in saturating int16
on x86 CPUs without VNNI). Each file: top-1 agreement with the float model
on the 96 evaluation crops, logit error in float-logit standard deviations,
the largest distance from its own twin in output steps, and one-thread
medians at batch 1 and 32 (files timed in turn, two rounds).

    python benchmarks/qat_onnx_speed.py [--runs 100]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import harness  # benchmarks/harness.py, beside this script
import numpy as np
from int8_agreement import MODEL, SIZE, crops, logit_error, median_time
from qat_agreement import _output_step, _outputs

from mobilenetv3.export import export_onnx, quantize_onnx, speed
from mobilenetv3.export.runtimes import open_onnxruntime
from mobilenetv3.presets import loader
from mobilenetv3.quantization import calibrate_ranges, quantize_aware
from mobilenetv3.weights import tflite

ONNXRUNTIME_TWIN = {"hard_swish": "add_mul", "quantize_after_rescaling": True}


def files(model, folder: Path, calibration: np.ndarray) -> dict:
    """`{label: (path, twin or None)}` of the four int8 files."""
    export_onnx(model, folder / "float.onnx", input_size=SIZE)
    quantize_onnx(folder / "float.onnx", folder / "ptq.onnx", calibration)
    default, fast = quantize_aware(model), quantize_aware(model, **ONNXRUNTIME_TWIN)
    for twin in (default, fast):
        calibrate_ranges(twin, calibration)
    export_onnx(default, folder / "default.onnx", input_size=SIZE)
    export_onnx(fast, folder / "fast_u8.onnx", input_size=SIZE)
    export_onnx(fast, folder / "fast_i8.onnx", input_size=SIZE, qat_weight_type="int8")
    return {"PTQ (`quantize_onnx`)": (folder / "ptq.onnx", None),
            "QAT twin, default, uint8 weights": (folder / "default.onnx", default),
            "QAT twin for onnxruntime, uint8 weights": (folder / "fast_u8.onnx", fast),
            "QAT twin for onnxruntime, int8 weights": (folder / "fast_i8.onnx", fast)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100, help="timed batch-1 calls per file and round")
    args = parser.parse_args()
    model = loader.build_model(tflite.read(str(MODEL)))
    evaluation, calibration = crops(96, seed=1), crops(64, seed=2)
    reference = model.predict(evaluation, batch_size=16, verbose=0)
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        exported = files(model, Path(scratch), calibration)
        sessions = {label: open_onnxruntime(path, 1) for label, (path, _) in exported.items()}
        timings: dict[str, list[tuple[float, float]]] = {label: [] for label in sessions}
        for _ in range(2):
            for label, predict in sessions.items():
                ms = 1000 * median_time(predict, evaluation[:1], args.runs)
                per_second = 32 / median_time(predict, evaluation[:32], max(5, args.runs // 10))
                timings[label].append((ms, per_second))
        for label, predict in sessions.items():
            out = _outputs(predict, evaluation)
            twin = exported[label][1]
            steps = "-" if twin is None else (
                f"{np.max(np.abs(out - twin.predict(evaluation, batch_size=16, verbose=0))) / _output_step(twin):.0f}")
            agree = int(np.sum(out.argmax(1) == reference.argmax(1)))
            ms = " / ".join(f"{t[0]:.2f}" for t in timings[label])
            per_second = " / ".join(f"{t[1]:.0f}" for t in timings[label])
            rows.append(f"| {label} | {agree}/96 | {logit_error(out, reference)} | {steps} | {ms} | {per_second} |")
            print(rows[-1], flush=True)
    saturate = "yes" if speed.int8_sums_saturate() else "no (VNNI)"
    table = "\n".join([
        "| file | top-1 = float, 96 crops | logit error mean / max | vs its twin, max output steps | "
        "batch 1 ms, 2 rounds | batch 32 images/s, 2 rounds |", "|---|---|---|---|---|---|", *rows])
    print(f"\nu8 x i8 sums saturate on this CPU: {saturate}. {harness.machine_note(system_malloc=True)}\n\n{table}")


if __name__ == "__main__":
    main()
