"""Inference benchmark: mobilenetv3 (Keras backends and exports) vs peers.

The peer-comparison harness of a source checkout (not installed with the
package): `python benchmarks/benchmark.py` is its command line. The installed
`mobilenetv3 benchmark --preset ...` times a user's own model on the local
runtimes instead (`mobilenetv3.export.speed`, which this harness shares its
runtime sessions and timing loop with).

Every case runs in its own Python subprocess, so each gets a clean memory
baseline, its own `KERAS_BACKEND`, and cannot disturb the others. Exports
(ONNX, LiteRT, fp32 and int8) are written once by a TensorFlow-backend
subprocess before the runtime cases load them. Per case and model: build
time (construct the model or runtime session), batch-1 latency (median of
repeated single-image calls after warm-up), batch-32 throughput (median of
repeated batch calls; Python's garbage collector paused while timing, as
`timeit` does) and peak RSS growth over the process's RSS before the build.

Example:

```python
import harness  # from benchmarks/, or with that folder on sys.path
rows = harness.run_benchmark(models=["small"], cases=["mobilenetv3-onnxruntime"], quick=True)
print(harness.markdown_table(rows))
```
"""

from __future__ import annotations

import dataclasses
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mobilenetv3.core.utils import import_optional
from mobilenetv3.core.validation import check_positive_int
from mobilenetv3.export import speed

# The workers run this file by path, so it is found from any working folder.
HARNESS = Path(__file__).resolve()

IMAGE_SIZE = 224
CLASSIFIER_MODELS = ("small", "large")
# The SSDLite group: Large SSDLite (91 classes) against torchvision's
# ssdlite320_mobilenet_v3_large at 320x320, batch 1 and batch 8.
DETECTOR = "detector"
DETECTOR_SIZE, DETECTOR_BATCH = 320, 8
# The training group: one SGD step (forward, sparse cross-entropy, backward,
# update) of MobileNetV3-Small at 224x224, batch 32, 1000 classes.
TRAIN = "train"
TRAIN_FAMILY, TRAIN_BATCH = "small", 32
MODELS = (*CLASSIFIER_MODELS, DETECTOR, TRAIN)
BASELINE = "keras.applications-tensorflow"
DETECTOR_BASELINE = "ssdlite-torchvision-eager-raw"
RESULT_MARK = "BENCHMARK_RESULT "
# glibc's malloc hands every large freed buffer back to the OS and page-faults it in again on the next
# call; PyTorch's eager CPU rows then vary 2x between processes at batch 32 (Small, ours: 381-729 img/s,
# measured). Every worker keeps freed memory instead (glibc's documented tunables), the no-install
# equivalent of the caching allocators (jemalloc, tcmalloc) PyTorch's and Intel's CPU tuning guides
# recommend. Same setting for every row; `system_malloc=True` (`--system-malloc`) leaves glibc's defaults.
ALLOCATOR_ENV = {"MALLOC_MMAP_THRESHOLD_": "2000000000", "MALLOC_TRIM_THRESHOLD_": "4000000000"}
# Exported files the runtime cases load: kind -> (export format, int8).
EXPORT_KINDS = {"onnx": ("onnx", False), "onnx_int8": ("onnx", True), "tflite": ("tflite", False),
                "tflite_int8": ("tflite", True), "openvino": ("openvino", False), "openvino_int8": ("openvino", True)}
# The calibration images of the int8 exports, saved for the peers' int8 cases.
CALIBRATION_FILE = "calibration.npy"
# The detector's exports: kind -> (export format, end-to-end with NMS).
DETECTOR_EXPORT_KINDS = {"detector_onnx": ("onnx", False), "detector_onnx_e2e": ("onnx", True),
                         "detector_tflite": ("tflite", False), "detector_openvino": ("openvino", False)}


@dataclasses.dataclass(frozen=True)
class Settings:
    """How long to measure: warm-up calls, then timed repetitions."""

    warmup: int = 3
    batch1_runs: int = 30
    batch32_runs: int = 5
    big_batch: int = 32
    detector_batch: int = DETECTOR_BATCH
    train_batch: int = TRAIN_BATCH
    train_steps: int = 10

    @classmethod
    def quick(cls) -> Settings:
        return cls(warmup=1, batch1_runs=3, batch32_runs=1, big_batch=4, detector_batch=2, train_batch=4,
                   train_steps=2)


@dataclasses.dataclass(frozen=True)
class Case:
    """One benchmarked implementation: a name, the function that builds
    `predict(images)` (from the model name and the exports folder), the
    backend it needs, its image layout, the `EXPORT_KINDS` file it loads
    (built with `export_path`), an untimed preparation step and the models
    it applies to (the classifiers, or the detector group)."""

    name: str
    builder: Callable[[str, Path], Callable]
    backend: str = "tensorflow"
    layout: str = "nhwc"
    export: str | None = None
    prepare: Callable[[str, Path], None] | None = None
    models: tuple[str, ...] = CLASSIFIER_MODELS




# -- builders: each returns predict(images) for float32 images in its layout --------

def _threads() -> int:
    return os.cpu_count() or 1


def _mobilenetv3_classifier(model: str) -> Any:
    import mobilenetv3

    return mobilenetv3.MobileNetV3ImageClassifier.from_preset(
        f"mobilenet_v3_{model}", num_classes=1000, input_shape=(IMAGE_SIZE, IMAGE_SIZE, 3), include_rescaling=True
    )


def _keras_mobilenetv3(model: str, exports: Path) -> Callable:
    return _mobilenetv3_classifier(model).predict_on_batch


def _keras_mobilenetv3_folded(model: str, exports: Path) -> Callable:
    import mobilenetv3

    return mobilenetv3.fold_batch_norm(_mobilenetv3_classifier(model)).predict_on_batch


def _keras_applications(model: str, exports: Path) -> Callable:
    import keras

    build = keras.applications.MobileNetV3Small if model == "small" else keras.applications.MobileNetV3Large
    return build(input_shape=(IMAGE_SIZE, IMAGE_SIZE, 3), weights=None).predict_on_batch


