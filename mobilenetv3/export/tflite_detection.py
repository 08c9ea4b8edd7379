"""The SSDLite detector as a LiteRT file that ends in LiteRT's own
`TFLite_Detection_PostProcess` op: box decoding and non-maximum suppression
on the device, the outputs MediaPipe's `ObjectDetector` and every LiteRT
detection sample read.

The op (a custom op built into every LiteRT runtime, not a Flex op) takes
box encodings `(1, num_boxes, 4)` as `(ty, tx, th, tw)`, class scores
`(1, num_boxes, classes)` already activated, and the default boxes
`(num_boxes, 4)` as normalized `(ycenter, xcenter, height, width)`; it
decodes `ycenter = ty / y_scale * anchor_h + anchor_y`, `height =
exp(th / h_scale) * anchor_h` (SSD's coder: scales 10, 10, 5, 5), drops
scores below `nms_score_threshold` and runs NMS per class (`use_regular_nms`)
or once over each box's best class (fast NMS). It is emitted the way
TensorFlow's object-detection API does it: a `tf.function` marked
`experimental_implements="TFLite_Detection_PostProcess"` with the op's
attributes, which the TFLite converter replaces by the op.

What the graph does before the op, so that its detections are `predict`'s:

- scores: softmax over the classes, all columns (the op is told the
  foreground count, `num_classes - 1`, and skips column 0, the
  background); per class, boxes outside the best `topk_candidates` get
  score -1 (torchvision's pre-NMS top-k; the op has none), so the op never
  selects them.
- boxes: decoded as `predict` decodes them (log sizes clamped), clipped to
  the image, normalized, and encoded again against the default boxes with
  the op's coder: the op then decodes the clipped box (`predict` clips
  before NMS; the op itself does not clip). A box inside the image is
  encoded back to the model's own regression.
- `nms_score_threshold` is the float32 just above the model's
  `score_threshold`: the op keeps `score >= threshold`, `predict`
  `score > threshold`.

Outputs, in this order (the op's): `locations` `(1, N, 4)` float32
normalized `(ymin, xmin, ymax, xmax)` of the input image, `classes` `(1, N)`
float32 class index counting from the first foreground class (`predict`'s
label minus 1), `scores` `(1, N)`, `num_detections` `(1,)` float32; `N` is
`max_detections`, rows past `num_detections` are zeros.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np

from mobilenetv3.core.utils import atomic_path, scratch_dir
from mobilenetv3.detection import decode_boxes
from mobilenetv3.detection.boxes import SSD_BOX_WEIGHTS
from mobilenetv3.export.detector_export import is_detector
from mobilenetv3.export.saved_model import require_tensorflow_backend

OP_NAME = "TFLite_Detection_PostProcess"
# Outputs in the op's order (the file's subgraph outputs follow it).
OUTPUTS = ("locations", "classes", "scores", "num_detections")
# With regular NMS each class keeps at most this many boxes: the kernel's
# default for `detections_per_class`, which TensorFlow's converter (2.21)
# does not pass on from the function's attributes.
DETECTIONS_PER_CLASS = 100
# 100: the most a COCO evaluation reads per image, TensorFlow's and
# MediaPipe's usual figure, and no more than one class may keep
# (DETECTIONS_PER_CLASS), so that the op's best `max_detections` are
# `predict`'s; `predict` keeps up to 300.
DEFAULT_MAX_DETECTIONS = 100
# The name scope of the ops between the network and the op.
POSTPROCESS_SCOPE = "detection_postprocess"


def op_attributes(
    model: Any, max_detections: int | None = None, regular_nms: bool = True
) -> dict[str, Any]:
    """The `TFLite_Detection_PostProcess` attributes for a detector.

    Args:
        model: a `MobileNetV3ObjectDetector`.
        max_detections: detections the op outputs (`N`); default
            `min(100, model.max_detections)`.
        regular_nms: NMS per class, as `predict` (True), or LiteRT's fast
            NMS (False: one NMS over each box's best class, faster, not
            `predict`'s result).

    Returns:
        The attribute names and values (`max_detections`,
        `max_classes_per_detection` 1, `use_regular_nms`,
        `nms_score_threshold`, `nms_iou_threshold`, `num_classes`
        (foreground), `y_scale`, `x_scale`, `h_scale`, `w_scale`). With
        regular NMS, each class keeps at most `DETECTIONS_PER_CLASS` (100)
        boxes: `max_detections` above 100 may then give fewer detections
        than `predict` where one class has more than 100.

    Example:

    ```python
    # not run: needs a built detector
    op_attributes(detector)["nms_iou_threshold"]  # 0.55
    ```
    """
    if not is_detector(model):
        raise ValueError(f"`model` must be a MobileNetV3ObjectDetector; got {type(model).__name__}.")
    if model.num_classes < 2:
        raise ValueError("The detector has no foreground class (num_classes=1): nothing to detect.")
    if max_detections is None:
        max_detections = min(DEFAULT_MAX_DETECTIONS, model.max_detections)
    if isinstance(max_detections, bool) or not isinstance(max_detections, (int, np.integer)) or max_detections < 1:
        raise ValueError(f"`max_detections` must be a positive int; got {max_detections!r}.")
    if not 0.0 < model.iou_threshold <= 1.0:
        raise ValueError(f"TFLite_Detection_PostProcess needs an iou_threshold in (0, 1]; the detector's "
                         f"`iou_threshold` is {model.iou_threshold}.")
    threshold = np.nextafter(np.float32(model.score_threshold), np.float32(np.inf), dtype=np.float32)
    wx, wy, ww, wh = SSD_BOX_WEIGHTS
    return {
        "max_detections": int(max_detections),
        "max_classes_per_detection": 1,
        "use_regular_nms": bool(regular_nms),
        "nms_score_threshold": float(threshold),
        "nms_iou_threshold": float(np.float32(model.iou_threshold)),
        "num_classes": int(model.num_classes - 1),
        "y_scale": wy,
        "x_scale": wx,
        "h_scale": wh,
        "w_scale": ww,
    }


def _implements_signature(attributes: dict[str, Any]) -> str:
    """The `experimental_implements` text (a `NameAttrList` proto)."""
    parts = [f'name: "{OP_NAME}"']
    for key, value in attributes.items():
        if isinstance(value, bool):
            text = f"b: {str(value).lower()}"
        elif isinstance(value, int):
            text = f"i: {value}"
        else:  # the shortest text that parses back to the same float32
            text = f"f: {np.format_float_positional(np.float32(value), unique=True, trim='0')}"
        parts.append(f'attr {{ key: "{key}" value {{ {text} }} }}')
    return " ".join(parts)


def center_size_anchors(model: Any) -> np.ndarray:
    """The default boxes as the op takes them: `(num_boxes, 4)` float32
    normalized `(ycenter, xcenter, height, width)`."""
    height, width = model.image_size
    x1, y1, x2, y2 = (np.asarray(model.anchors, np.float64)[:, i] for i in range(4))
    columns = [(y1 + y2) / 2 / height, (x1 + x2) / 2 / width, (y2 - y1) / height, (x2 - x1) / width]
    return np.stack(columns, axis=1).astype(np.float32)


def op_inputs(model: Any, raw: dict[str, Any]) -> tuple[Any, Any]:
    """The op's `box_encodings` and `class_predictions` from the detector's
    raw outputs `model(images)` (see the module docstring), in `keras.ops`."""
    from keras import ops

    height, width = model.image_size
    # All columns: the op skips the background column itself (a slice here
    # would be quantized in an int8 file whatever its name).
    # Softmax spelled out: the quantizer gives a SOFTMAX op an int8 output
    # (steps of 1/256) even when told to leave it float.
    logits = ops.cast(raw["cls_logits"], "float32")
    exponentials = ops.exp(logits - ops.max(logits, axis=-1, keepdims=True))
    scores = exponentials * ops.reciprocal(ops.sum(exponentials, axis=-1, keepdims=True))
    num_boxes = scores.shape[1]
    k = min(model.topk_candidates, num_boxes)
    if k < num_boxes:  # torchvision's per-class candidates: the best k
        kth = ops.top_k(ops.transpose(scores, (0, 2, 1)), k)[0][..., -1]
        scores = ops.where(scores >= kth[:, None, :], scores, -1.0)
    boxes = decode_boxes(raw["bbox_regression"], model.anchors)
    size = ops.convert_to_tensor([width, height, width, height], "float32")
    boxes = ops.clip(boxes, 0.0, size) / size
    x1, y1, x2, y2 = (boxes[..., i] for i in range(4))
    anchors = center_size_anchors(model)
    wx, wy, ww, wh = SSD_BOX_WEIGHTS
    encodings = ops.stack([
        wy * ((y1 + y2) * 0.5 - anchors[:, 0]) / anchors[:, 2],
        wx * ((x1 + x2) * 0.5 - anchors[:, 1]) / anchors[:, 3],
        wh * ops.log((y2 - y1) / anchors[:, 2]),  # -inf for a box clipped to nothing: the op decodes it empty
        ww * ops.log((x2 - x1) / anchors[:, 3]),
    ], axis=-1)
    return encodings, scores


def _postprocess_function(attributes: dict[str, Any]) -> Any:
    """A `tf.function` the converter replaces by the op (its body, never
    run, only gives the outputs their types)."""
    import tensorflow as tf

    @tf.function(experimental_implements=_implements_signature(attributes))
    def postprocess(box_encodings: Any, class_predictions: Any, anchors: Any) -> tuple:
        zero = tf.constant(0.0, tf.float32)
        return zero, zero, zero, zero

    return postprocess


def write_saved_model_with_postprocess(model: Any, path: str | os.PathLike, input_size: tuple[int, int],
                                       attributes: dict[str, Any]) -> None:
    """A SavedModel whose `serving_default` (images `(1, H, W, 3)` float32
    raw pixels) ends in the op's placeholder function, for the converter."""
    import tensorflow as tf

    postprocess = _postprocess_function(attributes)
    anchors = tf.constant(center_size_anchors(model))

    def serve(images: Any) -> dict:
        raw = model(images, training=False)
        with tf.name_scope(POSTPROCESS_SCOPE):  # its ops stay float in an int8 file
            encodings, scores = op_inputs(model, raw)
        return dict(zip(OUTPUTS, postprocess(encodings, scores, anchors), strict=True))

    archive = keras.export.ExportArchive()
    archive.track(model)
    spec = tf.TensorSpec((1, *input_size, 3), tf.float32, name="images")
    archive.add_endpoint("serving_default", serve, input_signature=[spec])
    archive.write_out(str(path), verbose=False)


def _quantize(converter: Any, images: np.ndarray, float_ops: tuple) -> bytes:
    """int8 as `export_tflite` quantizes (calibrated on `images`, the ops
    in `float_ops` left float), and the postprocessing before the op float
    too: int8 softmax scores come in steps of 1/256 (a 0.001 threshold and
    the ranking would be lost) and int8 box coordinates in steps of a
    256th of their range. The op's inputs are dequantized."""
    import tensorflow as tf

    from mobilenetv3.export.tflite_export import _representative

    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = _representative(images)
    options = tf.lite.experimental.QuantizationDebugOptions
    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=converter, debug_dataset=_representative(images[:1]),
        debug_options=options(denylisted_ops=list(float_ops)),
    )
    # The postprocessing ops by name; and by type, the types only it uses:
    # the quantizer otherwise quantizes "same scale" ops (slices, top-k)
    # whatever their name.
    tail, network = set(), set()
    for name, op_type in _op_names_and_types(debugger.calibrated_model):
        (tail if name.startswith(POSTPROCESS_SCOPE + "/") else network).add((name, op_type))
    tail_types = {op_type for _, op_type in tail} - {op_type for _, op_type in network}
    debugger.options = options(denylisted_ops=sorted({*float_ops, *tail_types}),
                               denylisted_nodes=sorted(name for name, _ in tail))
    return debugger.get_nondebug_quantized_model()


