"""Inference benchmark: mobilenetv3 (Keras backends and exports) vs peers.

Every case runs in its own Python subprocess, so each gets a clean memory
baseline, its own `KERAS_BACKEND`, and cannot disturb the others. Exports
(ONNX, LiteRT, fp32 and int8) are written once by a TensorFlow-backend
subprocess before the runtime cases load them. Per case and model: build
time (construct the model or runtime session), batch-1 latency (median of
repeated single-image calls after warm-up), batch-32 throughput (median of
repeated batch calls) and peak RSS growth over the process's RSS before
the build.

Example:

```python
from mobilenetv3 import benchmark
rows = benchmark.run_benchmark(models=["small"], cases=["mobilenetv3-onnxruntime"], quick=True)
print(benchmark.markdown_table(rows))
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

from mobilenetv3.utils import import_optional

IMAGE_SIZE = 224
MODELS = ("small", "large")
BASELINE = "keras.applications-tensorflow"
RESULT_MARK = "BENCHMARK_RESULT "
# Exported files the runtime cases load: kind -> (export format, int8).
EXPORT_KINDS = {"onnx": ("onnx", False), "onnx_int8": ("onnx", True), "tflite": ("tflite", False),
                "tflite_int8": ("tflite", True)}


@dataclasses.dataclass(frozen=True)
class Settings:
    """How long to measure: warm-up calls, then timed repetitions."""

    warmup: int = 5
    batch1_runs: int = 50
    batch32_runs: int = 7
    big_batch: int = 32

    @classmethod
    def quick(cls) -> Settings:
        return cls(warmup=1, batch1_runs=3, batch32_runs=1, big_batch=4)


@dataclasses.dataclass(frozen=True)
class Case:
    """One benchmarked implementation: a name, the function that builds
    `predict(images)` (from the model name and the exports folder), the
    backend it needs, its image layout, the `EXPORT_KINDS` file it loads
    (built with `export_path`) and an untimed preparation step."""

    name: str
    builder: Callable[[str, Path], Callable]
    backend: str = "tensorflow"
    layout: str = "nhwc"
    export: str | None = None
    prepare: Callable[[str, Path], None] | None = None




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


def _ort_session(path: Path) -> Callable:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = _threads()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda images: session.run(None, {name: images})[0]


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

    return exports / f"{model}{'_int8' if EXPORT_KINDS[kind][1] else ''}{EXPORTERS[EXPORT_KINDS[kind][0]].suffix}"


def _from_export(session: Callable[[Path], Callable], kind: str) -> Callable[[str, Path], Callable]:
    """A builder that opens the `kind` export with `session`."""
    return lambda model, exports: session(export_path(exports, model, kind))


def _torchvision_onnx(model: str, exports: Path) -> Callable:
    return _ort_session(exports / f"torchvision_{model}.onnx")


def _litert(path: Path) -> Callable:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(str(path), num_threads=_threads())
    entry = interpreter.get_input_details()[0]["index"]
    exit_ = interpreter.get_output_details()[0]["index"]
    state = {"batch": None}

    def predict(images: np.ndarray) -> np.ndarray:
        if state["batch"] != len(images):
            interpreter.resize_tensor_input(entry, images.shape)
            interpreter.allocate_tensors()
            state["batch"] = len(images)
        interpreter.set_tensor(entry, images)
        interpreter.invoke()
        return interpreter.get_tensor(exit_)

    return predict


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
    Case("mobilenetv3-onnxruntime", _from_export(_ort_session, "onnx"), layout="nchw", export="onnx"),
    Case("mobilenetv3-onnxruntime-int8", _from_export(_ort_session, "onnx_int8"), layout="nchw", export="onnx_int8"),
    Case("mobilenetv3-litert", _from_export(_litert, "tflite"), export="tflite"),
    Case("mobilenetv3-litert-int8", _from_export(_litert, "tflite_int8"), export="tflite_int8"),
)
CASE_NAMES = tuple(c.name for c in CASES)


# -- measuring (inside the worker process) ---------------------------------------------

def _rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _timed(predict: Callable, images: np.ndarray, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        predict(images)
        times.append(time.perf_counter() - start)
    return times


def measure(case: Case, model: str, exports: Path, settings: Settings) -> dict:
    """Build `case` for `model` and time it (run inside a worker process)."""
    rng = np.random.default_rng(0)
    shape = (IMAGE_SIZE, IMAGE_SIZE, 3) if case.layout == "nhwc" else (3, IMAGE_SIZE, IMAGE_SIZE)
    one = rng.uniform(0, 255, (1, *shape)).astype(np.float32)
    many = rng.uniform(0, 255, (settings.big_batch, *shape)).astype(np.float32)
    if case.prepare is not None:
        case.prepare(model, exports)
    baseline = _rss_mib()
    start = time.perf_counter()
    predict = case.builder(model, exports)
    build_s = time.perf_counter() - start
    _timed(predict, one, settings.warmup)
    latency = statistics.median(_timed(predict, one, settings.batch1_runs))
    _timed(predict, many, max(1, settings.warmup // 2))
    batch_time = statistics.median(_timed(predict, many, settings.batch32_runs))
    return {
        "case": case.name,
        "model": model,
        "build_s": round(build_s, 3),
        "batch1_ms": round(latency * 1000, 3),
        "batch1_img_s": round(1 / latency, 1),
        "batch": settings.big_batch,
        "batch_img_s": round(settings.big_batch / batch_time, 1),
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

    images = calibration_images(calibration) if any(EXPORT_KINDS[k][1] for k in kinds) else None
    for model in models:
        missing = [kind for kind in kinds if not export_path(exports, model, kind).exists()]
        classifier = _mobilenetv3_classifier(model) if missing else None
        for kind in missing:
            format, int8 = EXPORT_KINDS[kind]
            export_model(classifier, export_path(exports, model, kind), format, input_size=IMAGE_SIZE, int8=int8,
                         calibration=images if int8 else None, channels_first=EXPORTERS[format].channels_first)


# -- orchestration (parent process) -----------------------------------------------------

def _worker(args: list[str], backend: str, timeout: float) -> tuple[dict | None, str]:
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    command = [sys.executable, "-m", "mobilenetv3.benchmark", *args]
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


def _exports_needed(cases: list[Case]) -> tuple:
    return tuple(c.export for c in cases if c.export is not None)


def run_benchmark(
    models: list[str] | None = None,
    cases: list[str] | None = None,
    quick: bool = False,
    exports_dir: str | os.PathLike | None = None,
    log: Callable[[str], None] = print,
    timeout: float = 900,
    calibration: str | os.PathLike | None = None,
) -> list[dict]:
    """Run every selected case for every selected model; return result rows.

    Args:
        models: "small" and/or "large" (default both; `quick`: small).
        cases: names from `CASE_NAMES` (default all).
        quick: one warm-up, three batch-1 calls, one batch of 4.
        exports_dir: where the exported files go (default: a temp folder).
        log: progress printer.
        timeout: seconds per subprocess.
        calibration: a folder of images to calibrate the int8 exports on
            (default: random pixels).

    Returns:
        One dict per measured (case, model); skipped cases get a `skipped` reason.
    """
    models = list(models or (["small"] if quick else MODELS))
    for name in models:
        if name not in MODELS:
            raise ValueError(f"`models` must be drawn from {list(MODELS)}; got {name!r}.")
    selected = [c for c in CASES if cases is None or c.name in cases]
    unknown = sorted(set(cases or ()) - set(CASE_NAMES))
    if unknown:
        raise ValueError(f"unknown benchmark cases {unknown}; choose from {list(CASE_NAMES)}.")
    from mobilenetv3.utils import scratch_dir

    settings = Settings.quick() if quick else Settings()
    with scratch_dir("bench") as scratch:
        exports = Path(exports_dir or scratch)
        exports.mkdir(parents=True, exist_ok=True)
        kinds = _exports_needed(selected)
        if kinds:
            log(f"exporting {', '.join(kinds)} for {', '.join(models)} ...")
            args = ["export", str(exports), ",".join(models), ",".join(kinds), str(calibration or "")]
            done, error = _worker(args, "tensorflow", timeout)
            if done is None:
                log(f"  export failed: {error}")
        rows = []
        for case in selected:
            for model in models:
                rows.append(_run_case(case, model, exports, settings, quick, log, timeout))
    return rows


def _run_case(case: Case, model: str, exports: Path, settings: Settings, quick: bool, log: Callable,
              timeout: float) -> dict:
    log(f"{case.name} / {model} ...")
    args = ["measure", case.name, model, str(exports), "quick" if quick else "full"]
    row, error = _worker(args, case.backend, timeout)
    if row is None:
        log(f"  skipped: {error}")
        return {"case": case.name, "model": model, "skipped": error}
    log(f"  batch 1: {row['batch1_ms']:.2f} ms ({row['batch1_img_s']:.0f} img/s), "
        f"batch {row['batch']}: {row['batch_img_s']:.0f} img/s, build {row['build_s']:.2f} s, "
        f"RSS +{row['peak_rss_delta_mib']:.0f} MiB")
    return row


# -- reporting -------------------------------------------------------------------------------

def _ratio(row: dict, rows: list[dict], key: str) -> str:
    base = next((r for r in rows if r["case"] == BASELINE and r["model"] == row["model"] and key in r), None)
    return f"{row[key] / base[key]:.2f}x" if base else "-"


def markdown_table(rows: list[dict]) -> str:
    """Results as a Markdown table, with throughput ratios to keras.applications on TF."""
    header = ("| model | implementation | batch 1 latency (ms) | batch 1 img/s | batch N img/s (N) "
              "| vs keras.applications TF (b1 / bN) | build (s) | peak RSS delta (MiB) |")
    lines = [header, "|" + "---|" * 8]
    for row in rows:
        if "skipped" in row:
            lines.append(f"| {row['model']} | {row['case']} | skipped: {row['skipped'][:80]} | | | | | |")
            continue
        ratios = f"{_ratio(row, rows, 'batch1_img_s')} / {_ratio(row, rows, 'batch_img_s')}"
        lines.append(
            f"| {row['model']} | {row['case']} | {row['batch1_ms']:.2f} | {row['batch1_img_s']:.0f} "
            f"| {row['batch_img_s']:.0f} ({row['batch']}) | {ratios} | {row['build_s']:.2f} "
            f"| {row['peak_rss_delta_mib']:.0f} |"
        )
    return "\n".join(lines)


def bar_chart(rows: list[dict], path: str | os.PathLike) -> None:
    """A PNG bar chart of batch-1 and batch-N throughput per implementation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measured = [r for r in rows if "skipped" not in r]
    models = sorted({r["model"] for r in measured}, key=MODELS.index)
    figure, axes = plt.subplots(len(models), 1, figsize=(11, 0.45 * len(measured) + 2), squeeze=False)
    for axis, model in zip(axes[:, 0], models, strict=True):
        subset = [r for r in measured if r["model"] == model]
        positions = np.arange(len(subset))
        axis.barh(positions - 0.2, [r["batch1_img_s"] for r in subset], 0.4, label="batch 1")
        axis.barh(positions + 0.2, [r["batch_img_s"] for r in subset], 0.4, label=f"batch {subset[0]['batch']}")
        axis.set_yticks(positions, [r["case"] for r in subset], fontsize=8)
        axis.invert_yaxis()
        axis.set_xlabel("images / s (higher is better)")
        axis.set_title(f"MobileNetV3-{model.capitalize()} 224x224, CPU")
        axis.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(str(path), dpi=110)
    plt.close(figure)


def write_report(rows: list[dict], out_dir: str | os.PathLike, note: str = "") -> Path:
    """Write results.json, results.md and results.png into `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(rows, indent=2))
    (out / "results.md").write_text((note + "\n\n" if note else "") + markdown_table(rows) + "\n")
    if any("skipped" not in r for r in rows) and chart_note() is None:
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


def machine_note() -> str:
    """CPU model, core count and the load average when the run ended."""
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"Machine: {cpu}, {os.cpu_count()} cores; load average at the end (1/5/15 min): {load}."


def _main(argv: list[str]) -> int:
    """Worker entry: `measure CASE MODEL EXPORTS quick|full` or `export DIR MODELS KINDS CALIBRATION`."""
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