def _keras_cv(model: str, exports: Path) -> Callable:
    """keras-cv's own classes, built offline from the same block tables."""
    import keras_cv

    from mobilenetv3 import presets

    config = presets.get(f"mobilenet_v3_{model}").config
    stackwise = {k: v for k, v in config.items() if k.startswith("stackwise_")}
    backbone = keras_cv.models.MobileNetV3Backbone(
        **stackwise, include_rescaling=True, input_shape=(IMAGE_SIZE, IMAGE_SIZE, 3)
    )
    return keras_cv.models.ImageClassifier(backbone=backbone, num_classes=1000).predict_on_batch


def _torch_predict(module: Any, channels_last: bool = False) -> Callable:
    import torch

    torch.set_num_threads(_threads())
    module = module.eval()
    if channels_last:
        module = module.to(memory_format=torch.channels_last)

    def predict(images: np.ndarray) -> Any:
        with torch.inference_mode():
            tensor = torch.from_numpy(images)
            if channels_last:
                tensor = tensor.contiguous(memory_format=torch.channels_last)
            return module(tensor).numpy()

    return predict


def _torchvision_module(model: str) -> Any:
    import torchvision

    return (torchvision.models.mobilenet_v3_small if model == "small" else torchvision.models.mobilenet_v3_large)()


def _torchvision(model: str, exports: Path) -> Callable:
    return _torch_predict(_torchvision_module(model))


def _torchvision_channels_last(model: str, exports: Path) -> Callable:
    return _torch_predict(_torchvision_module(model), channels_last=True)


def _timm(model: str, exports: Path) -> Callable:
    import timm

    return _torch_predict(timm.create_model(f"mobilenetv3_{model}_100", pretrained=False))


def _torchvision_onnx_prepare(model: str, exports: Path) -> None:
    """Export torchvision's model with torch.onnx (not timed as build)."""
    import torch

    path = exports / f"torchvision_{model}.onnx"
    if not path.exists():
        module = _torchvision_module(model).eval()
        example = torch.zeros(1, 3, IMAGE_SIZE, IMAGE_SIZE)
        torch.onnx.export(module, (example,), str(path), input_names=["images"], opset_version=17,
                          dynamic_axes={"images": {0: "batch"}}, dynamo=False)


def export_path(exports: Path, model: str, kind: str) -> Path:
    """Where the `kind` export (see `EXPORT_KINDS`) of `model` lies."""
    from mobilenetv3.export import EXPORTERS

    if kind in DETECTOR_EXPORT_KINDS:
        format, postprocess = DETECTOR_EXPORT_KINDS[kind]
        return exports / f"ssdlite{'_e2e' if postprocess else ''}{EXPORTERS[format].suffix}"
    return exports / f"{model}{'_int8' if EXPORT_KINDS[kind][1] else ''}{EXPORTERS[EXPORT_KINDS[kind][0]].suffix}"


def _from_export(session: Callable[[Path], Callable], kind: str) -> Callable[[str, Path], Callable]:
    """A builder that opens the `kind` export with `session`."""
    return lambda model, exports: session(export_path(exports, model, kind))


def _torchvision_onnx(model: str, exports: Path) -> Callable:
    return speed.open_onnxruntime(exports / f"torchvision_{model}.onnx")


# -- the detector group: our SSDLite vs torchvision's ssdlite320_mobilenet_v3_large ---

# Both SSDLites get conv weights N(0, 1/fan_in): with the SSD init (N(0, 0.03))
# activations shrink to denormal floats within a few layers, which CPUs
# process 10-100x slower, and the timings would measure that instead.


def _mobilenetv3_detector() -> Any:
    import keras

    import mobilenetv3

    backbone = mobilenetv3.MobileNetV3LargeBackbone(reduced_tail=True, preprocessing="symmetric")
    detector = mobilenetv3.MobileNetV3ObjectDetector(backbone, num_classes=91, image_size=DETECTOR_SIZE)
    rng = np.random.default_rng(0)
    for layer in detector._flatten_layers():
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)):
            shape = tuple(layer.kernel.shape)
            fan_in = np.prod(shape[:2]) * (1 if isinstance(layer, keras.layers.DepthwiseConv2D) else shape[2])
            layer.kernel.assign(rng.normal(0.0, fan_in**-0.5, shape).astype("float32"))
    return detector


def _keras_detector_raw(model: str, exports: Path) -> Callable:
    """The raw network (resize, backbone, heads): images -> class logits and box regression."""
    import keras

    detector = _mobilenetv3_detector()
    return keras.Model(detector.inputs, detector.outputs).predict_on_batch


def _keras_detector_e2e(model: str, exports: Path) -> Callable:
    """`predict`: the raw network, then decoding, per-class NMS and top 300."""
    return _mobilenetv3_detector().predict_on_batch


def _torchvision_ssdlite() -> Any:
    import torch
    import torchvision

    torch.set_num_threads(_threads())
    model = torchvision.models.detection.ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None).eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Conv2d):
                fan_in = module.weight[0].numel()
                module.weight.copy_(torch.randn(module.weight.shape, generator=generator) * fan_in**-0.5)
    return model