def _op_names_and_types(flatbuffer: bytes) -> list[tuple[str, str]]:
    """(output tensor name, builtin op name) of every op output."""
    from tensorflow.lite.python import schema_py_generated as schema

    builtin = {code: name for name, code in vars(schema.BuiltinOperator).items() if name.isupper()}
    model = schema.Model.GetRootAs(flatbuffer, 0)
    graph = model.Subgraphs(0)
    names = []
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        code = model.OperatorCodes(op.OpcodeIndex())
        op_type = builtin.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "CUSTOM")
        names += [(graph.Tensors(op.Outputs(j)).Name().decode(), op_type) for j in range(op.OutputsLength())]
    return names


def _outputs_in_op_order(flatbuffer: bytes) -> bytes:
    """The flatbuffer with its subgraph outputs listed in the op's output
    order (locations, classes, scores, num_detections): the converter lists
    them in no fixed order, and MediaPipe (without output names in the
    metadata) and most LiteRT samples read them by position. Only those 4
    int32 indices move, in place; the signature names each output by its
    tensor, so it is unchanged."""
    from tensorflow.lite.python import schema_py_generated as schema

    data = bytearray(flatbuffer)
    model = schema.Model.GetRootAs(data, 0)
    graph = model.Subgraphs(0)
    op_outputs = None
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        code = model.OperatorCodes(op.OpcodeIndex())
        if code.CustomCode() == OP_NAME.encode():
            op_outputs = [op.Outputs(j) for j in range(op.OutputsLength())]
    current = [graph.Outputs(j) for j in range(graph.OutputsLength())]
    if op_outputs is None or sorted(current) != sorted(op_outputs):
        raise RuntimeError(f"The converter did not end the graph in {OP_NAME} (outputs {current}); "
                           "this TensorFlow version is not supported for --postprocess.")
    start = graph.OutputsAsNumpy().ctypes.data - np.frombuffer(data, np.uint8).ctypes.data
    data[start:start + 4 * len(op_outputs)] = np.asarray(op_outputs, "<i4").tobytes()
    return bytes(data)


