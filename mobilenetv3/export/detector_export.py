"""Deployment of `MobileNetV3ObjectDetector`: the raw network's default boxes
beside every export, an end-to-end ONNX graph with SSD decoding and per-class
`NonMaxSuppression`, and a numpy decoder for raw-output runtimes (LiteRT,
OpenVINO, ONNX without postprocessing).

The raw network takes raw 0..255 images of any size (it resizes them to its
`image_size`) and gives `bbox_regression` `(batch, num_boxes, 4)` and
`cls_logits` `(batch, num_boxes, num_classes)`; the default boxes it
regresses against, `xyxy` pixels of the model input, are written beside the
exported file as `<file>.anchors.npy` (`anchors_path`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import keras
import numpy as np

from mobilenetv3 import detection
from mobilenetv3.core.utils import atomic_path
from mobilenetv3.detection.boxes import LOG_SIZE_CLIP, SSD_BOX_WEIGHTS
from mobilenetv3.tasks.detector import MobileNetV3ObjectDetector

DETECTION_OUTPUTS = ("boxes", "confidence", "labels", "num_detections")


def is_detector(model: Any) -> bool:
    """Whether `model` is a `MobileNetV3ObjectDetector`."""
    return isinstance(model, MobileNetV3ObjectDetector)


def anchors_path(path: str | os.PathLike) -> Path:
    """Where the default boxes of the detector exported to `path` lie:
    `<path>.anchors.npy`."""
    return Path(str(path).rstrip("/\\") + ".anchors.npy")


def write_anchors(model: MobileNetV3ObjectDetector, path: str | os.PathLike) -> Path:
    """Write the detector's default boxes `(num_boxes, 4)` float32 `xyxy`
    pixels of its input as `anchors_path(path)`, atomically."""
    target = anchors_path(path)
    with atomic_path(target) as staging, open(staging, "wb") as file:
        np.save(file, np.asarray(model.anchors, np.float32))
    return target


def decode_raw_outputs(
    cls_logits: Any,
    bbox_regression: Any,
    anchors: Any,
    model_size: tuple[int, int],
    image_size: tuple[int, int],
    *,
    bounding_box_format: str = "xyxy",
    score_threshold: float = 0.001,
    iou_threshold: float = 0.55,
    max_detections: int = 300,
    topk_candidates: int = 300,
) -> dict[str, np.ndarray]:
    """Detections (numpy) from the raw outputs of an exported detector: the
    same decoding, per-class NMS and padding as the Keras model's
    `predict` (`mobilenetv3.detection.detect`).

    Args:
        cls_logits: `(batch, num_boxes, num_classes)` from the runtime.
        bbox_regression: `(batch, num_boxes, 4)` from the runtime.
        anchors: the default boxes, an array or the `.anchors.npy` path.
        model_size: the detector's `image_size` (height, width).
        image_size: the (height, width) of the images that were fed in.
        bounding_box_format, score_threshold, iou_threshold,
            max_detections, topk_candidates: as the detector's arguments.

    Returns:
        `{"boxes", "confidence", "labels", "num_detections"}` numpy arrays.

    Example:

    ```python
    interpreter = Interpreter("det.tflite")
    runner = interpreter.get_signature_runner()
    raw = runner(images=images)
    out = decode_raw_outputs(raw["cls_logits"], raw["bbox_regression"], "det.tflite.anchors.npy",
                             (320, 320), images.shape[1:3])
    ```
    """
    if isinstance(anchors, (str, os.PathLike)):
        anchors = np.load(anchors, allow_pickle=False)
    out = detection.detect(
        np.asarray(cls_logits, np.float32), np.asarray(bbox_regression, np.float32), np.asarray(anchors, np.float32),
        tuple(model_size), tuple(image_size), bounding_box_format, score_threshold, iou_threshold, max_detections,
        topk_candidates,
    )
    return {key: keras.ops.convert_to_numpy(value) for key, value in out.items()}


class _Nodes:
    """Appends nodes and initializers to an `onnx.GraphProto`."""

    def __init__(self, graph: Any) -> None:
        from onnx import helper, numpy_helper

        self.graph, self.helper, self.numpy_helper = graph, helper, numpy_helper
        self.count = 0

    def const(self, array: Any, dtype: Any = np.float32) -> str:
        name = self._name("postprocess/const")
        self.graph.initializer.append(self.numpy_helper.from_array(np.asarray(array, dtype), name))
        return name

    def add(self, op_type: str, inputs: list[str], outputs: int = 1, name: str | None = None, **attrs: Any) -> Any:
        names = [name] if name else [self._name(f"postprocess/{op_type}") for _ in range(outputs)]
        self.graph.node.append(self.helper.make_node(op_type, inputs, names, name=self._name(op_type), **attrs))
        return names[0] if outputs == 1 else names

    def _name(self, base: str) -> str:
        self.count += 1
        return f"{base}_{self.count}"


def _decode(g: _Nodes, regression: str, anchors: np.ndarray, model_size: tuple[int, int]) -> str:
    """SSD box decoding and clipping to the model input, as `decode_boxes`."""
    anchors = anchors.astype(np.float32)
    sizes = anchors[:, 2:] - anchors[:, :2]
    centres = anchors[:, :2] + 0.5 * sizes
    deltas = g.add("Div", [regression, g.const(SSD_BOX_WEIGHTS)])
    shift, scale = g.add("Split", [deltas, g.const([2, 2], np.int64)], outputs=2, axis=2)
    centre = g.add("Add", [g.add("Mul", [shift, g.const(sizes)]), g.const(centres)])
    size = g.add("Mul", [g.add("Exp", [g.add("Min", [scale, g.const(LOG_SIZE_CLIP)])]), g.const(sizes)])
    half = g.add("Mul", [size, g.const(0.5)])
    boxes = g.add("Concat", [g.add("Sub", [centre, half]), g.add("Add", [centre, half])], axis=2)
    height, width = model_size
    return g.add("Min", [g.add("Max", [boxes, g.const(0.0)]), g.const([width, height, width, height])])


def append_postprocess(proto: Any, model: MobileNetV3ObjectDetector, channels_first: bool = False) -> Any:
    """Replace the raw outputs of the detector's ONNX graph with detections.

    Softmax scores; per foreground class the `topk_candidates` best boxes
    above `score_threshold` (`TopK`); ONNX `NonMaxSuppression` with one
    "batch" per (image, class), so suppression is per class as in
    torchvision; the best `max_detections` kept boxes over all classes,
    rescaled to the input image. Outputs: `boxes` `(batch, max_detections,
    4)` float32 pixel `xyxy` of the input image, `confidence` float32 and
    `labels` int32 `(batch, max_detections)` padded with -1, and
    `num_detections` int32 `(batch,)`: what the Keras model's `predict`
    gives with `bounding_box_format="xyxy"`.
    """
    from onnx import TensorProto

    g = _Nodes(proto.graph)
    num_boxes, foreground = len(model.anchors), model.num_classes - 1
    if foreground < 1:
        raise ValueError("The detector has no foreground class (num_classes=1): nothing to detect.")
    k = min(model.topk_candidates, num_boxes)
    count = min(model.max_detections, foreground * k)
    int64 = np.int64
    scores = g.add("Softmax", ["cls_logits"], axis=-1)
    scores = g.add("Slice", [scores, g.const([1], int64), g.const([model.num_classes], int64), g.const([2], int64)])
    per_class = g.add("Transpose", [scores], perm=[0, 2, 1])  # (batch, classes, boxes)
    threshold = g.const(model.score_threshold)
    per_class = g.add("Where", [g.add("Greater", [per_class, threshold]), per_class, g.const(-1.0)])
    top_scores, top_index = g.add("TopK", [per_class, g.const([k], int64)], outputs=2, axis=-1)
    boxes = _decode(g, "bbox_regression", model.anchors, model.image_size)
    flat_index = g.add("Unsqueeze", [g.add("Reshape", [top_index, g.const([0, -1], int64)]), g.const([2], int64)])
    candidates = g.add("GatherND", [boxes, flat_index], batch_dims=1)  # (batch, classes * k, 4)
    selected = g.add("NonMaxSuppression", [
        g.add("Reshape", [candidates, g.const([-1, k, 4], int64)]),
        g.add("Reshape", [top_scores, g.const([-1, 1, k], int64)]),
        g.const([k], int64), g.const([model.iou_threshold]), threshold,
    ])
    rows = g.add("Reshape", [top_scores, g.const([-1, k], int64)])  # (batch * classes, k)
    ones = g.add("ConstantOfShape", [g.add("Slice", [g.add("Shape", [selected]), g.const([0], int64),
                                                     g.const([1], int64)])],
                 value=g.helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0]))
    zeros = g.add("ConstantOfShape", [g.add("Shape", [rows])],
                  value=g.helper.make_tensor("zero", TensorProto.FLOAT, [1], [0.0]))
    kept = g.add("ScatterND", [zeros, g.add("Gather", [selected, g.const([0, 2], int64)], axis=1), ones])
    kept = g.add("Reshape", [kept, g.const([-1, foreground * k], int64)])
    kept_scores = g.add("Where", [g.add("Greater", [kept, g.const(0.5)]),
                                  g.add("Reshape", [rows, g.const([-1, foreground * k], int64)]), g.const(-1.0)])
    confidence, order = g.add("TopK", [kept_scores, g.const([count], int64)], outputs=2, axis=1)
    boxes = g.add("GatherND", [candidates, g.add("Unsqueeze", [order, g.const([2], int64)])], batch_dims=1)
    labels = g.add("Gather", [g.const(np.repeat(np.arange(1, foreground + 1), k), np.int32), order])
    found = g.add("Cast", [g.add("ReduceSum", [kept, g.const([1], int64)], keepdims=0)], to=TensorProto.INT32)
    num_detections = g.add("Min", [found, g.const([count], np.int32)], name="num_detections")
    boxes = g.add("Mul", [boxes, _image_ratio(g, model.image_size, channels_first)])
    _pad_outputs(g, {"boxes": boxes, "confidence": confidence, "labels": labels}, num_detections,
                 model.max_detections - count, model.max_detections)
    del proto.graph.output[:]
    make = g.helper.make_tensor_value_info
    proto.graph.output.extend([
        make("boxes", TensorProto.FLOAT, [None, model.max_detections, 4]),
        make("confidence", TensorProto.FLOAT, [None, model.max_detections]),
        make("labels", TensorProto.INT32, [None, model.max_detections]),
        make("num_detections", TensorProto.INT32, [None]),
    ])
    return proto


def _image_ratio(g: _Nodes, model_size: tuple[int, int], channels_first: bool) -> str:
    """`[W/w, H/h, W/w, H/h]`: input image size over the model's input size."""
    from onnx import TensorProto

    first = 2 if channels_first else 1
    spatial = g.add("Cast", [g.add("Slice", [g.add("Shape", ["images"]), g.const([first], np.int64),
                                             g.const([first + 2], np.int64)])], to=TensorProto.FLOAT)
    ratio = g.add("Div", [spatial, g.const(model_size)])  # (H/h, W/w)
    return g.add("Gather", [ratio, g.const([1, 0, 1, 0], np.int64)])