def _torchvision_ssdlite_raw_module() -> Any:
    """Backbone + head of torchvision's SSDLite on a ready 320x320 batch
    (no transform, no postprocessing)."""
    import torch

    ssd = _torchvision_ssdlite()

    class Raw(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.backbone, self.head = ssd.backbone, ssd.head

        def forward(self, images: Any) -> Any:
            out = self.head(list(self.backbone(images).values()))
            return out["bbox_regression"], out["cls_logits"]

    return Raw().eval()


def _torch_call(module: Any, batch_as_list: bool = False) -> Callable:
    import torch

    def predict(images: np.ndarray) -> Any:
        with torch.inference_mode():
            tensor = torch.from_numpy(images)
            return module(list(tensor) if batch_as_list else tensor)

    return predict


def _torchvision_detector_raw(model: str, exports: Path) -> Callable:
    return _torch_call(_torchvision_ssdlite_raw_module())


def _torchvision_detector_e2e(model: str, exports: Path) -> Callable:
    """The full model: its transform (normalize, resize to 320), network and postprocessing."""
    return _torch_call(_torchvision_ssdlite(), batch_as_list=True)


def _torchvision_detector_onnx_prepare(model: str, exports: Path) -> None:
    """torch.onnx export of torchvision's raw network (backbone + head), dynamic batch."""
    import torch

    path = exports / "torchvision_ssdlite_raw.onnx"
    if not path.exists():
        example = torch.zeros(1, 3, DETECTOR_SIZE, DETECTOR_SIZE)
        torch.onnx.export(_torchvision_ssdlite_raw_module(), (example,), str(path), input_names=["images"],
                          output_names=["bbox_regression", "cls_logits"], opset_version=17,
                          dynamic_axes={"images": {0: "batch"}}, dynamo=False)


def _torchvision_detector_onnx(model: str, exports: Path) -> Callable:
    return speed.open_onnxruntime(exports / "torchvision_ssdlite_raw.onnx")


def _openvino_session(path: Path) -> Callable:
    from mobilenetv3.export import compile_openvino

    compiled = compile_openvino(path)
    return lambda images: compiled(images)


def _detector_case(name: str, builder: Callable, backend: str = "tensorflow", layout: str = "nhwc",
                   export: str | None = None, prepare: Callable | None = None) -> Case:
    return Case(name, builder, backend, layout, export, prepare, models=(DETECTOR,))


DETECTOR_CASES = (
    _detector_case("ssdlite-mobilenetv3-tensorflow-raw", _keras_detector_raw),
    _detector_case("ssdlite-mobilenetv3-onnxruntime-raw", _from_export(speed.open_onnxruntime, "detector_onnx"), layout="nchw",
                   export="detector_onnx"),
    _detector_case("ssdlite-mobilenetv3-litert-raw", _from_export(speed.open_litert, "detector_tflite"),
                   export="detector_tflite"),
    _detector_case("ssdlite-mobilenetv3-openvino-raw", _from_export(_openvino_session, "detector_openvino"),
                   layout="nchw", export="detector_openvino"),
    _detector_case("ssdlite-torchvision-eager-raw", _torchvision_detector_raw, "torch", "nchw"),
    _detector_case("ssdlite-torchvision-onnx-onnxruntime-raw", _torchvision_detector_onnx, "torch", "nchw",
                   prepare=_torchvision_detector_onnx_prepare),
    _detector_case("ssdlite-mobilenetv3-tensorflow-e2e", _keras_detector_e2e),
    _detector_case("ssdlite-mobilenetv3-onnxruntime-e2e", _from_export(speed.open_onnxruntime, "detector_onnx_e2e"),
                   layout="nchw", export="detector_onnx_e2e"),
    _detector_case("ssdlite-torchvision-eager-e2e", _torchvision_detector_e2e, "torch", "nchw"),
)


# -- OpenVINO: our IR, torchvision's ONNX export on OpenVINO (the peer) ---------------------

def _openvino_request(compiled: Any) -> Callable:
    request = compiled.create_infer_request()
    return lambda images: request.infer({0: images})[0]


def _openvino_ours(precision: str, kind: str) -> Callable[[str, Path], Callable]:
    """Our IR (`kind` export) compiled as users do (`compile_openvino`) with
    inference precision `precision` ("f32" or "bf16")."""

    def build(model: str, exports: Path) -> Callable:
        return speed.open_openvino(export_path(exports, model, kind), config={"INFERENCE_PRECISION_HINT": precision})

    return build


def _torchvision_openvino_path(exports: Path, model: str, int8: bool) -> Path:
    return exports / (f"torchvision_{model}_int8.xml" if int8 else f"torchvision_{model}.onnx")


def _torchvision_openvino_int8_prepare(model: str, exports: Path) -> None:
    """torchvision's ONNX export, int8-quantized with NNCF on the calibration
    images of our int8 exports (ImageNet-normalized, NCHW), as ours is."""
    _torchvision_onnx_prepare(model, exports)
    path = _torchvision_openvino_path(exports, model, True)
    if path.exists():
        return
    import nncf
    import openvino as ov

    saved = exports / CALIBRATION_FILE
    images = np.load(saved) if saved.exists() else calibration_images()
    mean, std = np.array([0.485, 0.456, 0.406]) * 255, np.array([0.229, 0.224, 0.225]) * 255
    images = ((images - mean) / std).astype(np.float32).transpose(0, 3, 1, 2)
    ov_model = ov.convert_model(str(_torchvision_openvino_path(exports, model, False)))
    dataset = nncf.Dataset(list(images), lambda image: image[None])
    ov.save_model(nncf.quantize(ov_model, dataset, subset_size=len(images)), str(path))


def _torchvision_openvino(precision: str, int8: bool = False) -> Callable[[str, Path], Callable]:
    def build(model: str, exports: Path) -> Callable:
        import openvino as ov

        config = {"INFERENCE_PRECISION_HINT": precision, "INFERENCE_NUM_THREADS": _threads()}
        path = _torchvision_openvino_path(exports, model, int8)
        return _openvino_request(ov.Core().compile_model(str(path), "CPU", config))

    return build


OPENVINO_CASES = (
    Case("mobilenetv3-openvino", _openvino_ours("f32", "openvino"), layout="nchw", export="openvino"),
    Case("mobilenetv3-openvino-bf16", _openvino_ours("bf16", "openvino"), layout="nchw", export="openvino"),
    Case("mobilenetv3-openvino-int8", _openvino_ours("f32", "openvino_int8"), layout="nchw",
         export="openvino_int8"),
    Case("torchvision-onnx-openvino", _torchvision_openvino("f32"), "torch", "nchw",
         prepare=_torchvision_onnx_prepare),
    Case("torchvision-onnx-openvino-bf16", _torchvision_openvino("bf16"), "torch", "nchw",
         prepare=_torchvision_onnx_prepare),
    Case("torchvision-onnx-openvino-int8", _torchvision_openvino("f32", int8=True), "torch", "nchw",
         prepare=_torchvision_openvino_int8_prepare),
    # Keras 3's own OpenVINO backend (inference only): the model code runs unchanged.
    Case("mobilenetv3-keras-openvino", _keras_mobilenetv3, "openvino"),
    Case("keras.applications-openvino", _keras_applications, "openvino"),
)


# -- the training group: step(images, labels) of one SGD step, same loss everywhere -------------

def _keras_train_step(model: Any) -> Callable:
    import keras

    model.compile(optimizer=keras.optimizers.SGD(0.01),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model.train_on_batch


def _keras_mobilenetv3_train(model: str, exports: Path) -> Callable:
    import mobilenetv3

    backbone = mobilenetv3.MobileNetV3SmallBackbone(input_shape=(IMAGE_SIZE, IMAGE_SIZE, 3))
    return _keras_train_step(mobilenetv3.MobileNetV3ImageClassifier(backbone, 1000))


def _keras_applications_train(model: str, exports: Path) -> Callable:
    import keras

    return _keras_train_step(keras.applications.MobileNetV3Small(
        input_shape=(IMAGE_SIZE, IMAGE_SIZE, 3), weights=None, classes=1000, classifier_activation=None))


def _torchvision_train(model: str, exports: Path) -> Callable:
    import torch

    torch.set_num_threads(_threads())
    module = _torchvision_module(TRAIN_FAMILY).train()
    optimizer = torch.optim.SGD(module.parameters(), lr=0.01)
    loss = torch.nn.CrossEntropyLoss()

    def step(images: np.ndarray, labels: np.ndarray) -> float:
        optimizer.zero_grad()
        value = loss(module(torch.from_numpy(images)), torch.from_numpy(labels))
        value.backward()
        optimizer.step()
        return float(value)

    return step


def _train_case(name: str, builder: Callable, backend: str = "tensorflow", layout: str = "nhwc") -> Case:
    return Case(name, builder, backend, layout, models=(TRAIN,))


TRAIN_CASES = (
    *(_train_case(f"mobilenetv3-train-{backend}", _keras_mobilenetv3_train, backend)
      for backend in ("tensorflow", "jax", "torch")),
    *(_train_case(f"keras.applications-train-{backend}", _keras_applications_train, backend)
      for backend in ("tensorflow", "jax", "torch")),
    _train_case("torchvision-eager-train", _torchvision_train, "torch", "nchw"),
)


# -- the cases -----------------------------------------------------------------------------

CASES = (
    Case("mobilenetv3-tensorflow", _keras_mobilenetv3, "tensorflow"),
    Case("mobilenetv3-jax", _keras_mobilenetv3, "jax"),
    Case("mobilenetv3-torch", _keras_mobilenetv3, "torch"),
    Case("mobilenetv3-folded-tensorflow", _keras_mobilenetv3_folded, "tensorflow"),
    Case("mobilenetv3-folded-jax", _keras_mobilenetv3_folded, "jax"),
    Case("mobilenetv3-folded-torch", _keras_mobilenetv3_folded, "torch"),
    Case("keras.applications-tensorflow", _keras_applications, "tensorflow"),
    Case("keras.applications-jax", _keras_applications, "jax"),
    Case("keras.applications-torch", _keras_applications, "torch"),
    Case("keras-cv-0.9-tensorflow", _keras_cv, "tensorflow"),
    Case("torchvision-eager", _torchvision, "torch", "nchw"),
    Case("torchvision-eager-channels-last", _torchvision_channels_last, "torch", "nchw"),
    Case("timm-eager", _timm, "torch", "nchw"),
    Case("torchvision-onnx-onnxruntime", _torchvision_onnx, "torch", "nchw", prepare=_torchvision_onnx_prepare),
    Case("mobilenetv3-onnxruntime", _from_export(speed.open_onnxruntime, "onnx"), layout="nchw", export="onnx"),
    Case("mobilenetv3-onnxruntime-int8", _from_export(speed.open_onnxruntime, "onnx_int8"), layout="nchw", export="onnx_int8"),
    Case("mobilenetv3-litert", _from_export(speed.open_litert, "tflite"), export="tflite"),
    Case("mobilenetv3-litert-int8", _from_export(speed.open_litert, "tflite_int8"), export="tflite_int8"),
    *DETECTOR_CASES,
    *OPENVINO_CASES,
    *TRAIN_CASES,
)
CASE_NAMES = tuple(c.name for c in CASES)


# -- measuring (inside the worker process) ---------------------------------------------

def _rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(case: Case, model: str, exports: Path, settings: Settings) -> dict:
    """Build `case` for `model` and time it (run inside a worker process)."""
    if model == TRAIN:
        return measure_training(case, exports, settings)
    rng = np.random.default_rng(0)
    size, big_batch = (DETECTOR_SIZE, settings.detector_batch) if model == DETECTOR else (IMAGE_SIZE, settings.big_batch)
    shape = (size, size, 3) if case.layout == "nhwc" else (3, size, size)
    one = rng.uniform(0, 255, (1, *shape)).astype(np.float32)
    many = rng.uniform(0, 255, (big_batch, *shape)).astype(np.float32)
    if case.prepare is not None:
        case.prepare(model, exports)
    baseline = _rss_mib()
    start = time.perf_counter()
    predict = case.builder(model, exports)
    build_s = time.perf_counter() - start
    speed.timed(predict, one, settings.warmup)
    latency = statistics.median(speed.timed(predict, one, settings.batch1_runs))
    speed.timed(predict, many, max(1, settings.warmup // 2))
    batch_time = statistics.median(speed.timed(predict, many, settings.batch32_runs))
    return {
        "case": case.name,
        "model": model,
        "build_s": round(build_s, 3),
        "batch1_ms": round(latency * 1000, 3),
        "batch1_img_s": round(1 / latency, 1),
        "batch": big_batch,
        "batch_img_s": round(big_batch / batch_time, 1),
        "peak_rss_delta_mib": round(_peak_rss_mib() - baseline, 1),
    }


def measure_training(case: Case, exports: Path, settings: Settings) -> dict:
    """Build a training case and time its steps: `warmup` steps (the first
    compiles), then the median of `train_steps` single steps."""
    rng = np.random.default_rng(0)
    shape = (IMAGE_SIZE, IMAGE_SIZE, 3) if case.layout == "nhwc" else (3, IMAGE_SIZE, IMAGE_SIZE)
    images = rng.uniform(0, 255, (settings.train_batch, *shape)).astype(np.float32)
    labels = rng.integers(0, 1000, settings.train_batch)
    baseline = _rss_mib()
    start = time.perf_counter()
    step = case.builder(TRAIN, exports)
    build_s = time.perf_counter() - start
    for _ in range(max(1, settings.warmup)):
        step(images, labels)
    step_s = statistics.median(speed.timed(lambda _: step(images, labels), images, settings.train_steps))
    return {
        "case": case.name,
        "model": TRAIN,
        "backend": case.backend,
        "build_s": round(build_s, 3),
        "batch": settings.train_batch,
        "step_ms": round(step_s * 1000, 2),
        "train_img_s": round(settings.train_batch / step_s, 1),
        "peak_rss_delta_mib": round(_peak_rss_mib() - baseline, 1),
    }


# -- exports (TensorFlow-backend worker) --------------------------------------------------

def calibration_images(folder: str | os.PathLike | None = None, count: int = 32) -> np.ndarray:
    """The images in `folder` when given, with flips to make `count`; else
    random pixels."""
    if folder is not None:
        from mobilenetv3.export import load_calibration_images

        base = load_calibration_images(folder, (IMAGE_SIZE, IMAGE_SIZE))
        variants = [base, base[:, :, ::-1]]
        return np.concatenate(variants * (count // (2 * len(base)) + 1))[:count]
    return np.random.default_rng(0).uniform(0, 255, (count, IMAGE_SIZE, IMAGE_SIZE, 3)).astype(np.float32)


def write_exports(
    exports: Path, models: list[str], kinds: tuple = tuple(EXPORT_KINDS), calibration: str | None = None
) -> None:
    """Export the Small/Large classifiers (random init) for the runtime cases,
    int8 ones calibrated on the images in `calibration` (a folder; default
    random pixels).

    An export that exists in `exports` already is not written again (pass a
    fresh folder after changing the exporter)."""
    from mobilenetv3.export import EXPORTERS, export_model

    images = calibration_images(calibration) if any(EXPORT_KINDS.get(k, (0, 0))[1] for k in kinds) else None
    if images is not None:
        np.save(exports / CALIBRATION_FILE, images)
    for model in models:
        if model == DETECTOR:
            _write_detector_exports(exports, [k for k in kinds if k in DETECTOR_EXPORT_KINDS])
            continue
        kinds_here = [k for k in kinds if k in EXPORT_KINDS]
        missing = [kind for kind in kinds_here if not export_path(exports, model, kind).exists()]
        classifier = _mobilenetv3_classifier(model) if missing else None
        for kind in missing:
            format, int8 = EXPORT_KINDS[kind]
            export_model(classifier, export_path(exports, model, kind), format, input_size=IMAGE_SIZE, int8=int8,
                         calibration=images if int8 else None, channels_first=EXPORTERS[format].channels_first)


def _write_detector_exports(exports: Path, kinds: list[str]) -> None:
    """The Large SSDLite (random init) at 320x320; ONNX and OpenVINO NCHW."""
    from mobilenetv3.export import EXPORTERS, export_model

    missing = [kind for kind in kinds if not export_path(exports, DETECTOR, kind).exists()]
    detector = _mobilenetv3_detector() if missing else None
    for kind in missing:
        format, postprocess = DETECTOR_EXPORT_KINDS[kind]
        export_model(detector, export_path(exports, DETECTOR, kind), format, input_size=DETECTOR_SIZE,
                     channels_first=EXPORTERS[format].channels_first, postprocess=postprocess)


# -- the roofline limit (a worker, once per run) ----------------------------------------------

def roofline_bounds(models: list[str], batches: tuple[int, ...], seconds: float = 0.5) -> dict:
    """This machine's rates (measured once) and, per model and batch, the
    roofline lower bound in seconds per image of the fp32 classifier (see
    `roofline.py` beside this file)."""
    import roofline

    rates = roofline.measure_machine(seconds=seconds)
    bounds = {}
    for model in models:
        if model not in CLASSIFIER_MODELS:  # detector (any input size), training: no roofline
            continue
        costs = roofline.layer_costs(_mobilenetv3_classifier(model))
        bounds[model] = {str(b): roofline.lower_bound_seconds(costs, rates, batch=b) for b in batches}
    return {"rates": dataclasses.asdict(rates), "bounds": bounds}


def _add_roofline(rows: list[dict], limits: dict) -> None:
    """Each measured row gets its fraction of the roofline limit at batch 1 and N."""
    from roofline import roofline_fraction

    for row in rows:
        bounds = limits.get("bounds", {}).get(row["model"])
        if "skipped" in row or not bounds:
            continue
        row["roofline_b1"] = round(roofline_fraction(row["batch1_img_s"], bounds["1"]), 3)
        row["roofline_bN"] = round(roofline_fraction(row["batch_img_s"], bounds[str(row["batch"])]), 3)
        row["limit_img_s"] = [round(1 / bounds["1"], 1), round(1 / bounds[str(row["batch"])], 1)]
        row["machine_rates"] = {k: round(v / 1e9, 1) for k, v in limits["rates"].items()}


def select_cases(patterns: list[str] | None) -> list[Case]:
    """The cases whose names match any of `patterns` (exact names or
    shell-style globs such as "*openvino*"); all cases for None."""
    import fnmatch

    if patterns is None:
        return list(CASES)
    unmatched = [p for p in patterns if not fnmatch.filter(CASE_NAMES, p)]
    if unmatched:
        raise ValueError(f"unknown benchmark cases {unmatched}; choose from {list(CASE_NAMES)} "
                         "(or a glob such as '*openvino*').")
    return [c for c in CASES if any(fnmatch.fnmatchcase(c.name, p) for p in patterns)]


# -- orchestration (parent process) -----------------------------------------------------

def worker_env(backend: str, system_malloc: bool = False) -> dict[str, str]:
    """A worker's environment: ours plus `ALLOCATOR_ENV` (unless `system_malloc`; variables the
    caller already set win), the Keras backend and TensorFlow's logging quiet."""
    allocator = {} if system_malloc else ALLOCATOR_ENV
    return {**allocator, **os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}


def _worker(args: list[str], backend: str, timeout: float, system_malloc: bool = False) -> tuple[dict | None, str]:
    env = worker_env(backend, system_malloc)
    command = [sys.executable, str(HARNESS), *args]
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, f"timed out after {timeout:.0f} s"
    for line in done.stdout.splitlines():
        if line.startswith(RESULT_MARK):
            return json.loads(line[len(RESULT_MARK):]), ""
    lines = [line for line in (done.stderr + done.stdout).splitlines() if line.strip() and not _is_log(line)]
    if done.returncode < 0:
        return None, f"the worker crashed (signal {-done.returncode})"
    return None, lines[-1].strip() if lines else f"exit status {done.returncode}"


def _is_log(line: str) -> bool:
    """TF/absl/XLA chatter (`I0000 ...`, `WARNING: ...`), not an error message."""
    return line[:1] in "IWE" and line[1:5].isdigit() or line.startswith(("WARNING:", "To enable"))


def _exports_needed(cases: list[Case], models: list[str]) -> tuple:
    return tuple(dict.fromkeys(
        c.export for c in cases if c.export is not None and any(m in c.models for m in models)
    ))


def run_benchmark(
    models: list[str] | None = None,
    cases: list[str] | None = None,
    quick: bool = False,
    exports_dir: str | os.PathLike | None = None,
    log: Callable[[str], None] = print,
    timeout: float = 900,
    calibration: str | os.PathLike | None = None,
    system_malloc: bool = False,
    rounds: int = 1,
) -> list[dict]:
    """Run every selected case for every selected model; return result rows.

    Args:
        models: "small", "large", "detector" (the SSDLite group:
            `DETECTOR_CASES`, 320x320, batch 1 and 8) and/or "train" (the
            training group: `TRAIN_CASES`, one SGD step of Small at 224x224,
            batch 32) (default small and large; `quick`: small).
        cases: names from `CASE_NAMES` or globs ("*openvino*"; default all).
        quick: one warm-up, three batch-1 calls, one batch of 4 (training:
            two steps of batch 4).
        exports_dir: where the exported files go (default: a temp folder).
        log: progress printer.
        timeout: seconds per subprocess.
        calibration: a folder of images to calibrate the int8 exports on
            (default: random pixels).
        system_malloc: leave glibc's malloc defaults in the workers instead
            of `ALLOCATOR_ENV` (environment variables already set win either way).
        rounds: run every case this many times, all cases once per round (so a
            noisy minute on a shared machine hits different cases in different
            rounds), and keep each case's best round (see `best_of_rounds`).

    Returns:
        One dict per measured (case, model); skipped cases get a `skipped` reason.
    """
    models = list(models or (["small"] if quick else CLASSIFIER_MODELS))
    for name in models:
        if name not in MODELS:
            raise ValueError(f"`models` must be drawn from {list(MODELS)}; got {name!r}.")
    selected = select_cases(cases)
    rounds = check_positive_int("rounds", rounds)
    from mobilenetv3.core.utils import scratch_dir

    settings = Settings.quick() if quick else Settings()
    with scratch_dir("bench") as scratch:
        exports = Path(exports_dir or scratch)
        exports.mkdir(parents=True, exist_ok=True)
        kinds = _exports_needed(selected, models)
        if kinds:
            log(f"exporting {', '.join(kinds)} for {', '.join(models)} ...")
            args = ["export", str(exports), ",".join(models), ",".join(kinds), str(calibration or "")]
            done, error = _worker(args, "tensorflow", timeout, system_malloc)
            if done is None:
                log(f"  export failed: {error}")
        limits = None
        if any(m in CLASSIFIER_MODELS for m in models):
            log("measuring this machine's roofline limit ...")
            limits, error = _worker(["roofline", ",".join(models), str(settings.big_batch)], "tensorflow", timeout,
                                    system_malloc)
            if limits is None:
                log(f"  roofline failed: {error}")
        runs = []
        for round_index in range(rounds):
            if rounds > 1:
                log(f"round {round_index + 1} of {rounds}")
            for case in selected:
                for model in (m for m in models if m in case.models):
                    runs.append(_run_case(case, model, exports, settings, quick, log, timeout, system_malloc))
        rows = best_of_rounds(runs)
        _add_roofline(rows, limits or {})
    return rows


# The speeds a row keeps from its best round; everything else comes from its first measured round.
_SPEED_KEYS = ("batch1_img_s", "batch_img_s", "train_img_s")


def best_of_rounds(runs: list[dict]) -> list[dict]:
    """One row per (case, model) from the rows of every round, in first-seen order: its best
    images/s at each batch (interference only ever slows a run down), latency and step time to
    match, the other fields from its first measured round, and `rounds_img_s` listing every
    round's [batch 1, batch N] (or [training step]) images/s. A case skipped in every round
    stays skipped.

    Example:

    ```python
    best_of_rounds([{"case": "a", "model": "small", "batch1_img_s": 90.0, "batch_img_s": 300.0},
                    {"case": "a", "model": "small", "batch1_img_s": 100.0, "batch_img_s": 280.0}])
    ```
    """
    grouped: dict[tuple, list[dict]] = {}
    for row in runs:
        grouped.setdefault((row["case"], row["model"]), []).append(row)
    rows = []
    for group in grouped.values():
        measured = [r for r in group if "skipped" not in r]
        if not measured:
            rows.append(group[0])
            continue
        row = dict(measured[0])
        keys = [key for key in _SPEED_KEYS if key in row]
        for key in keys:
            row[key] = max(r[key] for r in measured)
        if "batch1_img_s" in row:
            row["batch1_ms"] = round(1000 / row["batch1_img_s"], 3)
        if "train_img_s" in row:
            row["step_ms"] = round(1000 * row["batch"] / row["train_img_s"], 2)
        row["rounds_img_s"] = [[r[k] for k in keys] for r in measured]
        rows.append(row)
    return rows


def _run_case(case: Case, model: str, exports: Path, settings: Settings, quick: bool, log: Callable,
              timeout: float, system_malloc: bool = False) -> dict:
    log(f"{case.name} / {model} ...")
    args = ["measure", case.name, model, str(exports), "quick" if quick else "full"]
    start = time.perf_counter()
    row, error = _worker(args, case.backend, timeout, system_malloc)
    log(f"  ({time.perf_counter() - start:.0f} s wall, load {os.getloadavg()[0]:.1f})")
    if row is None:
        log(f"  skipped: {error}")
        return {"case": case.name, "model": model, "skipped": error}
    if model == TRAIN:
        log(f"  training step {row['step_ms']:.0f} ms at batch {row['batch']} ({row['train_img_s']:.1f} img/s), "
            f"build {row['build_s']:.2f} s, RSS +{row['peak_rss_delta_mib']:.0f} MiB")
        return row
    log(f"  batch 1: {row['batch1_ms']:.2f} ms ({row['batch1_img_s']:.0f} img/s), "
        f"batch {row['batch']}: {row['batch_img_s']:.0f} img/s, build {row['build_s']:.2f} s, "
        f"RSS +{row['peak_rss_delta_mib']:.0f} MiB")
    return row


# -- reporting -------------------------------------------------------------------------------

def _ratio(row: dict, rows: list[dict], key: str) -> str:
    baseline = DETECTOR_BASELINE if row["model"] == DETECTOR else BASELINE
    base = next((r for r in rows if r["case"] == baseline and r["model"] == row["model"] and key in r), None)
    return f"{row[key] / base[key]:.2f}x" if base else "-"


def is_peer(case: str) -> bool:
    """A peer implementation (not this package's model)."""
    return not case.startswith("mobilenetv3")


def _best(rows: list[dict], model: str, key: str, peer: bool) -> dict | None:
    candidates = [r for r in rows if r["model"] == model and key in r and is_peer(r["case"]) == peer]
    return max(candidates, key=lambda r: r[key], default=None)


def _peer_ratio(row: dict, rows: list[dict], key: str) -> str:
    best = _best(rows, row["model"], key, peer=True)
    return f"{row[key] / best[key]:.2f}x" if best else "-"


def _fraction(row: dict, key: str) -> str:
    return f"{row[key]:.2f}" if key in row else "-"


def markdown_table(rows: list[dict]) -> str:
    """Results as Markdown: the inference table (see `_inference_table`),
    then the training group's (`training_table`) when it ran."""
    training = [r for r in rows if r["model"] == TRAIN]
    inference = [r for r in rows if r["model"] != TRAIN]
    tables = [_inference_table(inference)] if inference or not training else []
    return "\n\n".join(tables + ([training_table(training)] if training else []))


def _inference_table(rows: list[dict]) -> str:
    """Inference results as a Markdown table, with throughput ratios to keras.applications on TF (detector rows:
    to torchvision's raw SSDLite, eager) and to the fastest peer of the run, and each row's fraction of the roofline limit."""
    header = ("| model | implementation | batch 1 latency (ms) | batch 1 img/s | batch N img/s (N) "
              "| vs keras.applications TF; detector: vs torchvision raw eager (b1 / bN) | vs fastest peer (b1 / bN) | roofline fraction (b1 / bN) "
              "| build (s) | peak RSS delta (MiB) |")
    lines = [header, "|" + "---|" * 10]
    for row in rows:
        if "skipped" in row:
            lines.append(f"| {row['model']} | {row['case']} | skipped: {row['skipped'][:80]} | | | | | | | |")
            continue
        ratios = f"{_ratio(row, rows, 'batch1_img_s')} / {_ratio(row, rows, 'batch_img_s')}"
        peers = f"{_peer_ratio(row, rows, 'batch1_img_s')} / {_peer_ratio(row, rows, 'batch_img_s')}"
        roof = f"{_fraction(row, 'roofline_b1')} / {_fraction(row, 'roofline_bN')}"
        lines.append(
            f"| {row['model']} | {row['case']} | {row['batch1_ms']:.2f} | {row['batch1_img_s']:.0f} "
            f"| {row['batch_img_s']:.0f} ({row['batch']}) | {ratios} | {peers} | {roof} | {row['build_s']:.2f} "
            f"| {row['peak_rss_delta_mib']:.0f} |"
        )
    return "\n".join(lines)


def _train_ratio(row: dict, rows: list[dict], baseline: str) -> str:
    base = next((r for r in rows if r["case"] == baseline and "train_img_s" in r), None)
    return f"{row['train_img_s'] / base['train_img_s']:.2f}x" if base else "-"


def training_table(rows: list[dict]) -> str:
    """The training group as a Markdown table: images/s of one SGD step, with
    ratios to keras.applications on the same backend and to torchvision."""
    lines = ["| implementation | backend | training step (ms) at batch N | images/s | vs keras.applications, same "
             "backend | vs torchvision eager | build (s) | peak RSS delta (MiB) |", "|" + "---|" * 8]
    for row in rows:
        if "skipped" in row:
            lines.append(f"| {row['case']} | | skipped: {row['skipped'][:80]} | | | | | |")
            continue
        same_backend = _train_ratio(row, rows, f"keras.applications-train-{row['backend']}")
        lines.append(
            f"| {row['case']} | {row['backend']} | {row['step_ms']:.0f} ({row['batch']}) | {row['train_img_s']:.1f} "
            f"| {same_backend} | {_train_ratio(row, rows, 'torchvision-eager-train')} | {row['build_s']:.2f} "
            f"| {row['peak_rss_delta_mib']:.0f} |"
        )
    return "\n".join(lines)


def summary(rows: list[dict]) -> str:
    """Per model and batch: our fastest path against the fastest peer, and the roofline limit."""
    lines = []
    for model in [m for m in MODELS if any(r["model"] == m for r in rows)]:
        for key, label in (("batch1_img_s", "batch 1"), ("batch_img_s", "batch N"), ("train_img_s", "training step")):
            ours, peer = _best(rows, model, key, peer=False), _best(rows, model, key, peer=True)
            if ours is None or peer is None:
                continue
            lines.append(f"- {model}, {label}: fastest ours {ours['case']} {ours[key]:.0f} img/s vs fastest peer "
                         f"{peer['case']} {peer[key]:.0f} img/s ({ours[key] / peer[key]:.2f}x).")
    for model in MODELS:
        row = next((r for r in rows if r["model"] == model and "limit_img_s" in r), None)
        if row is not None:
            rates = row["machine_rates"]
            lines.append(f"- Roofline limit, {model} (fp32, per layer the larger of compute time at the sgemm rate and "
                         f"memory time at the in-cache bandwidth; machine measured in this run: sgemm "
                         f"{rates['gemm_flops']:.0f} GFLOP/s, in-cache copy {rates['bandwidth']:.1f} GB/s, DRAM copy "
                         f"{rates['dram_bandwidth']:.1f} GB/s): "
                         f"{row['limit_img_s'][0]:.0f} img/s at batch 1, {row['limit_img_s'][1]:.0f} img/s at "
                         f"batch {row['batch']}.")
    return "\n".join(lines)


def bar_chart(rows: list[dict], path: str | os.PathLike) -> None:
    """A PNG bar chart of batch-1 and batch-N throughput per implementation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measured = [r for r in rows if "batch1_img_s" in r]  # inference rows
    models = sorted({r["model"] for r in measured}, key=MODELS.index)
    figure, axes = plt.subplots(len(models), 1, figsize=(11, 0.45 * len(measured) + 2), squeeze=False)
    for axis, model in zip(axes[:, 0], models, strict=True):
        subset = [r for r in measured if r["model"] == model]
        positions = np.arange(len(subset))
        axis.barh(positions - 0.2, [r["batch1_img_s"] for r in subset], 0.4, label="batch 1")
        axis.barh(positions + 0.2, [r["batch_img_s"] for r in subset], 0.4, label=f"batch {subset[0]['batch']}")
        axis.set_yticks(positions, [r["case"] for r in subset], fontsize=8)
        for label in axis.get_yticklabels():
            label.set_fontweight("normal" if is_peer(label.get_text()) else "bold")
        _limit_lines(axis, subset)
        axis.invert_yaxis()
        axis.set_xlabel("images / s (higher is better)")
        axis.set_title(f"SSDLite MobileNetV3-Large {DETECTOR_SIZE}x{DETECTOR_SIZE}, CPU" if model == DETECTOR
                       else f"MobileNetV3-{model.capitalize()} {IMAGE_SIZE}x{IMAGE_SIZE}, CPU (ours in bold)")
        axis.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(str(path), dpi=110)
    plt.close(figure)


def _limit_lines(axis: Any, subset: list[dict]) -> None:
    """Dashed vertical lines at the roofline limit (batch 1 and batch N)."""
    row = next((r for r in subset if "limit_img_s" in r), None)
    if row is None:
        return
    for value, color, batch in zip(row["limit_img_s"], ("C0", "C1"), (1, row["batch"]), strict=True):
        axis.axvline(value, color=color, linestyle="--", linewidth=1, label=f"roofline limit, batch {batch}")


def write_report(rows: list[dict], out_dir: str | os.PathLike, note: str = "") -> Path:
    """Write results.json, results.md and results.png into `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(rows, indent=2))
    (out / "results.md").write_text((note + "\n\n" if note else "") + summary(rows) + "\n\n" + markdown_table(rows) + "\n")
    if any("batch1_img_s" in r for r in rows) and chart_note() is None:
        bar_chart(rows, out / "results.png")
    return out


def chart_note() -> str | None:
    """None when results.png can be drawn, else the one line saying why not
    (matplotlib missing: the table is still written)."""
    try:
        import_optional("matplotlib", "benchmark", "The chart results.png")
    except ImportError as error:
        return f"{error} (results.md and results.json are written without it)."
    return None


def machine_note(system_malloc: bool = False) -> str:
    """CPU model, core count, the allocator setting and the load average when the run ended."""
    allocator = ("glibc malloc defaults" if system_malloc else
                 "glibc malloc keeping freed memory (" + ", ".join(f"{k}={v}" for k, v in ALLOCATOR_ENV.items()) + ")")
    return (f"Machine: {speed.cpu_name()}, {os.cpu_count()} cores, {allocator}; load average at the end "
            f"(1/5/15 min): {speed.load_average()}.")


def _main(argv: list[str]) -> int:
    """Worker entry: `measure CASE MODEL EXPORTS quick|full`, `export DIR MODELS KINDS CALIBRATION`
    or `roofline MODELS BATCH`."""
    if argv[0] == "roofline":
        limits = roofline_bounds(argv[1].split(","), (1, int(argv[2])))
        print(RESULT_MARK + json.dumps(limits))
        return 0
    if argv[0] == "export":
        write_exports(Path(argv[1]), argv[2].split(","), tuple(argv[3].split(",")), argv[4] or None)
        print(RESULT_MARK + json.dumps({"exported": True}))
        return 0
    case = next(c for c in CASES if c.name == argv[1])
    settings = Settings.quick() if argv[4] == "quick" else Settings()
    print(RESULT_MARK + json.dumps(measure(case, argv[2], Path(argv[3]), settings)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