def convert_tflite_detector(
    model: Any,
    input_size: int | tuple[int, int] | None = None,
    int8: bool = False,
    calibration: Any = None,
    float_ops: Any = None,
    max_detections: int | None = None,
    regular_nms: bool = True,
) -> bytes:
    """The LiteRT flatbuffer of a detector ending in the op (see
    `export_tflite_detector`)."""
    import tensorflow as tf

    from mobilenetv3.export.calibration import check_calibration
    from mobilenetv3.export.tflite_export import DEFAULT_FLOAT_OPS, _check_float_ops

    require_tensorflow_backend("export_tflite_detector")
    attributes = op_attributes(model, max_detections, regular_nms)
    size = _size(model, input_size)
    images = check_calibration(calibration, size) if int8 else None
    float_ops = _check_float_ops(DEFAULT_FLOAT_OPS if float_ops is None else float_ops) if int8 else ()
    with scratch_dir("tflite") as folder:
        saved = os.path.join(folder, "saved_model")
        write_saved_model_with_postprocess(model, saved, size, attributes)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved, signature_keys=["serving_default"])
        flatbuffer = _quantize(converter, images, float_ops) if int8 else converter.convert()
    return _outputs_in_op_order(flatbuffer)


def _size(model: Any, input_size: Any) -> tuple[int, int]:
    if input_size is None:
        return tuple(model.image_size)
    if isinstance(input_size, (int, np.integer)) and not isinstance(input_size, bool):
        input_size = (int(input_size), int(input_size))
    if not (isinstance(input_size, (tuple, list)) and len(input_size) == 2
            and all(isinstance(s, (int, np.integer)) and s >= 32 for s in input_size)):
        raise ValueError(f"`input_size` must be None, an int or (height, width), each >= 32; got {input_size!r}.")
    return int(input_size[0]), int(input_size[1])