def _pad_outputs(g: _Nodes, outputs: dict[str, str], num_detections: str, extra: int, size: int) -> None:
    """Pad to `size` detections and set those past `num_detections` to -1."""
    real = g.add("Less", [g.const(np.arange(size)[None], np.int32),
                          g.add("Unsqueeze", [num_detections, g.const([1], np.int64)])])
    for name, value in outputs.items():
        rank = 3 if name == "boxes" else 2
        dtype = np.int32 if name == "labels" else np.float32
        if extra:
            pads = [0, 0] + ([0] if rank == 3 else []) + [0, extra] + ([0] if rank == 3 else [])
            value = g.add("Pad", [value, g.const(pads, np.int64), g.const(-1, dtype)])
        mask = real if rank == 2 else g.add("Unsqueeze", [real, g.const([2], np.int64)])
        g.add("Where", [mask, value, g.const(-1, dtype)], name=name)


def build_detector_onnx(
    model: MobileNetV3ObjectDetector,
    postprocess: bool = False,
    channels_first: bool = False,
    input_size: int | tuple[int, int] | None = None,
) -> Any:
    """The `onnx.ModelProto` of a detector: raw outputs, or detections with
    `postprocess=True` (see `append_postprocess`)."""
    from mobilenetv3.export.onnx_export import build_onnx_model

    if not is_detector(model):
        raise ValueError(f"`model` must be a MobileNetV3ObjectDetector; got {type(model).__name__}.")
    proto = build_onnx_model(model, channels_first=channels_first, input_size=input_size)
    return append_postprocess(proto, model, channels_first) if postprocess else proto


