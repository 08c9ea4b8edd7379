"""Same-process A/B: onnxruntime fp32 vs int8 (QDQ), hard-sigmoid as a float island or as QLinearAdd.

MobileNetV3-Large classifier, random weights with trained-looking BatchNorm
statistics, 224x224, intra-op threads 2; images/s at batch 1 and 32,
interleaved rounds (medians), and top-1 / logit agreement of each int8
variant with fp32 on random images. (A third variant, hard-swish as a
256-entry uint8 table, `Gather(table, Cast(x, int32))`, ran at 0.4x of
the float-island int8: onnxruntime's Cast and Gather are slow; dropped.)

    python benchmarks/ort_int8_ab.py [--model large] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import keras
import numpy as np

import mobilenetv3
from mobilenetv3.export import export_onnx, quantize_onnx


def _trained_looking(model: keras.Model, seed: int = 0) -> keras.Model:
    rng = np.random.default_rng(seed)
    for layer in model._flatten_layers():
        if isinstance(layer, keras.layers.BatchNormalization):
            shape = layer.moving_mean.shape
            layer.gamma.assign(rng.uniform(0.5, 1.5, shape))
            layer.beta.assign(rng.normal(0, 0.2, shape))
            layer.moving_mean.assign(rng.normal(0, 0.2, shape))
            layer.moving_variance.assign(rng.uniform(0.5, 1.5, shape))
    return model


def session(path: Path, threads: int = 2):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    run = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"]).run
    return lambda images: run(None, {"images": images})[0]


def _time(predict, images: np.ndarray, runs: int) -> float:
    start = time.perf_counter()
    for _ in range(runs):
        predict(images)
    return (time.perf_counter() - start) / runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="large", choices=["small", "large"])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    backbone = (mobilenetv3.MobileNetV3LargeBackbone if args.model == "large" else mobilenetv3.MobileNetV3SmallBackbone)
    model = _trained_looking(mobilenetv3.MobileNetV3ImageClassifier(backbone(include_rescaling=True), 1000))
    rng = np.random.default_rng(0)
    calibration = rng.uniform(0, 255, (32, 224, 224, 3)).astype("float32")
    images = rng.uniform(0, 255, (32, 3, 224, 224)).astype("float32")
    with tempfile.TemporaryDirectory() as folder:
        files = Path(folder)
        export_onnx(model, files / "f.onnx", channels_first=True, input_size=224)
        quantize_onnx(files / "f.onnx", files / "q.onnx", calibration, channels_first=True, hard_sigmoid_add=False)
        quantize_onnx(files / "f.onnx", files / "a.onnx", calibration, channels_first=True)
        paths = {"fp32": "f.onnx", "int8 HardSigmoid islands": "q.onnx", "int8 hard-sigmoid as QLinearAdd": "a.onnx"}
        predict = {k: session(files / v) for k, v in paths.items()}
    reference = predict["fp32"](images)
    for name, fn in predict.items():
        out = fn(images)
        error = np.abs(out - reference) / reference.std()
        agree = np.mean(out.argmax(1) == reference.argmax(1))
        print(f"{name}: top-1 = fp32 {agree:.2f}, logit error mean {error.mean():.3f} max {error.max():.2f}")
    for batch, runs in ((1, 20), (32, 2)):
        times = {k: [] for k in predict}
        for _ in range(args.rounds):
            for name, fn in predict.items():
                fn(images[:batch])
                times[name].append(_time(fn, images[:batch], runs))
        speeds = {k: batch / statistics.median(v) for k, v in times.items()}
        print(f"batch {batch}: " + ", ".join(f"{k} {v:.0f} img/s ({v / speeds['fp32']:.2f}x)" for k, v in speeds.items()))
    print(f"load average: {os.getloadavg()}")


if __name__ == "__main__":
    main()