def export_tflite_detector(
    model: Any,
    path: str | os.PathLike,
    *,
    input_size: int | tuple[int, int] | None = None,
    int8: bool = False,
    calibration: Any = None,
    float_ops: Any = None,
    max_detections: int | None = None,
    regular_nms: bool = True,
    metadata: bool = True,
) -> Path:
    """Write a `MobileNetV3ObjectDetector` as a LiteRT file ending in
    `TFLite_Detection_PostProcess`, atomically.

    The file takes one image `(1, H, W, 3)` float32 raw 0..255 RGB pixels
    (`H, W` = `input_size`, by default the detector's `image_size`) and
    gives, in this order, `locations` `(1, N, 4)` normalized `(ymin, xmin,
    ymax, xmax)`, `classes` `(1, N)` (`predict`'s label minus 1),
    `scores` `(1, N)` and `num_detections` `(1,)`, all float32; `N` is
    `max_detections`. With regular NMS (the default) the detections are
    `predict`'s best `N` (same thresholds: the detector's
    `score_threshold`, `iou_threshold` and `topk_candidates`), its pixel
    `xyxy` boxes divided by the image's width and height. Needs the
    TensorFlow backend.

    Args:
        model: the detector.
        path: the `.tflite` file to write.
        input_size: None (the detector's `image_size`), an int or
            `(height, width)`.
        int8: post-training int8 quantization of the network, calibrated
            on `calibration` as `export_tflite` does; softmax, box decoding
            and the op stay float.
        calibration: float32 images `(count, H, W, 3)`, raw 0..255.
        float_ops: network ops left float in an int8 file (default
            `DEFAULT_FLOAT_OPS`, hard-swish; `()` for every network op in
            int8).
        max_detections: the op's `max_detections`; default `min(100,
            model.max_detections)` (see `op_attributes`).
        regular_nms: per-class NMS as `predict` (True) or the op's fast,
            class-agnostic NMS (False).
        metadata: add MediaPipe Tasks metadata (labels: the detector's
            `class_names` without the background, else "1", "2", ...; the
            raw-pixel input), so that MediaPipe's `vision.ObjectDetector`
            runs the file with no options (`litert_metadata`); without the
            `mediapipe` package the file is written without it, with a
            warning.

    Returns:
        The path written.

    Example:

    ```python
    # not run: converts for about a minute
    from ai_edge_litert.interpreter import Interpreter
    export_tflite_detector(detector, "det.tflite")
    runner = Interpreter("det.tflite").get_signature_runner()
    out = runner(images=image[None].astype("float32"))
    out["locations"], out["classes"], out["scores"], out["num_detections"]
    ```
    """
    flatbuffer = convert_tflite_detector(model, input_size, int8, calibration, float_ops, max_detections,
                                         regular_nms)
    if metadata:
        flatbuffer = _with_mediapipe_metadata(flatbuffer, model, path)
    with atomic_path(path) as staging:
        staging.write_bytes(flatbuffer)
    return Path(path)


