"""The LiteRT int8 export of a quantization-aware twin (`QATModel`): a file
that computes what the twin computes, with the twin's own ranges and folded
int8 weights (no calibration images).

Route: the twin is traced on TensorFlow with its fake quantization swapped
(`mobilenetv3.quantization.layers.export_quantizers`) for TensorFlow's own
fake-quant ops, which the TFLite converter reads as quantization parameters
(its quantization-aware-training mode: `optimizations=[DEFAULT]`, no
representative dataset):

- each `FakeQuant` becomes `tf.quantization.fake_quant_with_min_max_vars`
  with the twin's nudged grid (`quantization_grid`), so the int8 tensor has
  the twin's scale and zero point;
- each `QuantConv`'s folded kernel (computed here, a constant) goes through
  `fake_quant_with_min_max_vars_per_channel(narrow_range=True)` with
  -/+ max|w| per output channel, the twin's symmetric int8 weights;
- the input: the twin quantizes the raw pixels, then rescales them in float
  (`Rescaling`). The converter folds a `Rescaling` between a fake-quant and
  a conv into the conv's already-quantized weights without rescaling their
  grid (the weights round to 0), so the export folds it itself: without an
  offset, the scale goes into the first conv's folded kernel (exact, zero
  padding included: the file starts QUANTIZE, CONV_2D, as the post-training
  file does). With an offset (TF-slim's "symmetric", torchvision's
  "imagenet") no int8 tensor holds the rescaled input with its zero padding
  (its zero point would be fractional), so the file rescales its float input
  first and quantizes it on the twin's input grid carried through the
  rescaling, which the converter nudges to an integer zero point (up to half
  an input step away from the twin; float input only), one per-tensor grid
  for a per-channel rescaling.

The converter makes an int8 `HARD_SWISH` of a hard-swish between two
fake-quant ops; where the twin computes hard-swish in float (its default
`float_ops=("hard_swish",)`, since LiteRT's XNNPACK delegate has no int8
HARD_SWISH), each int8 `HARD_SWISH` of the converted file is replaced by
`DEQUANTIZE`, a float `HARD_SWISH` and `QUANTIZE` on the same tensors
(`_float_hard_swish`), the graph the post-training export makes (the
post-training export's `QuantizationDebugger` denylist does not apply to a
fake-quant graph). A bias that is one constant for every channel is
requantized per channel (`_requantize_splat_biases`: a converter error).
A dense layer on vectors runs as a 1x1 CONV_2D (`_convolution`). A twin made
for onnxruntime's int8 ops (`hard_swish="add_mul"` or
`quantize_after_rescaling`) is refused: the converter would give its fixed
hard-sigmoid grid and its `/ 6` tensors of their own, not the twin's.

Checked on TensorFlow 2.21 and ai-edge-litert 2.3.0.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from mobilenetv3.core import keras_internals as internals
from mobilenetv3.core.utils import scratch_dir

IO_DTYPES = ("float32", "int8", "uint8")
# The twin's float activations and the TFLite op that computes each.
_FLOAT_OPS = {"hard_silu": "HARD_SWISH"}


def _numpy(value: Any) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(value))


def _grid(layer: Any) -> tuple[float, float] | None:
    """The nudged `(low, high)` of a `FakeQuant`, None before it saw a range."""
    from mobilenetv3.quantization import quantization_grid

    if not float(_numpy(layer.initialized)):
        return None
    _, low, high = quantization_grid(_numpy(layer.range_min), _numpy(layer.range_max))
    return float(_numpy(low)), float(_numpy(high))


def _fake_quant_activations(layer: Any, inputs: Any) -> Any:
    import tensorflow as tf

    with tf.init_scope():  # the range as constants, read outside the trace
        grid = _grid(layer)
    if grid is None:
        return inputs
    return tf.quantization.fake_quant_with_min_max_vars(inputs, grid[0], grid[1], num_bits=8, narrow_range=False)


def _convolution(input_scales: dict[int, np.ndarray]) -> Any:
    """`convolution(layer, inputs, kernel, axes)` for `ExportQuantizers`:
    `inputs` through the folded kernel of `layer`, a constant (times
    `input_scales[id(layer)]` along its input channels where given: a
    `Rescaling` folded into the first conv), quantized by TensorFlow's
    per-channel fake quantization (on the last axis; a depthwise kernel's
    two last axes are its channels). A dense layer on vectors runs as a
    1x1 conv: the converter cannot carry a dense kernel's per-channel
    fake quantization through the transpose it gives FULLY_CONNECTED."""

    def convolution(layer: Any, inputs: Any, kernel: Any, axes: tuple[int, ...]) -> Any:
        import tensorflow as tf

        with tf.init_scope():
            folded = _numpy(layer.folded_kernel_and_bias()[0]).astype("float32")
        if id(layer) in input_scales:
            folded = folded * input_scales[id(layer)].reshape(-1, 1).astype("float32")
        dense = folded.ndim == 2 and len(inputs.shape) == 2
        if dense:
            folded = folded[None, None]
        shape = folded.shape
        channels_last = folded.reshape(shape[:-2] + (-1,)) if len(axes) == len(shape) - 2 else folded
        bound = np.max(np.abs(channels_last), axis=tuple(range(channels_last.ndim - 1)))
        bound = np.where(bound > 0, bound, 1.0).astype("float32")  # an all-zero channel stays 0
        quantized = tf.reshape(tf.quantization.fake_quant_with_min_max_vars_per_channel(
            tf.constant(channels_last), -bound, bound, num_bits=8, narrow_range=True), shape)
        if dense:
            outputs = tf.nn.conv2d(tf.reshape(inputs, (-1, 1, 1, shape[2])), quantized, 1, "VALID")
            return tf.reshape(outputs, (-1, shape[3]))
        return layer._apply(inputs, quantized)

    return convolution


def _input_rescaling(twin: keras.Model) -> tuple[Any, Any] | None:
    """`(input_quant, rescaling)` when the twin's input is quantized and then
    rescaled (a backbone with `include_rescaling`), else None."""
    from mobilenetv3.quantization import FakeQuant

    nodes = [node for node in internals.graph_nodes(twin) if not node.is_input]
    first = nodes[0].operation if nodes else None
    if not isinstance(first, FakeQuant):
        return None
    after = [node.operation for node in nodes
             if any(t is first.output for t in node.input_tensors)]
    if len(after) == 1 and isinstance(after[0], keras.layers.Rescaling):
        return first, after[0]
    return None


def _rescaled_grid(input_quant: Any, rescaling: Any) -> tuple[Any, Any] | None:
    """The input grid carried through `y = x * scale + offset`: per-tensor
    bounds holding every channel's."""
    grid = _grid(input_quant)
    if grid is None:
        return None
    scale, offset = (np.asarray(v, "float64") for v in (rescaling.scale, rescaling.offset))
    ends = np.stack([grid[0] * scale + offset, grid[1] * scale + offset])
    return float(ends.min()), float(ends.max())


