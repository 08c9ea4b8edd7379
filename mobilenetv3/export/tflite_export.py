"""TensorFlow Lite export (float32 or full-integer int8) via a SavedModel."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import keras
import numpy as np

from mobilenetv3.core.utils import atomic_path, scratch_dir
from mobilenetv3.export.calibration import check_calibration
from mobilenetv3.export.saved_model import require_tensorflow_backend, write_saved_model

DEFAULT_INT8_SIZE = (224, 224)
# LiteRT's XNNPACK delegate has no int8 HARD_SWISH: an int8 one runs on the
# builtin kernel and splits the delegated graph at every hard-swish (Small:
# ~0.3x the float speed). Kept float between dequantize/quantize pairs, it
# stays inside XNNPACK and int8 beats float (Small 1.1x, Large 1.5x).
DEFAULT_FLOAT_OPS = ("HARD_SWISH",)


def _input_size(model: keras.Model, input_size: Any, int8: bool) -> tuple | None:
    if input_size is None:
        fixed = tuple(model.inputs[0].shape[1:3])
        if not int8:
            return None
        return DEFAULT_INT8_SIZE if None in fixed else fixed  # int8 calibrates at a known size
    if isinstance(input_size, int):
        input_size = (input_size, input_size)
    if not (isinstance(input_size, (tuple, list)) and len(input_size) == 2
            and all(isinstance(s, int) and s >= 32 for s in input_size)):
        raise ValueError(f"`input_size` must be None, an int or (height, width), each >= 32; got {input_size!r}.")
    return tuple(input_size)


def _representative(calibration: np.ndarray):
    def samples():
        for image in calibration:
            yield [image[None].astype(np.float32)]

    return samples


def _quantize(converter: Any, images: np.ndarray, float_ops: tuple) -> bytes:
    import tensorflow as tf

    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = _representative(images)
    if not float_ops:
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        return converter.convert()
    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=converter,
        debug_dataset=_representative(images[:1]),
        debug_options=tf.lite.experimental.QuantizationDebugOptions(denylisted_ops=list(float_ops)),
    )
    return debugger.get_nondebug_quantized_model()


def _check_float_ops(float_ops: Any) -> tuple:
    from tensorflow.lite.python import schema_py_generated as schema

    builtins = {name for name in dir(schema.BuiltinOperator) if name.isupper()}
    if isinstance(float_ops, str) or not all(isinstance(op, str) and op in builtins for op in float_ops):
        raise ValueError("`float_ops` must be a list of TFLite builtin op names such as ['HARD_SWISH'] "
                         f"(empty for a full-integer model); got {float_ops!r}.")
    return tuple(float_ops)


def convert_tflite(
    model: keras.Model,
    input_size: Any = None,
    int8: bool = False,
    calibration: Any = None,
    float_ops: Any = DEFAULT_FLOAT_OPS,
    io_dtype: str = "float32",
) -> bytes:
    """The TFLite flatbuffer of `model` (see `export_tflite`)."""
    import tensorflow as tf

    from mobilenetv3.export.tflite_qat import convert_tflite_qat
    from mobilenetv3.quantization import QATModel

    if isinstance(model, QATModel):  # on any backend (a child process on TensorFlow off it)
        if calibration is not None:
            raise ValueError("`calibration` is not used for a QATModel: its int8 export takes the twin's own ranges.")
        return convert_tflite_qat(model, _input_size(model, input_size, False), io_dtype)
    require_tensorflow_backend("export_tflite")
    if io_dtype != "float32":
        raise ValueError(f"`io_dtype` {io_dtype!r} applies to a QATModel (quantize_aware); a float model's "
                         "file takes and returns float32.")
    size = _input_size(model, input_size, int8)
    images = check_calibration(calibration, size) if int8 else None
    float_ops = _check_float_ops(float_ops) if int8 else ()
    with scratch_dir("tflite") as folder:
        saved = os.path.join(folder, "saved_model")
        write_saved_model(model, saved, size)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved, signature_keys=["serving_default"])
        if int8:
            return _quantize(converter, images, float_ops)
        return converter.convert()


def export_tflite(
    model: keras.Model,
    path: str | os.PathLike,
    *,
    input_size: int | tuple[int, int] | None = None,
    int8: bool = False,
    calibration: Any = None,
    float_ops: Any = DEFAULT_FLOAT_OPS,
    io_dtype: str = "float32",
) -> Path:
    """Write a Keras model as a TensorFlow Lite file, atomically.

    The converter folds BatchNorm into the convolutions and fuses every
    hard-swish into the builtin `HARD_SWISH` op. The input is float32
    `(batch, height, width, 3)`: the batch is dynamic, and so are height
    and width where the model's are and `input_size` is None (segmenters);
    set them with `interpreter.resize_tensor_input` before
    `allocate_tensors`. With `int8=True` the model is
    quantized after training, calibrated on `calibration`: weights int8 per
    channel, activations int8, every op in int8 except those named in
    `float_ops` (by default hard-swish, which LiteRT's XNNPACK delegate
    runs only in float: kept float it is 3-4x faster than the int8 kernel);
    input and output stay float32. Needs the TensorFlow backend.

    A quantization-aware twin (`QATModel`, from
    `mobilenetv3.quantization.quantize_aware`) is written as its int8 file
    whatever `int8` says, with the twin's own activation ranges and folded
    int8 weights and no calibration images (`calibration` must be None;
    `float_ops` comes from the twin: hard-swish in float by default); see
    `mobilenetv3.export.tflite_qat` (on any backend: off TensorFlow, in a
    child process on TensorFlow). Its `io_dtype` may be "int8" or
    "uint8": the file then takes and returns the quantized tensors (their
    scale and zero point are in the interpreter's input and output details).

    Args:
        model: the Keras model.
        path: the `.tflite` file to write.
        input_size: None (keep the model's input size; 224x224 for int8
            when it is dynamic), an int or `(height, width)`.
        int8: full-integer quantization.
        calibration: float32 images `(N, height, width, 3)` in the model's
            input range (raw 0..255 for presets), e.g. from
            `mobilenetv3.export.load_images`; 100-500 typical images.
        float_ops: TFLite op names to leave in float in an int8 model;
            `()` gives a full-integer model (for integer-only accelerators
            such as microcontrollers and the Edge TPU).
        io_dtype: a QATModel's input and output type: "float32", "int8"
            or "uint8".

    Returns:
        The path written.

    Example:

    ```python
    from ai_edge_litert.interpreter import Interpreter
    model = mobilenetv3.MobileNetV3SmallBackbone()
    export_tflite(model, "small.tflite", input_size=224)
    interpreter = Interpreter("small.tflite")
    interpreter.allocate_tensors()
    ```
    """
    flatbuffer = convert_tflite(model, input_size, int8, calibration, float_ops, io_dtype)
    with atomic_path(path) as staging:
        staging.write_bytes(flatbuffer)
    return Path(path)
