"""ExecuTorch fp32 and int8 vs Keras float on the real TF-slim Small weights.

The ExecuTorch rows of `int8_agreement.py`'s table, with its images, crops
and measures (`crops`, `logit_error`, Google's uint8 model as the second
reference): the classifier built from the official TF-slim release is
exported with `export_executorch` (fp32, then int8 through ExecuTorch's
XNNPACK quantizer calibrated on other crops) and run by ExecuTorch's
runtime. Runs on the PyTorch backend (the export needs it; run from
`benchmarks/`). Prints and writes `benchmarks/results/executorch_int8.md`.

    KERAS_BACKEND=torch python benchmarks/executorch_int8.py [--samples 96] [--calibration 64]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import harness  # benchmarks/harness.py, beside this script
import keras
import numpy as np
from int8_agreement import FIXTURES, MODEL, SIZE, _official_top1, crops, logit_error, median_time

from mobilenetv3.export.executorch_export import delegates, export_executorch, open_executorch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=96)
    parser.add_argument("--calibration", type=int, default=64)
    args = parser.parse_args()
    if keras.config.backend() != "torch":
        raise SystemExit("run with KERAS_BACKEND=torch (the ExecuTorch export traces Keras on PyTorch)")

    from mobilenetv3.export import load_images
    from mobilenetv3.presets import loader
    from mobilenetv3.weights import tflite

    model = loader.build_model(tflite.read(str(MODEL)))
    whole = load_images(FIXTURES / "images", (SIZE, SIZE))
    evaluation, calibration = crops(args.samples, seed=1), crops(args.calibration, seed=2)
    sets = {"whole": whole, "crops": evaluation}
    logits = {k: model.predict(v, batch_size=16, verbose=0) for k, v in sets.items()}
    reference = {k: np.argmax(v, axis=-1) for k, v in logits.items()}
    official = {k: _official_top1(v) for k, v in sets.items()}

    def agreement(top1: dict) -> str:
        return " | ".join(f"{int(np.sum(top1[k] == truth[k]))}/{len(truth[k])}"
                          for truth in (reference, official) for k in sets)

    rows, notes = [], []
    with tempfile.TemporaryDirectory() as folder:
        files = {"fp32": Path(folder) / "f.pte", "int8": Path(folder) / "q.pte"}
        for precision, path in files.items():
            start = time.perf_counter()
            export_executorch(model, path, input_size=SIZE, int8=precision == "int8",
                              calibration=calibration if precision == "int8" else None)
            notes.append(f"{precision}: export {time.perf_counter() - start:.0f} s, "
                         f"{path.stat().st_size / 1e6:.2f} MB, delegates {delegates(path)}")
        runs = {precision: open_executorch(path) for precision, path in files.items()}
        outputs = {p: {k: run(v) for k, v in sets.items()} for p, run in runs.items()}
        speed = {p: 1 / median_time(run, evaluation[:1], 30) for p, run in runs.items()}
    fp32_diff = max(float(np.abs(outputs["fp32"][k] - logits[k]).max()) for k in sets)
    notes.append(f"fp32 vs Keras: max abs logit difference {fp32_diff:.2e} "
                 f"(logits up to {max(float(np.abs(v).max()) for v in logits.values()):.1f})")
    labels = {"fp32": "ExecuTorch fp32 (XNNPACK)", "int8": "ExecuTorch int8 (XNNPACKQuantizer, pt2e, per-channel)"}
    for precision in ("fp32", "int8"):
        top1 = {k: np.argmax(v, axis=-1) for k, v in outputs[precision].items()}
        rows.append(f"| {labels[precision]} | {agreement(top1)} "
                    f"| {logit_error(outputs[precision]['crops'], logits['crops'])} "
                    f"| {speed['fp32']:.0f} / {speed['int8']:.0f} ({speed['int8'] / speed['fp32']:.2f}x) |")
    table = "\n".join([
        f"TF-slim MobileNetV3-Small 1.0 (real weights) exported to ExecuTorch (XNNPACK) and run by ExecuTorch's "
        f"runtime; the images, crops ({args.samples}; int8 calibrated on {args.calibration} other crops) and "
        f"measures of `int8_agreement.py` (logit error in units of the float logits' standard deviation, "
        f"{np.std(logits['crops']):.2f}). Speed: batch-1 images/s, fp32 / int8, "
        f"{'; '.join(notes)}. {harness.machine_note()}",
        "",
        "| model | top-1 = float, whole images | top-1 = float, crops | top-1 = Google's uint8, whole images "
        "| top-1 = Google's uint8, crops | logit error vs float, mean / max | batch 1 img/s fp32 / int8 |",
        "|---|---|---|---|---|---|---|",
        *rows,
    ])
    print(table)
    out = Path(__file__).resolve().parent / "results"
    out.mkdir(exist_ok=True)
    (out / "executorch_int8.md").write_text(table + "\n")


if __name__ == "__main__":
    main()