def _folds_into_conv(twin: keras.Model, rescaling: Any) -> Any:
    """The `QuantConv` (a `Conv2D`) that alone reads the output of
    `rescaling` when the rescaling has no offset (it then folds into that
    conv's weights exactly, zero padding included), else None."""
    from mobilenetv3.quantization import QuantConv

    if np.any(np.asarray(rescaling.offset, "float64") != 0):
        return None
    readers = [node.operation for node in internals.graph_nodes(twin)
               if any(t is rescaling.output for t in node.input_tensors)]
    conv = readers[0] if len(readers) == 1 else None
    if isinstance(conv, QuantConv) and isinstance(conv.conv, keras.layers.Conv2D) \
            and not isinstance(conv.conv, keras.layers.DepthwiseConv2D):
        return conv
    return None


def _traced(twin: keras.Model, io_dtype: str) -> tuple[Any, dict[int, np.ndarray]]:
    """`(images -> outputs, input scales)`: the twin as the export traces it
    (see the module docstring), and the input-channel scales to fold into
    a conv's weights."""
    import tensorflow as tf

    found = _input_rescaling(twin)
    if found is None:
        return (lambda images: twin(images, training=False)), {}
    input_quant, rescaling = found
    tail = keras.Model(rescaling.output, twin.outputs)
    conv = _folds_into_conv(twin, rescaling)
    if conv is not None:  # exact: the quantized raw pixels go into a conv with the scale in its weights
        channels = conv.conv.kernel.shape[-2]
        scales = np.broadcast_to(np.asarray(rescaling.scale, "float64"), (channels,))
        return (lambda images: tail(input_quant(images), training=False)), {id(conv): scales}
    if io_dtype != "float32":
        raise ValueError(f"`io_dtype` {io_dtype!r} needs a model whose `Rescaling` has no offset (or no "
                         "`Rescaling`): with an offset the file rescales its float input before quantizing it.")
    grid = _rescaled_grid(input_quant, rescaling)

    def function(images: Any) -> Any:
        rescaled = rescaling(images)
        if grid is not None:
            rescaled = tf.quantization.fake_quant_with_min_max_vars(rescaled, grid[0], grid[1], num_bits=8,
                                                                   narrow_range=False)
        return tail(rescaled, training=False)

    return function, {}


