"""OpenVINO IR export (xml + bin): fp32, bf16 inference, int8 via NNCF.

The IR is converted from the package's own ONNX export (`export_onnx`) with
`openvino.convert_model`. Weights are always stored in float32 (OpenVINO's
default fp16 weight compression is turned off) except for int8, where NNCF
stores int8 weights. The precision a model was exported for is recorded in
the IR's `rt_info` under `runtime_options/INFERENCE_PRECISION_HINT` ("f32"
or "bf16"), and `compile_openvino` applies it: the OpenVINO CPU plugin does
*not* read that entry itself, and on CPUs with bf16 support (AVX512-BF16,
AMX) it runs bf16 by default, about 1e-2 from Keras. Compile with
`{"INFERENCE_PRECISION_HINT": "f32"}` (or through `compile_openvino`) for
outputs within 1e-4 of Keras.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import keras
import numpy as np

from mobilenetv3.core.utils import atomic_path, check_choice
from mobilenetv3.export.calibration import check_calibration
from mobilenetv3.quantization import QATModel

PRECISIONS = ("fp32", "bf16", "int8")
# The CPU plugin's names for the inference precision of each export precision
# (int8 runs the few ops NNCF leaves in float, and dequantized outputs, in f32).
INFERENCE_PRECISION = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}
PRECISION_KEY = ["runtime_options", "INFERENCE_PRECISION_HINT"]
EXTRA = 'pip install "mobilenetv3[openvino]"'


def _require(module: str) -> Any:
    """Import `openvino` or `nncf`, or fail with one line naming the extra."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(f"OpenVINO export needs `{module}` ({EXTRA}).") from None


def _calibration_images(calibration: Any, channels_first: bool) -> np.ndarray:
    images = check_calibration(calibration)
    return images.transpose(0, 3, 1, 2) if channels_first else images


def _quantize(ov_model: Any, images: np.ndarray, options: dict | None) -> Any:
    """NNCF post-training int8 quantization (min/max ranges, bias correction),
    with NNCF's overflow fix on every layer (weights on a 7-bit range) unless
    `options` say otherwise: OpenVINO's u8 x i8 convolutions add pairs of
    products in saturating int16 on x86 CPUs without VNNI, and a file must be
    right on every CPU (measured on an AVX2-only AMD EPYC with NNCF's default,
    first layer only: a classifier's int8 output 0.10 off float, 0.37 of its range)."""
    nncf = _require("nncf")
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix

    dataset = nncf.Dataset(list(images), lambda image: image[None])
    defaults = {"subset_size": len(images),
                "advanced_parameters": AdvancedQuantizationParameters(overflow_fix=OverflowFix.ENABLE)}
    return nncf.quantize(ov_model, dataset, **{**defaults, **(options or {})})


def _twin_precision(precision: str, calibration: Any, nncf_options: dict | None) -> str:
    """A quantization-aware twin converts from its QDQ ONNX graph (OpenVINO
    reads it as FakeQuantize and runs int8): "int8", with no calibration."""
    if precision not in ("fp32", "int8") or calibration is not None or nncf_options:
        raise ValueError("`model` is a quantization-aware twin (QATModel): it exports as int8 from its own ranges; "
                         "pass no `calibration` nor `nncf_options`, and precision 'int8' (or the default).")
    return "int8"


def convert_openvino(
    model: keras.Model,
    *,
    precision: str = "fp32",
    calibration: Any = None,
    input_size: int | tuple[int, int] | None = None,
    channels_first: bool = False,
    nncf_options: dict | None = None,
) -> Any:
    """The `openvino.Model` of a Keras model (see `export_openvino`)."""
    ov = _require("openvino")
    check_choice("precision", precision, PRECISIONS)
    if isinstance(model, QATModel):
        precision = _twin_precision(precision, calibration, nncf_options)
    images = (_calibration_images(calibration, channels_first)
              if precision == "int8" and not isinstance(model, QATModel) else None)
    from mobilenetv3.export.onnx_export import export_onnx

    with tempfile.TemporaryDirectory(prefix="mobilenetv3_openvino_") as folder:
        onnx_path = export_onnx(model, Path(folder) / "model.onnx", channels_first=channels_first,
                                input_size=input_size, qat_weight_type="int8")
        ov_model = ov.convert_model(str(onnx_path))
    if images is not None:
        ov_model = _quantize(ov_model, images, nncf_options)
    ov_model.set_rt_info(INFERENCE_PRECISION[precision], PRECISION_KEY)
    return ov_model


