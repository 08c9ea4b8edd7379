"""QAT exports vs PTQ exports on onnxruntime and OpenVINO: speed and agreement.

The real TF-slim Small 224 1.0 weights (`../shared/fixtures`, as
`int8_agreement.py`), its quantization-aware twin calibrated on 64 crops
(`calibrate_ranges`, no training), exported as QDQ ONNX and as OpenVINO IR
from its own ranges, next to the post-training exports of the same float
model on the same 64 crops (`quantize_onnx`; NNCF for OpenVINO). Prints,
per export: batch-1 latency and batch-32 throughput (medians, exports
timed in turn, `--threads` threads), top-1 agreement with the float model
on 96 other crops, and for the QAT exports the difference from the twin's
own output in output steps (the logits' quantization step).

    python benchmarks/qat_export_speed.py [--threads 1] [--runs 30]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import keras
import numpy as np
from int8_agreement import MODEL, SIZE, crops  # beside this script

from mobilenetv3.export import compile_openvino, export_onnx, export_openvino, quantize_onnx, speed
from mobilenetv3.export.onnx_qat import fake_quant_grid
from mobilenetv3.export.runtimes import open_onnxruntime
from mobilenetv3.presets import loader
from mobilenetv3.quantization import calibrate_ranges, fake_quant_layers, quantize_aware
from mobilenetv3.weights import tflite


def _openvino(path: Path, threads: int):
    compiled = compile_openvino(path, config={"INFERENCE_NUM_THREADS": threads})
    return lambda images: compiled(images)[0]


def _exports(model, twin, folder: Path, calibration: np.ndarray, threads: int) -> dict:
    export_onnx(model, folder / "f.onnx", input_size=SIZE)
    quantize_onnx(folder / "f.onnx", folder / "ptq.onnx", calibration)
    export_onnx(twin, folder / "qat.onnx", input_size=SIZE)
    export_openvino(model, folder / "ptq.xml", precision="int8", calibration=calibration, input_size=SIZE)
    export_openvino(twin, folder / "qat.xml", input_size=SIZE)
    return {
        "onnxruntime PTQ (quantize_onnx)": open_onnxruntime(folder / "ptq.onnx", threads),
        "onnxruntime QAT twin (QDQ)": open_onnxruntime(folder / "qat.onnx", threads),
        "OpenVINO PTQ (NNCF)": _openvino(folder / "ptq.xml", threads),
        "OpenVINO QAT twin (QDQ -> FakeQuantize)": _openvino(folder / "qat.xml", threads),
    }


def _timings(predicts: dict, runs: int) -> dict:
    """Median batch-1 ms and batch-32 images/s of each, in turn (round robin, so load drifts hit all alike)."""
    rng = np.random.default_rng(0)
    one, many = (rng.uniform(0, 255, (n, SIZE, SIZE, 3)).astype(np.float32) for n in (1, 32))
    times: dict = {name: ([], []) for name in predicts}
    for predict in predicts.values():
        speed.timed(predict, one, 3)
        speed.timed(predict, many, 1)
    for _ in range(runs):
        for name, predict in predicts.items():
            times[name][0].extend(speed.timed(predict, one, 3))
    for _ in range(max(3, runs // 6)):
        for name, predict in predicts.items():
            times[name][1].extend(speed.timed(predict, many, 1))
    return {name: (statistics.median(a) * 1000, 32 / statistics.median(b)) for name, (a, b) in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    model = loader.build_model(tflite.read(str(MODEL)))
    calibration, evaluation = crops(64, seed=2), crops(96, seed=1)
    twin = quantize_aware(model)
    calibrate_ranges(twin, calibration)
    float_top1 = np.argmax(model.predict(evaluation, batch_size=16, verbose=0), axis=-1)
    twin_out = keras.ops.convert_to_numpy(twin.predict(evaluation, batch_size=16, verbose=0))
    step = fake_quant_grid(fake_quant_layers(twin)[-1])[0]
    with tempfile.TemporaryDirectory() as folder:
        predicts = _exports(model, twin, Path(folder), calibration, args.threads)
        timings = _timings(predicts, args.runs)
        print(f"{speed.machine_line()}; {args.threads} thread(s); twin top-1 = float: "
              f"{int(np.sum(np.argmax(twin_out, -1) == float_top1))}/96")
        print("| export | batch 1 ms | batch 32 img/s | top-1 = float (96 crops) | vs twin: max / mean steps, "
              "share differing |")
        print("|---|---|---|---|---|")
        for name, predict in predicts.items():
            out = np.concatenate([predict(evaluation[i:i + 16]) for i in range(0, 96, 16)])
            agree = int(np.sum(np.argmax(out, -1) == float_top1))
            steps = np.abs(out - twin_out) / step
            versus = (f"{steps.max():.0f} / {steps.mean():.2f}, {np.mean(steps > 0.01):.0%}" if "QAT" in name
                      else "")
            latency, throughput = timings[name]
            print(f"| {name} | {latency:.2f} | {throughput:.0f} | {agree}/96 | {versus} |")


if __name__ == "__main__":
    main()