def _check_io_dtype(io_dtype: Any) -> str:
    if io_dtype not in IO_DTYPES:
        raise ValueError(f"`io_dtype` must be one of {list(IO_DTYPES)}; got {io_dtype!r}.")
    return io_dtype


def _float_ops(twin: keras.Model) -> tuple[str, ...]:
    """The TFLite ops the twin computes in float."""
    names = [keras.activations.serialize(keras.activations.get(op)) for op in twin.options.get("float_ops", ())]
    unknown = [op for op in names if op not in _FLOAT_OPS]
    if unknown:
        raise ValueError(f"The twin computes {unknown} in float (`float_ops`); the LiteRT export keeps only "
                         f"{list(_FLOAT_OPS)} float. Make the twin with `float_ops` among those.")
    return tuple(_FLOAT_OPS[op] for op in names)


def _check_litert_options(twin: keras.Model) -> None:
    """Refuse a twin made for onnxruntime's int8 ops (its hard-swish or input
    quantization has no LiteRT form this export makes)."""
    options = twin.options
    if options.get("hard_swish", "op") != "op":
        raise ValueError(f"The twin computes hard-swish as {options['hard_swish']!r} (`hard_swish`), an "
                         "onnxruntime form; the LiteRT export needs a twin made with `hard_swish='op'`.")
    if options.get("quantize_after_rescaling"):
        raise ValueError("The twin quantizes its rescaled input (`quantize_after_rescaling=True`), an onnxruntime "
                         "form; the LiteRT export needs a twin made with `quantize_after_rescaling=False`.")


