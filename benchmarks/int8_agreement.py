"""int8 vs float: top-1 agreement and speed, on the real TF-slim Small weights.

Builds the classifier from the official TF-slim MobileNetV3-Small release
(`../shared/fixtures/tflite/v3-small_224_1.0_uint8.tflite`, read by
`mobilenetv3.weights.tflite`), exports it to ONNX and TFLite in float32 and
int8, and compares top-1 classes on crops/flips of the four real images in
`../shared/fixtures/images` (calibration uses a different set of crops of
the same photos: the fixtures hold only four images), next to Google's own
quantization-aware-trained uint8 release of the same weights. Also OpenVINO bf16 and int8 (NNCF),
and the post-training-quantization refinements (bias correction, channel
alignment, outlier layers kept float) with their logit error against float.
Prints and writes `benchmarks/results/int8.md`.

    python benchmarks/int8_agreement.py [--samples 96] [--runtimes onnxruntime,litert,openvino]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import harness  # benchmarks/harness.py, beside this script
import keras
import numpy as np
from PIL import Image

from mobilenetv3.export import export_onnx, export_tflite, quantize_onnx, speed
from mobilenetv3.training.qat import random_crop

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"
MODEL = FIXTURES / "tflite" / "v3-small_224_1.0_uint8.tflite"
SIZE = 224


def crops(count: int, seed: int) -> np.ndarray:
    """`count` random crops (30-100% of the side) and flips of the fixture images, 224x224
    (`mobilenetv3.training.qat.random_crop`, the crops QAT trains on)."""
    rng = np.random.default_rng(seed)
    photos = [Image.open(p).convert("RGB") for p in sorted((FIXTURES / "images").glob("*.bmp"))]
    return np.stack([random_crop(photos[index % len(photos)], SIZE, rng) for index in range(count)])


def median_time(predict, images: np.ndarray, runs: int) -> float:
    predict(images)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        predict(images)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _logits(predict, images: np.ndarray, layout: str) -> np.ndarray:
    """Outputs one image at a time (the int8 models are calibrated per image)."""
    batch = images.transpose(0, 3, 1, 2) if layout == "nchw" else images
    return np.concatenate([np.asarray(predict(batch[i : i + 1])).reshape(1, -1) for i in range(len(batch))])


def _speeds(predict, images: np.ndarray, layout: str) -> tuple[float, float]:
    batch = images.transpose(0, 3, 1, 2) if layout == "nchw" else images
    return 1 / median_time(predict, batch[:1], 30), 32 / median_time(predict, batch[:32], 5)


def logit_error(logits: np.ndarray, reference: np.ndarray) -> str:
    """Mean and max absolute logit difference, in units of the float logits' standard deviation."""
    scale = float(np.std(reference))
    error = np.abs(logits - reference) / scale
    return f"{error.mean():.3f} / {error.max():.2f}"


