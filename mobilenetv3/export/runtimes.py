"""The runtimes a model runs on: Keras itself, and its ONNX Runtime, LiteRT
and OpenVINO exports. `RUNTIMES` names them (with the export format and
the package each needs); `open_export` opens an exported file as
`predict(images) -> {output name: array}`; `open_onnxruntime`,
`open_litert` and `open_openvino` give its first output. `speed` (timing)
and `mobilenetv3.serving` (batch prediction, evaluation) read this table.

Example:

```python
from mobilenetv3.export import runtimes

runtimes.check_runtimes(["keras"])
runtimes.available_runtimes()  # e.g. ['keras', 'onnxruntime', 'litert', 'openvino']
```
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mobilenetv3.core.utils import import_optional
from mobilenetv3.export.formats import EXPORTERS

KERAS = "keras"


@dataclasses.dataclass(frozen=True)
class Runtime:
    """A runtime the model can be timed on.

    Attributes:
        name: the `--runtimes` name.
        format: the `EXPORTERS` format it loads (None: the Keras model itself).
        module: the package that runs it, checked before anything is built.
        extra: the `pip install "mobilenetv3[extra]"` that brings it.
    """

    name: str
    format: str | None = None
    module: str = "keras"
    extra: str = ""


RUNTIMES: dict[str, Runtime] = {
    r.name: r
    for r in (
        Runtime(KERAS),
        Runtime("onnxruntime", "onnx", "onnxruntime", "onnx"),
        Runtime("litert", "tflite", "ai_edge_litert", "tflite"),
        Runtime("openvino", "openvino", "openvino", "openvino"),
    )
}


def unavailable_reason(name: str) -> str | None:
    """Why runtime `name` (a key of `RUNTIMES`) cannot run here, or None
    when it can: its package or its exporter's is missing, or its exporter
    needs the TensorFlow backend.

    Example:

    ```python
    unavailable_reason("keras")  # None
    ```
    """
    if name not in RUNTIMES:
        raise ValueError(f"`runtimes` must be drawn from {list(RUNTIMES)}; got {name!r}.")
    runtime = RUNTIMES[name]
    exporter = EXPORTERS[runtime.format] if runtime.format else None
    modules = (runtime.module, *(exporter.requires if exporter else ()))
    for module in modules:
        if importlib.util.find_spec(module) is None:
            return (f"the `{module}` package is not installed: "
                    f"pip install \"mobilenetv3[{exporter.extra if exporter else runtime.extra}]\"")
    if exporter is not None and exporter.needs_tensorflow:
        import keras

        if keras.backend.backend() != "tensorflow":
            return (f"exporting to {exporter.name} needs the TensorFlow backend (KERAS_BACKEND=tensorflow), "
                    f"not {keras.backend.backend()}")
    return None


def available_runtimes() -> list[str]:
    """The runtimes of `RUNTIMES` that can run here (see `unavailable_reason`).

    Example:

    ```python
    available_runtimes()  # e.g. ['keras', 'onnxruntime', 'litert', 'openvino']
    ```
    """
    return [name for name in RUNTIMES if unavailable_reason(name) is None]


def check_runtimes(runtimes: list[str]) -> None:
    """Raise a ValueError naming the first of `runtimes` that cannot run
    here, and why (see `unavailable_reason`).

    Example:

    ```python
    check_runtimes(["keras"])
    ```
    """
    for name in runtimes:
        reason = unavailable_reason(name)
        if reason is not None:
            raise ValueError(f"Cannot run on {name}: {reason}.")


# -- opening exports: predict(images) on a float32 batch -----------------------------------


def _threads(threads: int | None) -> int:
    return threads or os.cpu_count() or 1


def open_onnxruntime(path: str | os.PathLike, threads: int | None = None) -> Callable[[np.ndarray], Any]:
    """`predict(images)` of an ONNX file on ONNX Runtime's CPU provider:
    `threads` intra-op threads (default every core), sequential execution,
    every graph optimization; returns the first output.

    Example:

    ```python
    predict = open_onnxruntime("small.onnx")
    logits = predict(images)
    ```
    """
    ort = import_optional("onnxruntime", "onnx", "Running an ONNX export")
    options = ort.SessionOptions()
    options.intra_op_num_threads = _threads(threads)
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda images: session.run(None, {name: images})[0]


def open_litert(path: str | os.PathLike, threads: int | None = None) -> Callable[[np.ndarray], Any]:
    """`predict(images)` of a `.tflite` file on LiteRT with `threads`
    threads (default every core); the input is resized to each new batch
    size; returns the first output.

    Example:

    ```python
    logits = open_litert("small.tflite", threads=1)(images)
    ```
    """
    interpreter_module = import_optional("ai_edge_litert.interpreter", "tflite", "Running a LiteRT export")
    interpreter = interpreter_module.Interpreter(str(path), num_threads=_threads(threads))
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


def open_openvino(
    path: str | os.PathLike, threads: int | None = None, config: dict | None = None
) -> Callable[[np.ndarray], Any]:
    """`predict(images)` of an OpenVINO IR compiled for the CPU as
    `compile_openvino` does (the precision it records), `threads` inference
    threads (default every core) and `config` on top; one infer request,
    returns the first output.

    Example:

    ```python
    predict = open_openvino("small.xml", config={"INFERENCE_PRECISION_HINT": "bf16"})
    logits = predict(images)
    ```
    """
    from mobilenetv3.export.openvino_export import compile_openvino

    compiled = compile_openvino(path, config={"INFERENCE_NUM_THREADS": _threads(threads), **(config or {})})
    request = compiled.create_infer_request()
    return lambda images: request.infer({0: images})[0]


_OPENERS: dict[str, Callable[[Path], Callable[[np.ndarray], Any]]] = {
    "onnxruntime": open_onnxruntime, "litert": open_litert, "openvino": open_openvino,
}


def open_export(
    runtime: str, path: str | os.PathLike, threads: int | None = None
) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    """`predict(images) -> {output name: array}` of a file exported for
    `runtime` ("onnxruntime", "litert" or "openvino"), every output by the
    name the exporter gave it (a detector's `bbox_regression` and
    `cls_logits`); the runtime is opened as `open_onnxruntime`,
    `open_litert` and `open_openvino` open it.

    Example:

    ```python
    predict = open_export("onnxruntime", "det.onnx")
    outputs = predict(images)  # {"bbox_regression": ..., "cls_logits": ...}
    ```
    """
    if runtime not in _OPENERS:
        raise ValueError(f"`runtime` must be one of {list(_OPENERS)} to open an exported file; got {runtime!r}.")
    return _NAMED_OPENERS[runtime](Path(path), _threads(threads))


def _named_onnxruntime(path: Path, threads: int) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    ort = import_optional("onnxruntime", "onnx", "Running an ONNX export")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    entry = session.get_inputs()[0].name
    names = [output.name for output in session.get_outputs()]
    return lambda images: dict(zip(names, session.run(None, {entry: images})))


def _named_litert(path: Path, threads: int) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    interpreter_module = import_optional("ai_edge_litert.interpreter", "tflite", "Running a LiteRT export")
    interpreter = interpreter_module.Interpreter(str(path), num_threads=threads)
    entry = interpreter.get_input_details()[0]["index"]
    signatures = interpreter.get_signature_list()
    # The outputs' names are the signature's; a file without one names them by tensor.
    if signatures:
        key = next(iter(signatures))
        by_index = {interpreter.get_signature_runner(key).get_output_details()[name]["index"]: name
                    for name in signatures[key]["outputs"]}
    else:
        by_index = {}
    outputs = [(d["index"], by_index.get(d["index"], d["name"])) for d in interpreter.get_output_details()]
    state = {"shape": None}

    def predict(images: np.ndarray) -> dict[str, np.ndarray]:
        if state["shape"] != images.shape:
            interpreter.resize_tensor_input(entry, images.shape)
            interpreter.allocate_tensors()
            state["shape"] = images.shape
        interpreter.set_tensor(entry, images)
        interpreter.invoke()
        return {name: interpreter.get_tensor(index) for index, name in outputs}

    return predict


def _named_openvino(path: Path, threads: int) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    from mobilenetv3.export.openvino_export import compile_openvino

    compiled = compile_openvino(path, config={"INFERENCE_NUM_THREADS": threads})
    request = compiled.create_infer_request()
    names = [_openvino_name(output, i) for i, output in enumerate(compiled.outputs)]

    def predict(images: np.ndarray) -> dict[str, np.ndarray]:
        results = request.infer({0: images})
        return {name: np.asarray(results[output]) for name, output in zip(names, compiled.outputs)}

    return predict


def _openvino_name(output: Any, index: int) -> str:
    try:
        return output.get_any_name()
    except RuntimeError:  # an output without a tensor name
        return f"output_{index}"


_NAMED_OPENERS: dict[str, Callable[[Path, int], Callable[[np.ndarray], dict[str, np.ndarray]]]] = {
    "onnxruntime": _named_onnxruntime, "litert": _named_litert, "openvino": _named_openvino,
}