def convert_tflite_qat(twin: keras.Model, input_size: tuple[int, int] | None = None,
                       io_dtype: str = "float32") -> bytes:
    """The LiteRT int8 flatbuffer of a quantization-aware twin (see
    `export_tflite`, which writes it; the module docstring says how).

    On JAX or PyTorch the conversion runs in a child Python process on
    TensorFlow (the twin saved as `.keras` and reloaded there; the child's
    start adds about 10 s).

    Args:
        twin: a `QATModel` with its ranges set (`calibrate_ranges` or training).
        input_size: `(height, width)` to fix, or None for the twin's.
        io_dtype: "float32" (float input and output, quantized inside the
            file), "int8" or "uint8" (the file's input and output are the
            quantized tensors; read their scale and zero point from the
            interpreter's tensor details).

    Returns:
        The `.tflite` bytes.

    Example:

    ```python
    # not run: needs a calibrated twin
    flatbuffer = convert_tflite_qat(twin, io_dtype="int8")
    ```
    """
    io_dtype = _check_io_dtype(io_dtype)
    _check_litert_options(twin)
    float_ops = _float_ops(twin)
    if keras.config.backend() != "tensorflow":
        return _convert_in_tensorflow_process(twin, input_size, io_dtype)
    import tensorflow as tf

    from mobilenetv3.export.saved_model import image_spec
    from mobilenetv3.quantization.layers import ExportQuantizers, export_quantizers

    function, input_scales = _traced(twin, io_dtype)
    quantizers = ExportQuantizers(activations=_fake_quant_activations, convolution=_convolution(input_scales))
    with scratch_dir("tflite") as folder, export_quantizers(quantizers):
        archive = keras.export.ExportArchive()
        archive.track(twin)
        archive.add_endpoint("serving_default", function,
                             input_signature=[image_spec(twin, "float32", input_size)])
        archive.write_out(str(folder / "saved_model"), verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(str(folder / "saved_model"),
                                                             signature_keys=["serving_default"])
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if io_dtype != "float32":
            converter.inference_input_type = converter.inference_output_type = getattr(tf, io_dtype)
        flatbuffer = converter.convert()
    return _repaired(flatbuffer, float_hard_swish="HARD_SWISH" in float_ops)


def _convert_in_tensorflow_process(twin: keras.Model, input_size: tuple[int, int] | None, io_dtype: str) -> bytes:
    """The export of a twin built on JAX or PyTorch, by a child process on
    TensorFlow (the twin saved as `.keras`, reloaded there)."""
    from mobilenetv3.export.backend_process import export_in_backend

    options = {"input_size": list(input_size) if input_size else None, "io_dtype": io_dtype}
    with scratch_dir("tflite") as folder:
        out = folder / "twin.tflite"
        export_in_backend(__name__, "tensorflow", twin, out, options, "The LiteRT export of a QAT model")
        return out.read_bytes()


def _main(argv: list[str]) -> None:
    """The child process: `python -m mobilenetv3.export.tflite_qat MODEL.keras OUT.tflite OPTIONS_JSON`."""
    from mobilenetv3.export.backend_process import load_child_arguments

    twin, out, options, _ = load_child_arguments(argv, "tensorflow")
    size = tuple(options["input_size"]) if options["input_size"] else None
    out.write_bytes(convert_tflite_qat(twin, size, options["io_dtype"]))


# -- the converted flatbuffer -------------------------------------------------------------------


def _repaired(flatbuffer: bytes, float_hard_swish: bool) -> bytes:
    """The converted flatbuffer with its splat biases requantized per
    channel (`_requantize_splat_biases`) and, with `float_hard_swish`, every
    int8 HARD_SWISH computed in float (`_float_hard_swish`)."""
    import flatbuffers
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(flatbuffer, 0))
    _requantize_splat_biases(model)
    if float_hard_swish:
        _float_hard_swish(model)
    builder = flatbuffers.Builder(len(flatbuffer) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _builtin(model: Any, operator: Any) -> int:
    code = model.operatorCodes[operator.opcodeIndex]
    return max(code.builtinCode, code.deprecatedBuiltinCode)


def _requantize_splat_biases(model: Any) -> None:
    """Requantize each int32 bias that the converter quantized with its
    first channel's scale alone: a bias that is one constant for every
    channel (a bias-free conv followed by `+ 3`, the hard-sigmoid of a fresh
    squeeze-excite) before per-channel int8 weights comes out as one int32
    value, read back with each channel's own scale (TensorFlow 2.21: up to
    tens of output steps off). Such a bias is written again as the float
    value the first channel holds, quantized with every channel's scale."""
    from tensorflow.lite.python import schema_py_generated as schema

    ops = schema.BuiltinOperator
    for graph in model.subgraphs:
        for operator in graph.operators:
            if _builtin(model, operator) not in (ops.CONV_2D, ops.DEPTHWISE_CONV_2D, ops.FULLY_CONNECTED):
                continue
            if len(operator.inputs) < 3 or operator.inputs[2] < 0:
                continue
            tensor = graph.tensors[operator.inputs[2]]
            data = model.buffers[tensor.buffer].data
            if tensor.type != schema.TensorType.INT32 or data is None or tensor.quantization is None:
                continue
            values = np.frombuffer(bytes(data), "<i4")
            scales = np.asarray(tensor.quantization.scale, "float64")
            if len(scales) < 2 or len(values) != len(scales) or values[0] == 0 or np.any(values != values[0]):
                continue
            if np.all(scales == scales[0]) or np.any(scales <= 0):
                continue
            requantized = np.round(values[0] * scales[0] / scales).astype("<i4")
            buffer = schema.BufferT()
            buffer.data = np.frombuffer(requantized.tobytes(), np.uint8)
            model.buffers.append(buffer)
            tensor.buffer = len(model.buffers) - 1


def _opcode_index(model: Any, builtin: int) -> int:
    """The index of `builtin`'s operator code in `model`, added if missing."""
    from tensorflow.lite.python import schema_py_generated as schema

    for index, code in enumerate(model.operatorCodes):
        if max(code.builtinCode, code.deprecatedBuiltinCode) == builtin:
            return index
    code = schema.OperatorCodeT()
    code.builtinCode, code.deprecatedBuiltinCode, code.version = builtin, min(builtin, 127), 2  # 2: int8
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1


def _float_copy(model: Any, graph: Any, index: int) -> int:
    """A new float32 tensor of tensor `index`'s shape; its index."""
    from tensorflow.lite.python import schema_py_generated as schema

    source = graph.tensors[index]
    tensor = schema.TensorT()
    tensor.shape, tensor.shapeSignature, tensor.type = source.shape, source.shapeSignature, schema.TensorType.FLOAT32
    tensor.name = bytes(source.name or b"") + b"_float"
    model.buffers.append(schema.BufferT())
    tensor.buffer = len(model.buffers) - 1
    graph.tensors.append(tensor)
    return len(graph.tensors) - 1


def _operator(opcode: int, inputs: list[int], outputs: list[int]) -> Any:
    from tensorflow.lite.python import schema_py_generated as schema

    operator = schema.OperatorT()
    operator.opcodeIndex, operator.inputs, operator.outputs = opcode, inputs, outputs
    return operator


def _float_hard_swish(model: Any) -> None:
    """Every int8 `HARD_SWISH` computed in float between a `DEQUANTIZE` and
    a `QUANTIZE` of its int8 input and output tensors (which keep their
    quantization): what the twin computes, and what LiteRT's XNNPACK
    delegate runs (it has no int8 HARD_SWISH)."""
    from tensorflow.lite.python import schema_py_generated as schema

    ops = schema.BuiltinOperator
    int8 = [(graph, operator) for graph in model.subgraphs for operator in graph.operators
            if _builtin(model, operator) == ops.HARD_SWISH
            and graph.tensors[operator.inputs[0]].type == schema.TensorType.INT8]
    if not int8:
        return
    quantize, dequantize = _opcode_index(model, ops.QUANTIZE), _opcode_index(model, ops.DEQUANTIZE)
    for graph in model.subgraphs:
        operators = []
        for operator in graph.operators:
            if not any(operator is op for _, op in int8):
                operators.append(operator)
                continue
            source, target = operator.inputs[0], operator.outputs[0]
            source_float, target_float = _float_copy(model, graph, source), _float_copy(model, graph, target)
            operator.inputs, operator.outputs = [source_float], [target_float]
            operators += [_operator(dequantize, [source], [source_float]), operator,
                          _operator(quantize, [target_float], [target])]
        graph.operators = operators


if __name__ == "__main__":
    import sys

    _main(sys.argv[1:])
