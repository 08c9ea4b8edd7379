"""int8 after quantization-aware training vs after post-training
quantization, on the real TF-slim Small weights, per runtime.

The float classifier is the official TF-slim MobileNetV3-Small
(`../shared/fixtures`, as `int8_agreement.py`). Its twin is trained by
`mobilenetv3.training.qat.quantize_classifier` (what `mobilenetv3 train
--qat` runs): distillation from the float model on random crops of 17
photos that are not the evaluated ones (the ones bundled with
scikit-image and scikit-learn, copied into a folder, as a user's folder of
unlabelled images). Then, for onnxruntime, LiteRT and OpenVINO, the PTQ
export of the float model (calibrated on 64 crops of the evaluated photos,
as `int8_agreement.py`) and the QAT export of the twin (its own ranges, no
calibration) run the 96 evaluation crops of `int8_agreement.py`: top-1
agreement with the float model, logit error against it (in float-logit
standard deviations), the QAT file's distance from the twin in output
quantization steps, and speed at batch 1 and 32 (medians, one thread,
exports timed in turn). Writes `benchmarks/results/qat.md`.

    python benchmarks/qat_agreement.py [--epochs 8] [--learning-rate 5e-5] [--crops 32] [--runs 100]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import harness  # benchmarks/harness.py, beside this script
import keras
import numpy as np
from int8_agreement import MODEL, SIZE, crops, logit_error, median_time

from mobilenetv3.export import compile_openvino, export_onnx, export_openvino, export_tflite, quantize_onnx
from mobilenetv3.export.runtimes import open_litert, open_onnxruntime
from mobilenetv3.presets import loader
from mobilenetv3.quantization import calibrate_ranges, fake_quant_layers, quantization_grid, quantize_aware
from mobilenetv3.training.qat import quantize_classifier
from mobilenetv3.weights import tflite

# Photos bundled with scikit-image (`skimage/data`) and scikit-learn: none is an evaluated image.
SKIMAGE_PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "hubble_deep_field.jpg", "ihc.png",
                  "motorcycle_left.png", "motorcycle_right.png", "retina.jpg", "rocket.jpg", "brick.png",
                  "grass.png", "gravel.png", "camera.png", "color.png", "logo.png")
SKLEARN_PHOTOS = ("china.jpg", "flower.jpg")


def photo_folder(folder: Path) -> Path:
    """The 17 training photos, copied into `folder`."""
    import skimage
    import sklearn

    folder.mkdir(parents=True, exist_ok=True)
    sources = [Path(skimage.__file__).parent / "data" / name for name in SKIMAGE_PHOTOS]
    sources += [Path(sklearn.__file__).parent / "datasets" / "images" / name for name in SKLEARN_PHOTOS]
    for source in sources:
        shutil.copy(source, folder / source.name)
    return folder


def _openvino(path: Path):
    compiled = compile_openvino(path, config={"INFERENCE_NUM_THREADS": 1})
    return lambda images: compiled(images)[0]


def _sessions(model, twin, folder: Path, calibration: np.ndarray) -> dict:
    """`{runtime: {"PTQ": predict, "QAT": predict}}`, one thread each."""
    export_onnx(model, folder / "f.onnx", input_size=SIZE)
    quantize_onnx(folder / "f.onnx", folder / "ptq.onnx", calibration)
    export_onnx(twin, folder / "qat.onnx", input_size=SIZE)
    export_tflite(model, folder / "ptq.tflite", input_size=SIZE, int8=True, calibration=calibration)
    export_tflite(twin, folder / "qat.tflite")
    export_openvino(model, folder / "ptq.xml", precision="int8", calibration=calibration, input_size=SIZE)
    export_openvino(twin, folder / "qat.xml", input_size=SIZE)
    return {
        "onnxruntime": {"PTQ": open_onnxruntime(folder / "ptq.onnx", 1), "QAT": open_onnxruntime(folder / "qat.onnx", 1)},
        "LiteRT": {"PTQ": open_litert(folder / "ptq.tflite", 1), "QAT": open_litert(folder / "qat.tflite", 1)},
        "OpenVINO": {"PTQ": _openvino(folder / "ptq.xml"), "QAT": _openvino(folder / "qat.xml")},
    }


def _outputs(predict, images: np.ndarray) -> np.ndarray:
    return np.concatenate([np.asarray(predict(images[i:i + 1])).reshape(1, -1) for i in range(len(images))])


def _median_ms(predict, images: np.ndarray, runs: int) -> float:
    return 1000 * median_time(predict, images, runs)


def _output_step(twin) -> float:
    output = fake_quant_layers(twin)[-1]
    scale, _, _ = quantization_grid(float(keras.ops.convert_to_numpy(output.range_min)),
                                    float(keras.ops.convert_to_numpy(output.range_max)))
    return float(keras.ops.convert_to_numpy(scale))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument("--crops", type=int, default=32, help="random crops of each training photo per epoch")
    parser.add_argument("--runs", type=int, default=100, help="timed batch-1 calls per file")
    args = parser.parse_args()

    model = loader.build_model(tflite.read(str(MODEL)))
    evaluation, calibration = crops(96, seed=1), crops(64, seed=2)
    reference = model.predict(evaluation, batch_size=16, verbose=0)
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        photos = photo_folder(folder / "photos")
        start = time.perf_counter()
        result = quantize_classifier(model, photos, epochs=args.epochs, learning_rate=args.learning_rate,
                                     crops_per_image=args.crops, validation_split=0, verbose=2)
        training_minutes = (time.perf_counter() - start) / 60
        twin = result.model
        calibrated = quantize_aware(model)
        calibrate_ranges(calibrated, calibration)
        simulated = {"twin, calibrated only (simulates PTQ)": calibrated.predict(evaluation, batch_size=16, verbose=0),
                     "twin after QAT (Keras simulation)": twin.predict(evaluation, batch_size=16, verbose=0)}
        step = _output_step(twin)
        rows = [f"| Keras {name} | - | {int(np.sum(out.argmax(1) == reference.argmax(1)))}/96 | "
                f"{logit_error(out, reference)} | - | - | - |" for name, out in simulated.items()]
        twin_out = simulated["twin after QAT (Keras simulation)"]
        for runtime, pair in _sessions(model, twin, folder, calibration).items():
            for kind, predict in pair.items():
                out = _outputs(predict, evaluation)
                agree = int(np.sum(out.argmax(1) == reference.argmax(1)))
                steps = np.abs(out - twin_out) / step
                versus_twin = f"{steps.mean():.2f} / {steps.max():.0f}" if kind == "QAT" else "-"
                ms = _median_ms(predict, evaluation[:1], args.runs)
                per_second = 32_000 / _median_ms(predict, evaluation[:32], max(5, args.runs // 10))
                rows.append(f"| {runtime} | {kind} | {agree}/96 | {logit_error(out, reference)} | {versus_twin} | "
                            f"{ms:.2f} | {per_second:.0f} |")
                print(rows[-1], flush=True)
    note = (f"QAT: {args.epochs} epochs of {args.crops} crops of 17 photos, Adam {args.learning_rate:g} with cosine "
            f"decay, distillation ({training_minutes:.1f} min on this machine); final training loss "
            f"{result.history['loss'][-1]:.4f}. {harness.machine_note(system_malloc=True)}")
    table = "\n".join([
        "| runtime | int8 by | top-1 = float, 96 crops | logit error vs float, mean / max | "
        "vs the twin, output steps mean / max | batch 1 ms, 1 thread | batch 32 images/s, 1 thread |",
        "|---|---|---|---|---|---|---|", *rows])
    text = f"# int8 after QAT vs after PTQ (TF-slim MobileNetV3-Small)\n\n{__doc__.split(chr(10) * 2)[1]}\n\n{note}\n\n{table}\n"
    out = Path(__file__).parent / "results" / "qat.md"
    out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