def export_onnx_detector(
    model: MobileNetV3ObjectDetector,
    path: str | os.PathLike,
    *,
    postprocess: bool = False,
    channels_first: bool = False,
    input_size: int | tuple[int, int] | None = None,
) -> Path:
    """Write a detector as ONNX, atomically, with its default boxes beside it.

    Without `postprocess` the graph is the raw network (images in,
    `bbox_regression` and `cls_logits` out; decode with
    `decode_raw_outputs` and `<path>.anchors.npy`); with `postprocess=True`
    it ends in SSD decoding and per-class `NonMaxSuppression` and gives
    `boxes` (pixel `xyxy` of the input image), `confidence`, `labels` and
    `num_detections`, as `predict` with `bounding_box_format="xyxy"`, using
    the model's `score_threshold`, `iou_threshold`, `topk_candidates` and
    `max_detections`.

    Example:

    ```python
    export_onnx_detector(model, "det.onnx", postprocess=True)
    session = onnxruntime.InferenceSession("det.onnx")
    boxes, confidence, labels, count = session.run(None, {"images": images})
    ```
    """
    import onnx

    proto = build_detector_onnx(model, postprocess, channels_first, input_size)
    onnx.checker.check_model(proto)
    with atomic_path(path) as staging:
        onnx.save(proto, str(staging))
    write_anchors(model, path)
    return Path(path)