def _with_mediapipe_metadata(flatbuffer: bytes, model: Any, path: Any) -> bytes:
    """`flatbuffer` with MediaPipe's metadata, or unchanged with a warning
    where mediapipe is missing or its writers do not import (as
    `litert_metadata.write_tflite` does for classifiers and segmenters)."""
    import importlib.util
    import warnings

    from mobilenetv3.export.litert_metadata import with_model_metadata

    if importlib.util.find_spec("mediapipe") is None:
        warnings.warn(f"{path}: written without MediaPipe metadata, which needs the `mediapipe` package: "
                      'pip install "mobilenetv3[mediapipe]"', stacklevel=3)
        return flatbuffer
    try:
        return with_model_metadata(flatbuffer, model)
    except ImportError as error:  # a mediapipe whose writers do not import
        warnings.warn(f"{path}: written without MediaPipe metadata: the installed mediapipe's metadata "
                      f"writers do not import ({error}).", stacklevel=3)
        return flatbuffer


def open_tflite_detector(
    path: str | os.PathLike, threads: int | None = None, bounding_box_format: str = "xyxy"
) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    """`predict(image)` of a file `export_tflite_detector` wrote, on LiteRT
    with `threads` threads (default every core): one image `(1, H, W, 3)`
    (or `(H, W, 3)`) float32 raw pixels at the file's input size in, the
    Keras detector's `predict` format out: `boxes` `(1, N, 4)` in
    `bounding_box_format` and pixels of that image, `confidence`, `labels`
    (`predict`'s ids, from 1) padded with -1 after `num_detections` `(1,)`.

    Example:

    ```python
    # not run: needs an exported detector
    predict = open_tflite_detector("det.tflite", threads=1)
    out = predict(image)        # image: (320, 320, 3) float32
    out["boxes"][0, :out["num_detections"][0]]
    ```
    """
    run = _litert_runner(path, threads)

    def predict(image: np.ndarray) -> dict[str, np.ndarray]:
        image = np.asarray(image, np.float32)
        image = image[None] if image.ndim == 3 else image
        outputs = run(image)
        return decode_op_outputs(outputs, image.shape[1:3], bounding_box_format)

    return predict