def export_openvino(
    model: keras.Model,
    path: str | os.PathLike,
    *,
    precision: str = "fp32",
    calibration: Any = None,
    input_size: int | tuple[int, int] | None = None,
    channels_first: bool = False,
    nncf_options: dict | None = None,
) -> Path:
    """Write a Keras model (backbone, classifier, segmenter) as OpenVINO IR.

    Writes `path` (`.xml`, the graph) and the `.bin` weights beside it,
    converted from `export_onnx`'s graph (BatchNorm folded, native
    hard-swish), atomically: nothing is left behind on failure. The input is
    named `"images"`, float32 `(batch, height, width, 3)` (or NCHW with
    `channels_first=True`), batch dynamic.

    Precision:
        - "fp32": float32 weights and inference; outputs within 1e-4 of
          Keras when compiled as recorded (see `compile_openvino`).
        - "bf16": the same float32 weights, with bf16 inference recorded in
          the IR (`rt_info` `runtime_options/INFERENCE_PRECISION_HINT`):
          AVX512-BF16 / AMX kernels, about 1e-2 from float.
        - "int8": NNCF post-training quantization calibrated on
          `calibration` (int8 weights per channel, int8 activations, bias
          correction); about 1e-1 logit error.

    A quantization-aware twin (`QATModel` from `quantize_aware`) exports as
    int8 whatever the precision's default, from its QDQ ONNX graph
    (`export_onnx` of the twin: its own ranges and folded int8 weights,
    read by OpenVINO as FakeQuantize), and takes no `calibration`.

    The OpenVINO CPU plugin does not apply the recorded precision by itself
    and defaults to bf16 on CPUs that support it: compile through
    `compile_openvino`, or pass `{"INFERENCE_PRECISION_HINT": "f32"}`.

    Args:
        model: a functional Keras model with one image input.
        path: the `.xml` file to write (the `.bin` goes beside it).
        precision: "fp32", "bf16" or "int8".
        calibration: int8 only: float32 images `(N, height, width, 3)` in the
            model's input range (raw 0..255 for presets), e.g. from
            `mobilenetv3.export.load_images`; 100-300 typical images.
        input_size: None, or an int / `(height, width)` to fix the spatial
            size in the graph.
        channels_first: take NCHW input (no layout transposes).
        nncf_options: int8 only: extra keyword arguments for
            `nncf.quantize`, e.g. `{"fast_bias_correction": False}` or
            `{"ignored_scope": nncf.IgnoredScope(types=["HSwish"])}`.

    Returns:
        The `.xml` path written.

    Example:

    ```python
    import numpy as np
    from mobilenetv3.export import compile_openvino, export_openvino
    model = mobilenetv3.MobileNetV3SmallBackbone()
    export_openvino(model, "small.xml")
    compiled = compile_openvino("small.xml")
    images = np.random.uniform(0, 255, (2, 224, 224, 3)).astype("float32")
    features = compiled(images)[0]  # (2, 7, 7, 576)
    ```
    """
    ov = _require("openvino")
    target = Path(path)
    if target.suffix != ".xml":
        raise ValueError(f"`path` must be an OpenVINO .xml file (the .bin goes beside it); got {str(path)!r}.")
    ov_model = convert_openvino(model, precision=precision, calibration=calibration, input_size=input_size,
                                channels_first=channels_first, nncf_options=nncf_options)
    # The .bin lands first and the .xml (which names it) last, so a reader
    # never sees an .xml without its weights.
    with atomic_path(target) as xml_staging, atomic_path(target.with_suffix(".bin")) as bin_staging:
        ov.save_model(ov_model, str(xml_staging), compress_to_fp16=False)
        os.replace(xml_staging.with_suffix(".bin"), bin_staging)
    return target


def compile_openvino(path: str | os.PathLike, device: str = "CPU", config: dict | None = None) -> Any:
    """Compile an IR from `export_openvino` with the precision it records.

    Args:
        path: the `.xml` file.
        device: the OpenVINO device, e.g. "CPU".
        config: extra compile properties (they win over the recorded ones),
            e.g. `{"PERFORMANCE_HINT": "THROUGHPUT"}`.

    Returns:
        An `openvino.CompiledModel`; call it on a batch of images.

    Example:

    ```python
    compiled = compile_openvino("small.xml")
    logits = compiled(images)[0]
    ```
    """
    ov = _require("openvino")
    core = ov.Core()
    ov_model = core.read_model(str(path))
    properties = {}
    if ov_model.has_rt_info(PRECISION_KEY):
        properties["INFERENCE_PRECISION_HINT"] = str(ov_model.get_rt_info(PRECISION_KEY).astype(str))
    properties.update(config or {})
    return core.compile_model(ov_model, device, properties)
