"""Accuracy on a labelled fine-tuning task: float vs post-training int8 vs
quantization-aware int8, for MobileNetV3-Small and -Large, per runtime.

The task is the demo's (`mobilenetv3 demo --offline`): six classes of the
package's generated shapes (`datasets.make_classification_folder`, 60
images per class, 64x64), a classifier fine-tuned from random weights with
the demo's recipe (`training.fine_tune`). Accuracy is measured on images
never trained on (the same renderer, another seed: 50 per class). Then:

- PTQ: the float classifier exported to int8 (LiteRT, onnxruntime,
  OpenVINO), calibrated on 64 training images;
- QAT: `training.qat.quantize_classifier` (what `mobilenetv3 train --qat`
  runs) on the same training folder with its labels (cross-entropy), and the
  twin exported to the same three runtimes (its own ranges, no calibration).

Writes `benchmarks/results/qat_finetune.md`.

    python benchmarks/qat_finetune.py [--archs small,large] [--qat-epochs 4] [--qat-crops 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import harness  # benchmarks/harness.py, beside this script
import numpy as np
from qat_agreement import _openvino

from mobilenetv3.datasets import DEFAULT_CLASSES, make_classification_folder, render_image
from mobilenetv3.export import export_onnx, export_openvino, export_tflite, quantize_onnx
from mobilenetv3.export.runtimes import open_litert, open_onnxruntime
from mobilenetv3.presets import loader
from mobilenetv3.training import fine_tune
from mobilenetv3.training.qat import quantize_classifier

SIZE = 64
PER_CLASS = 60
TEST_PER_CLASS = 50
PRESETS = {"small": "mobilenet_v3_small", "large": "mobilenet_v3_large"}


def test_set(class_names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Unseen images (renderer seed 1) and their class indices."""
    pictures = [np.asarray(render_image(name, i, SIZE, seed=1), "float32")
                for name in class_names for i in range(TEST_PER_CLASS)]
    return np.stack(pictures), np.repeat(np.arange(len(class_names)), TEST_PER_CLASS)


def accuracy(predict, images: np.ndarray, labels: np.ndarray) -> float:
    outputs = np.concatenate([np.asarray(predict(images[i:i + 1])).reshape(1, -1) for i in range(len(images))])
    return float(np.mean(outputs.argmax(1) == labels))


def runtimes(model, folder: Path, name: str, calibration: np.ndarray | None) -> dict:
    """`{runtime: predict}` of the model's int8 exports: post-training
    (calibrated on `calibration`) for a float model, as trained for a twin."""
    onnx = folder / f"{name}.onnx"
    if calibration is None:
        export_onnx(model, onnx, input_size=SIZE)
        export_tflite(model, folder / f"{name}.tflite")
        export_openvino(model, folder / f"{name}.xml", input_size=SIZE)
    else:
        export_onnx(model, folder / f"{name}_float.onnx", input_size=SIZE)
        quantize_onnx(folder / f"{name}_float.onnx", onnx, calibration)
        export_tflite(model, folder / f"{name}.tflite", input_size=SIZE, int8=True, calibration=calibration)
        export_openvino(model, folder / f"{name}.xml", precision="int8", calibration=calibration, input_size=SIZE)
    return {"LiteRT": open_litert(folder / f"{name}.tflite", 1), "onnxruntime": open_onnxruntime(onnx, 1),
            "OpenVINO": _openvino(folder / f"{name}.xml")}


def training_images(data: Path, count: int) -> np.ndarray:
    from PIL import Image

    files = sorted(data.rglob("*.png"))[:: max(1, len(list(data.rglob("*.png"))) // count)][:count]
    return np.stack([np.asarray(Image.open(f).convert("RGB").resize((SIZE, SIZE)), "float32") for f in files])


def measure(arch: str, data: Path, folder: Path, args: argparse.Namespace) -> list[str]:
    start = time.perf_counter()
    result = fine_tune(data, PRESETS[arch], image_size=(SIZE, SIZE), batch_size=16, head_epochs=1,
                       fine_tune_epochs=8, unfreeze_blocks="all", train_batchnorm=True,
                       fine_tune_learning_rate=2e-3, augment=True, out=folder / f"{arch}_float", verbose=2)
    float_minutes = (time.perf_counter() - start) / 60
    model = loader.load_model(folder / f"{arch}_float")
    images, labels = test_set(list(result.class_names))
    float_accuracy = accuracy(lambda x: model(x, training=False), images, labels)
    start = time.perf_counter()
    qat = quantize_classifier(folder / f"{arch}_float", data, epochs=args.qat_epochs, crops_per_image=args.qat_crops,
                              learning_rate=args.qat_learning_rate, distill=False, verbose=2)
    qat_minutes = (time.perf_counter() - start) / 60
    twin_accuracy = accuracy(lambda x: qat.model(x, training=False), images, labels)
    ptq = runtimes(model, folder, f"{arch}_ptq", training_images(data, 64))
    trained = runtimes(qat.model, folder, f"{arch}_qat", None)
    rows = [f"| {arch} | Keras | {float_accuracy:.1%} | - | {twin_accuracy:.1%} (simulation) |"]
    for runtime in ptq:
        rows.append(f"| {arch} | {runtime} | - | {accuracy(ptq[runtime], images, labels):.1%} | "
                    f"{accuracy(trained[runtime], images, labels):.1%} |")
        print(rows[-1], flush=True)
    rows.append(f"| {arch} | (training minutes) | {float_minutes:.1f} | - | {qat_minutes:.1f} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", default="small,large")
    parser.add_argument("--qat-epochs", type=int, default=4)
    parser.add_argument("--qat-crops", type=int, default=2, help="random crops of each training image per epoch")
    parser.add_argument("--qat-learning-rate", type=float, default=1e-4)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        data = make_classification_folder(folder / "shapes", per_class=PER_CLASS, size=SIZE)
        for arch in args.archs.split(","):
            rows += measure(arch, data, folder, args)
    chance = 1 / len(DEFAULT_CLASSES)
    note = (f"Test: {TEST_PER_CLASS * len(DEFAULT_CLASSES)} unseen images, chance {chance:.0%}. QAT: "
            f"{args.qat_epochs} epochs of {args.qat_crops} random crops per image, Adam {args.qat_learning_rate:g} "
            f"with cosine decay, labels. {harness.machine_note(system_malloc=True)}")
    description = __doc__.split("\n\nWrites")[0].split("\n\n", 1)[1]
    table = "\n".join(["| model | runtime | float | PTQ int8 | QAT int8 |", "|---|---|---|---|---|", *rows])
    text = (f"# Fine-tuning task: float vs PTQ vs QAT accuracy\n\n{description}\n\n"
            f"{note}\n\n{table}\n")
    out = Path(__file__).parent / "results" / "qat_finetune.md"
    out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