def _official_top1(images: np.ndarray) -> np.ndarray:
    """Top-1 of Google's own quantization-aware-trained uint8 model, run by LiteRT."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(MODEL), num_threads=harness._threads())
    interpreter.allocate_tensors()
    entry, exit_ = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    top1 = []
    for image in images:
        interpreter.set_tensor(entry["index"], np.clip(np.round(image), 0, 255).astype(np.uint8)[None])
        interpreter.invoke()
        top1.append(int(np.argmax(interpreter.get_tensor(exit_["index"])[0])))
    return np.array(top1)


def _first_last(names_and_types: list[tuple[str, str]], first: str, last: tuple[str, ...]) -> list[str]:
    """The names of the first `first` op and the last op of a type in `last` (the usual outlier layers)."""
    head = next(name for name, kind in names_and_types if kind == first)
    tail = next(name for name, kind in reversed(names_and_types) if kind in last)
    return [head, tail]


def _onnx_outliers(path: Path) -> list[str]:
    import onnx

    return _first_last([(n.name, n.op_type) for n in onnx.load(str(path)).graph.node], "Conv", ("Gemm", "Conv"))


def _openvino_outliers(path: Path) -> list[str]:
    import openvino as ov

    ops = ov.Core().read_model(str(path)).get_ordered_ops()
    return _first_last([(op.get_friendly_name(), op.get_type_name()) for op in ops], "Convolution",
                       ("MatMul", "Convolution"))


def _openvino(path: Path):
    from mobilenetv3.export import compile_openvino

    compiled = compile_openvino(path, config={"INFERENCE_NUM_THREADS": harness._threads()})
    return lambda images: compiled(images)[0]


def _onnx_variants(model, files: Path, calibration: np.ndarray) -> list[tuple]:
    export_onnx(model, files / "f.onnx", channels_first=True, input_size=SIZE)
    quantize_onnx(files / "f.onnx", files / "q.onnx", calibration, channels_first=True)
    quantize_onnx(files / "f.onnx", files / "qs.onnx", calibration, channels_first=True, hard_sigmoid_add=False)
    quantize_onnx(files / "f.onnx", files / "qo.onnx", calibration, channels_first=True,
                  keep_float=tuple(_onnx_outliers(files / "f.onnx")))
    return [
        ("onnxruntime int8 (QDQ, per-channel weights, hard-sigmoid as QLinearAdd: the default)",
         speed.open_onnxruntime, "nchw", "f.onnx", "q.onnx"),
        ("onnxruntime int8, hard-sigmoid a float island (before)", speed.open_onnxruntime, "nchw", "f.onnx",
         "qs.onnx"),
        ("onnxruntime int8, first conv and classifier float", speed.open_onnxruntime, "nchw", "f.onnx", "qo.onnx"),
    ]


def _tflite_variants(model, files: Path, calibration: np.ndarray) -> list[tuple]:
    export_tflite(model, files / "f.tflite", input_size=SIZE)
    export_tflite(model, files / "q.tflite", input_size=SIZE, int8=True, calibration=calibration)
    export_tflite(model, files / "qi.tflite", input_size=SIZE, int8=True, calibration=calibration, float_ops=())
    return [
        ("LiteRT int8 (hard-swish float, the default)", speed.open_litert, "nhwc", "f.tflite", "q.tflite"),
        ("LiteRT int8 full-integer", speed.open_litert, "nhwc", "f.tflite", "qi.tflite"),
    ]


def _openvino_variants(model, files: Path, calibration: np.ndarray) -> list[tuple]:
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters

    from mobilenetv3.export import export_openvino

    export_openvino(model, files / "f.xml", input_size=SIZE)
    export_openvino(model, files / "b.xml", precision="bf16", input_size=SIZE)
    outliers = nncf.IgnoredScope(names=_openvino_outliers(files / "f.xml"))
    int8 = {  # file: (label, nncf.quantize options)
        "q.xml": ("OpenVINO int8 (NNCF defaults: min/max, fast bias correction)", {}),
        "qn.xml": ("OpenVINO int8, no bias correction",
                   {"advanced_parameters": AdvancedQuantizationParameters(disable_bias_correction=True)}),
        "qb.xml": ("OpenVINO int8, full bias correction", {"fast_bias_correction": False}),
        "qo.xml": ("OpenVINO int8, first conv and classifier float", {"ignored_scope": outliers}),
        "qh.xml": ("OpenVINO int8, hard-swish float", {"ignored_scope": nncf.IgnoredScope(types=["HSwish"])}),
    }
    rows = [("OpenVINO bf16 (fp32 weights, bf16 inference)", _openvino, "nhwc", "f.xml", "b.xml")]
    for file, (label, options) in int8.items():
        export_openvino(model, files / file, precision="int8", calibration=calibration, input_size=SIZE,
                        nncf_options=options)
        rows.append((label, _openvino, "nhwc", "f.xml", file))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=96)
    parser.add_argument("--calibration", type=int, default=64)
    parser.add_argument("--runtimes", default="onnxruntime,litert,openvino",
                        help="comma-separated subset of onnxruntime, litert, openvino")
    args = parser.parse_args()

    from mobilenetv3.export import load_images
    from mobilenetv3.presets import loader
    from mobilenetv3.weights import tflite

    model = loader.build_model(tflite.read(str(MODEL)))
    whole = load_images(FIXTURES / "images", (SIZE, SIZE))
    evaluation, calibration = crops(args.samples, seed=1), crops(args.calibration, seed=2)
    sets = {"whole": whole, "crops": evaluation}
    logits = {k: model.predict(v, batch_size=16, verbose=0) for k, v in sets.items()}
    reference = {k: np.argmax(v, axis=-1) for k, v in logits.items()}
    probabilities = np.sort(np.asarray(keras.ops.softmax(logits["crops"])), axis=-1)
    ambiguous = np.mean(probabilities[:, -1] - probabilities[:, -2] < 0.1)

    official = {k: _official_top1(v) for k, v in sets.items()}

    def agreement(top1: dict) -> str:
        return " | ".join(f"{int(np.sum(top1[k] == truth[k]))}/{len(truth[k])}"
                          for truth in (reference, official) for k in sets)

    float_keras = "Keras float model (the reference)"
    rows = [f"| {float_keras} | {agreement(reference)} | 0 / 0 | - | - |",
            f"| TF-slim's own uint8 model (quantization-aware training), LiteRT | {agreement(official)} | - | - | - |"]
    builders = {"onnxruntime": _onnx_variants, "litert": _tflite_variants, "openvino": _openvino_variants}
    with tempfile.TemporaryDirectory() as folder:
        files = Path(folder)
        for runtime in args.runtimes.split(","):
            for label, open_model, layout, float_file, int8_file in builders[runtime](model, files, calibration):
                float_fn, int8_fn = open_model(files / float_file), open_model(files / int8_file)
                int8_logits = {k: _logits(int8_fn, v, layout) for k, v in sets.items()}
                int8_top1 = {k: np.argmax(v, axis=-1) for k, v in int8_logits.items()}
                float_speed, int8_speed = _speeds(float_fn, evaluation, layout), _speeds(int8_fn, evaluation, layout)
                rows.append(
                    f"| {label} | {agreement(int8_top1)} | {logit_error(int8_logits['crops'], logits['crops'])} "
                    f"| {float_speed[0]:.0f} / {int8_speed[0]:.0f} ({int8_speed[0] / float_speed[0]:.2f}x) "
                    f"| {float_speed[1]:.0f} / {int8_speed[1]:.0f} ({int8_speed[1] / float_speed[1]:.2f}x) |"
                )
                print(rows[-1], flush=True)
    table = "\n".join(
        [
            f"TF-slim MobileNetV3-Small 1.0 (real weights). Top-1 agreement with the float Keras model on the "
            f"4 fixture images (whole, resized) and on {args.samples} random crops/flips of them (30-100% of the "
            f"side: many are ambiguous, {ambiguous:.0%} have a top-1/top-2 probability margin under 0.1); int8 calibrated "
            f"on {args.calibration} other crops. Logit error: mean / max absolute difference from the float "
            f"logits on the crops, in units of the float logits' standard deviation ({np.std(logits['crops']):.2f}). "
            f"Speed in images/s, float / quantized on the same runtime (OpenVINO: fp32 / bf16 or int8). "
            f"Not measured: NNCF's cross-layer-equalization step (`disable_channel_alignment=False`) "
            f"crashes in nncf 3.4 (KeyError in ChannelAlignment's `astype(np.float32)`). "
            f"{harness.machine_note()}",
            "",
            "| model | top-1 = float, whole images | top-1 = float, crops "
            "| top-1 = Google's uint8, whole images | top-1 = Google's uint8, crops "
            "| logit error vs float, mean / max | batch 1 img/s float / int8 | batch 32 img/s float / int8 |",
            "|---|---|---|---|---|---|---|---|",
            *rows,
        ]
    )
    print(table)
    out = Path(__file__).resolve().parent / "results"
    out.mkdir(exist_ok=True)
    (out / "int8.md").write_text(table + "\n")


if __name__ == "__main__":
    main()