def decode_op_outputs(
    outputs: dict[str, np.ndarray], image_size: tuple[int, int], bounding_box_format: str = "xyxy"
) -> dict[str, np.ndarray]:
    """The op's outputs (`locations`, `classes`, `scores`,
    `num_detections`) in the Keras detector's `predict` format for an image
    of `image_size` (height, width); see `open_tflite_detector`.

    Example:

    ```python
    outputs = {"locations": np.array([[[0.1, 0.2, 0.5, 0.6]]]), "classes": np.array([[0.0]]),
               "scores": np.array([[0.9]]), "num_detections": np.array([1.0])}
    decode_op_outputs(outputs, (100, 200))["boxes"]  # [[[40., 10., 120., 50.]]]
    ```
    """
    from mobilenetv3.detection.boxes import check_box_format, from_xyxy

    check_box_format(bounding_box_format)
    height, width = image_size
    ymin, xmin, ymax, xmax = (np.asarray(outputs["locations"], np.float32)[..., i] for i in range(4))
    boxes = np.stack([xmin * width, ymin * height, xmax * width, ymax * height], axis=-1)
    boxes = keras.ops.convert_to_numpy(from_xyxy(boxes, bounding_box_format, height, width))
    count = np.asarray(outputs["num_detections"]).astype(np.int32).reshape(-1)
    real = np.arange(boxes.shape[1])[None, :] < count[:, None]
    labels = np.asarray(outputs["classes"]).astype(np.int32) + 1
    return {
        "boxes": np.where(real[..., None], boxes, -1).astype(np.float32),
        "confidence": np.where(real, outputs["scores"], -1).astype(np.float32),
        "labels": np.where(real, labels, -1).astype(np.int32),
        "num_detections": count,
    }


def time_tflite_detector(
    path: str | os.PathLike, runs: int = 50, threads: int | None = None
) -> dict[str, float]:
    """Time a file `export_tflite_detector` wrote on LiteRT, network and
    postprocessing together, on one image of its input size (random
    pixels; after 3 warm-up calls): `median_ms`, `min_ms`, `runs`,
    `threads`, `num_detections` (of the last call). For MediaPipe end to
    end on the same file: `litert_metadata.open_mediapipe(path, "detector")`.

    Example:

    ```python
    # not run: needs an exported detector
    time_tflite_detector("det.tflite", runs=100, threads=1)  # {'median_ms': ..., ...}
    ```
    """
    import gc
    import time

    if runs < 1:
        raise ValueError(f"`runs` must be at least 1; got {runs}.")
    threads = threads or os.cpu_count() or 1
    run = _litert_runner(path, threads)
    image = np.random.default_rng(0).uniform(0, 255, run.input_shape).astype(np.float32)
    for _ in range(3):
        outputs = run(image)
    seconds = []
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()  # as `timeit` (and `export.speed.timed`) do
    try:
        for _ in range(runs):
            start = time.perf_counter()
            run(image)
            seconds.append(time.perf_counter() - start)
    finally:
        if enabled:
            gc.enable()
    return {"median_ms": 1000 * float(np.median(seconds)), "min_ms": 1000 * float(np.min(seconds)), "runs": runs,
            "threads": threads, "num_detections": int(outputs["num_detections"][0])}


def _litert_runner(path: str | os.PathLike, threads: int | None) -> Any:
    """`run(images) -> {output name: array}` on LiteRT's signature runner,
    with `run.input_shape`. (Not `runtimes.open_export`: `runtimes` imports
    `formats`, which imports this module.)"""
    from mobilenetv3.core.utils import import_optional

    module = import_optional("ai_edge_litert.interpreter", "tflite", "Running a LiteRT export")
    interpreter = module.Interpreter(str(path), num_threads=threads or os.cpu_count() or 1)
    runner = interpreter.get_signature_runner()
    (name,) = runner.get_input_details()

    def run(images: np.ndarray) -> dict[str, np.ndarray]:
        return runner(**{name: images})

    run.input_shape = tuple(runner.get_input_details()[name]["shape"])
    return run
