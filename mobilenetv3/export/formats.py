"""The table of export formats: one `Exporter` per format, with what it
supports. The `mobilenetv3 export` command (its `--format` choices too) and
the benchmark read it; a new format is its exporter module plus one entry in
`EXPORTERS`."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mobilenetv3.core.utils import import_optional, scratch_dir

# Each writer imports its exporter module when it runs: the table itself is
# cheap to import (the `export` command's `--help` lists its formats).


@dataclasses.dataclass(frozen=True)
class Exporter:
    """One export format.

    Attributes:
        name: the `--format` name.
        write: `write(model, path, *, input_size, int8, calibration,
            channels_first, full_integer, bf16)`; unsupported options
            arrive at their defaults (False / None).
        suffix: the file suffix it writes ("" for a folder).
        int8: supports int8 quantization (calibrated on images).
        channels_first: can take NCHW input.
        full_integer: can quantize every op, hard-swish included.
        bf16: can record bf16 inference precision.
        needs_tensorflow: needs the TensorFlow backend.
        postprocess: can end a detector's graph in box decoding and NMS.
        detector_int8: can quantize a detector to int8.
        requires: the optional modules it imports, checked before exporting.
        int8_requires: those `int8=True` adds.
        extra: the `pip install "mobilenetv3[extra]"` that brings them.
        anchors: writes a detector's default boxes beside its output.
        qat: writes a quantization-aware twin (`QATModel`) as the int8
            file that computes what it computes (its own ranges, no
            calibration images).
        io_dtype: can give a twin's file int8 or uint8 input and output
            (`io_dtype`), not only float32.

    A `MobileNetV3ObjectDetector` exports as its raw network (images in,
    `bbox_regression` and `cls_logits` out) with its default boxes written
    beside the file (`<path>.anchors.npy`); with `postprocess` (formats
    that have it), as detections.
    """

    name: str
    write: Callable[..., Any]
    suffix: str
    int8: bool = False
    channels_first: bool = False
    full_integer: bool = False
    bf16: bool = False
    needs_tensorflow: bool = False
    postprocess: bool = False
    detector_int8: bool = False
    requires: tuple[str, ...] = ()
    int8_requires: tuple[str, ...] = ()
    extra: str = ""
    anchors: bool = True
    qat: bool = False
    io_dtype: bool = False


def _write_web(model: Any, path: str, *, input_size: int | None, web_runtime: str | None = None, **_: Any) -> None:
    from mobilenetv3.export.web_export import export_web

    export_web(model, path, input_size=input_size, runtime_dir=web_runtime)


def _write_onnx(model: Any, path: str, *, input_size: int | None, int8: bool, calibration: Any,
                channels_first: bool, postprocess: bool, **_: Any) -> None:
    from mobilenetv3.export.detector_export import export_onnx_detector, is_detector
    from mobilenetv3.export.onnx_export import export_onnx
    from mobilenetv3.export.onnx_int8 import quantize_onnx

    if is_detector(model):
        export_onnx_detector(model, path, postprocess=postprocess, channels_first=channels_first,
                             input_size=input_size)
        return
    if not int8:
        export_onnx(model, path, channels_first=channels_first, input_size=input_size)
        return
    with scratch_dir("export") as folder:
        float_path = os.path.join(folder, "float.onnx")
        export_onnx(model, float_path, channels_first=channels_first, input_size=input_size)
        quantize_onnx(float_path, path, calibration, channels_first=channels_first)


def _write_tflite(model: Any, path: str, *, input_size: int | None, int8: bool, calibration: Any,
                  full_integer: bool, postprocess: bool, io_dtype: str = "float32", **_: Any) -> None:
    from mobilenetv3.export.litert_metadata import write_tflite  # export_tflite + MediaPipe metadata
    from mobilenetv3.export.tflite_export import DEFAULT_FLOAT_OPS

    float_ops = () if full_integer else DEFAULT_FLOAT_OPS
    if postprocess:  # a detector ending in TFLite_Detection_PostProcess, with MediaPipe metadata
        from mobilenetv3.export.tflite_detection import export_tflite_detector

        export_tflite_detector(model, path, input_size=input_size, int8=int8, calibration=calibration,
                               float_ops=float_ops)
        return
    write_tflite(model, path, input_size=input_size, int8=int8, calibration=calibration, float_ops=float_ops,
                 io_dtype=io_dtype)


def _write_saved_model(model: Any, path: str, *, input_size: int | None, int8: bool, calibration: Any,
                       channels_first: bool, **_: Any) -> None:
    from mobilenetv3.export.saved_model import export_saved_model

    export_saved_model(model, path, input_size=(input_size, input_size) if input_size else None)


def _write_openvino(model: Any, path: str, *, input_size: int | None, int8: bool, calibration: Any,
                    channels_first: bool, bf16: bool, **_: Any) -> None:
    from mobilenetv3.export.openvino_export import export_openvino

    precision = "int8" if int8 else "bf16" if bf16 else "fp32"
    export_openvino(model, path, precision=precision, calibration=calibration, input_size=input_size,
                    channels_first=channels_first)


def _write_executorch(model: Any, path: str, *, input_size: int | None, int8: bool, calibration: Any,
                      channels_first: bool, **_: Any) -> None:
    from mobilenetv3.export.executorch_export import export_executorch

    export_executorch(model, path, input_size=input_size, int8=int8, calibration=calibration,
                      channels_first=channels_first)


EXPORTERS: dict[str, Exporter] = {
    e.name: e
    for e in (
        Exporter("onnx", _write_onnx, ".onnx", int8=True, channels_first=True, postprocess=True, requires=("onnx",),
                 int8_requires=("onnxruntime",), extra="onnx", qat=True),
        Exporter("tflite", _write_tflite, ".tflite", int8=True, full_integer=True, needs_tensorflow=True,
                 postprocess=True, detector_int8=True, requires=("tensorflow",), extra="tflite", qat=True,
                 io_dtype=True),
        Exporter("saved_model", _write_saved_model, "", needs_tensorflow=True, requires=("tensorflow",),
                 extra="tensorflow"),
        Exporter("openvino", _write_openvino, ".xml", int8=True, channels_first=True, bf16=True,
                 requires=("openvino",), int8_requires=("nncf",), extra="openvino", qat=True),
        Exporter("executorch", _write_executorch, ".pte", int8=True, channels_first=True,
                 requires=("torch", "executorch"), extra="executorch"),
        Exporter("web", _write_web, "", requires=("onnx",), extra="onnx", anchors=False),
    )
}


def formats_with(capability: str) -> list[str]:
    """The export formats that support `capability` ("int8", ...)."""
    return [name for name, exporter in EXPORTERS.items() if getattr(exporter, capability)]


def export_model(
    model: Any,
    path: str | os.PathLike,
    format: str,
    *,
    input_size: int | None = None,
    int8: bool = False,
    calibration: Any = None,
    channels_first: bool = False,
    full_integer: bool = False,
    bf16: bool = False,
    postprocess: bool = False,
    web_runtime: str | os.PathLike | None = None,
    io_dtype: str = "float32",
) -> Path:
    """Export `model` to `path` in `format` (a key of `EXPORTERS`).

    A detector (`MobileNetV3ObjectDetector`) is written as its raw network
    with its default boxes beside it (`<path>.anchors.npy`), or with
    `postprocess=True` as an end-to-end graph giving detections (ONNX:
    ending in `NonMaxSuppression`; TFLite: in LiteRT's
    `TFLite_Detection_PostProcess`, see
    `mobilenetv3.export.tflite_detection`); int8 for a detector: TFLite.
    `web_runtime`: the `onnxruntime-web` package folder the "web" format
    copies (see `mobilenetv3.export.web_export.find_web_runtime`). A
    quantization-aware twin (`QATModel`) is written as its int8 file by the
    formats marked `qat` (TFLite; ONNX as QDQ and OpenVINO converted from
    it, see `mobilenetv3.export.onnx_qat`), with its own ranges: no `int8`
    and no calibration images. `io_dtype` ("float32", "int8", "uint8"): a
    twin's input and output type in the formats marked `io_dtype` (TFLite;
    MediaPipe feeds uint8 or float32, so its metadata goes to those).

    Example:

    ```python
    export_model(model, "small.onnx", "onnx", channels_first=True)
    ```
    """
    if format not in EXPORTERS:
        raise ValueError(f"`format` must be one of {list(EXPORTERS)}; got {format!r}.")
    exporter = EXPORTERS[format]
    options = {"int8": int8, "channels_first": channels_first, "full_integer": full_integer, "bf16": bf16,
               "postprocess": postprocess}
    for option, value in options.items():
        if value and not getattr(exporter, option):
            raise ValueError(f"`{option}` applies to formats {formats_with(option)}, not {format!r}.")
    from mobilenetv3.export.detector_export import is_detector, write_anchors

    _check_detector_options(model, format, int8, postprocess)
    _check_qat_options(model, format, int8, calibration, full_integer)
    _check_io_dtype(model, format, io_dtype)
    for module in exporter.requires + (exporter.int8_requires if int8 else ()):
        import_optional(module, exporter.extra, f"Exporting to {format}{' int8' if int8 else ''}")
    if web_runtime is not None and format != "web":
        raise ValueError(f"`web_runtime` applies to format 'web', not {format!r}.")
    exporter.write(model, str(path), input_size=input_size, calibration=calibration, web_runtime=web_runtime,
                   io_dtype=io_dtype, **options)
    if is_detector(model) and exporter.anchors:
        write_anchors(model, path)
    return Path(path)


def _check_qat_options(model: Any, format: str, int8: bool, calibration: Any, full_integer: bool) -> None:
    from mobilenetv3.quantization import QATModel

    if not isinstance(model, QATModel):
        return
    if not EXPORTERS[format].qat:
        raise ValueError(f"A QATModel (quantization-aware twin) exports to formats {formats_with('qat')}, "
                         f"not {format!r}.")
    if int8 or calibration is not None or full_integer:
        raise ValueError("A QATModel exports as int8 with its own ranges: `int8`, `calibration` and "
                         "`full_integer` do not apply (the twin's `float_ops` say which ops stay float).")


def _check_io_dtype(model: Any, format: str, io_dtype: Any) -> None:
    from mobilenetv3.export.tflite_qat import IO_DTYPES
    from mobilenetv3.quantization import QATModel

    if io_dtype not in IO_DTYPES:
        raise ValueError(f"`io_dtype` must be one of {list(IO_DTYPES)}; got {io_dtype!r}.")
    if io_dtype == "float32":
        return
    if not EXPORTERS[format].io_dtype:
        raise ValueError(f"`io_dtype` {io_dtype!r} applies to formats {formats_with('io_dtype')}, not {format!r}.")
    if not isinstance(model, QATModel):
        raise ValueError(f"`io_dtype` {io_dtype!r} applies to a QATModel (quantization-aware twin); a "
                         f"{type(model).__name__} exports with float32 input and output.")


def _check_detector_options(model: Any, format: str, int8: bool, postprocess: bool) -> None:
    from mobilenetv3.export.detector_export import is_detector

    if postprocess and not is_detector(model):
        raise ValueError(f"`postprocess` applies to a MobileNetV3ObjectDetector, not a {type(model).__name__}.")
    if int8 and is_detector(model) and not EXPORTERS[format].detector_int8:
        raise ValueError(f"`int8` export of a MobileNetV3ObjectDetector applies to formats "
                         f"{formats_with('detector_int8')}, not {format!r}; export it in float.")
