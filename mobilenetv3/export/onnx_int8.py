"""Full-integer static quantization of an exported ONNX model (onnxruntime)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from mobilenetv3.utils import atomic_path, check_choice, scratch_dir

FORMATS = ("qdq", "qoperator")


class _ImagesReader:
    """An onnxruntime `CalibrationDataReader` over an array of images."""

    def __init__(self, images: np.ndarray, input_name: str) -> None:
        self._batches = iter([{input_name: image[None]} for image in images])

    def get_next(self) -> dict | None:
        return next(self._batches, None)

    def rewind(self) -> None:  # noqa: D401 - part of the reader protocol
        pass


def quantize_onnx(
    float_path: str | os.PathLike,
    path: str | os.PathLike,
    calibration: Any,
    *,
    quant_format: str = "qdq",
    channels_first: bool = False,
) -> Path:
    """Quantize an ONNX file to int8 with onnxruntime static quantization.

    Weights are int8 per output channel, activations uint8 (the fast
    combination on x86), calibrated with min/max on `calibration`. Every
    convolution, add, multiply and pooling runs in int8; ops onnxruntime
    cannot run in int8 stay float between dequantize/quantize pairs.

    Args:
        float_path: an ONNX file from `export_onnx`.
        path: the int8 `.onnx` file to write (atomically).
        calibration: float32 images `(N, height, width, 3)` as the float
            model takes them (raw 0..255 for presets).
        quant_format: "qdq" (QuantizeLinear/DequantizeLinear pairs, the
            format onnxruntime fuses best) or "qoperator" (QLinearConv, ...).
        channels_first: the float model takes NCHW (exported with
            `channels_first=True`); calibration images are transposed.

    Returns:
        The path written.

    Example:

    ```python
    export_onnx(model, "small.onnx", input_size=224)
    quantize_onnx("small.onnx", "small_int8.onnx", load_images("calib/"))
    ```
    """
    from onnxruntime import quantization as q

    check_choice("quant_format", quant_format, FORMATS)
    images = np.asarray(calibration, dtype=np.float32)
    if images.ndim != 4 or len(images) < 1:
        raise ValueError(f"`calibration` must be images (N, height, width, 3); got shape {images.shape}.")
    if channels_first:
        images = images.transpose(0, 3, 1, 2)
    fmt = q.QuantFormat.QDQ if quant_format == "qdq" else q.QuantFormat.QOperator
    with scratch_dir("onnx_int8") as folder, atomic_path(path) as staging:
        prepared = os.path.join(folder, "prepared.onnx")
        q.quant_pre_process(str(float_path), prepared, skip_symbolic_shape=True)
        q.quantize_static(
            prepared,
            str(staging),
            _ImagesReader(images, "images"),
            quant_format=fmt,
            per_channel=True,
            activation_type=q.QuantType.QUInt8,
            weight_type=q.QuantType.QInt8,
            calibrate_method=q.CalibrationMethod.MinMax,
            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
        )
    return Path(path)
