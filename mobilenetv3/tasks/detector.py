"""`MobileNetV3ObjectDetector`: SSDLite, the MobileNetV3 paper's detector."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import keras
from keras import ops

from mobilenetv3 import detection
from mobilenetv3.core import validation
from mobilenetv3.core.utils import check_choice
from mobilenetv3.detection.anchors import boxes_per_location, default_boxes
from mobilenetv3.detection.boxes import to_xyxy
from mobilenetv3.nets.backbone import MobileNetV3Backbone, check_channels_last
from mobilenetv3.nets.layers import BatchNormalization, Conv2D, DepthwiseConv2D, conv_padding
from mobilenetv3.tasks.task import MobileNetV3Task
from mobilenetv3.weights import Checkpoint

# torchvision's SSDLite: BatchNorm eps 1e-3 and momentum 0.03 (Keras 0.97),
# N(0, 0.03) initial conv weights, 512/256/256/128 extra maps, ratios [2, 3].
HEAD_BN_MOMENTUM = 0.97
HEAD_INIT_STDDEV = 0.03
EXTRA_FILTERS = (512, 256, 256, 128)
ASPECT_RATIOS = (2.0, 3.0)


@keras.saving.register_keras_serializable(package="mobilenetv3")
class ResizeImages(keras.layers.Layer):
    """Bilinear resize to a fixed `size` (height, width), half-pixel centres,
    no antialiasing: PyTorch's `F.interpolate(..., mode="bilinear",
    align_corners=False)`, as torchvision's detection transform.

    (`keras.layers.Resizing` is not used: in Keras 3.15 a functional model
    holding it runs its BatchNorm layers in training mode when called
    without `training=`, updating their statistics.)

    Example:

    ```python
    ResizeImages((320, 320))(np.ones((1, 480, 640, 3))).shape  # (1, 320, 320, 3)
    ```
    """

    def __init__(self, size: Sequence[int], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.size = tuple(int(s) for s in size)

    def call(self, images: Any) -> Any:
        return ops.image.resize(images, self.size, interpolation="bilinear", antialias=False)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return (input_shape[0], *self.size, input_shape[3])

    def get_config(self) -> dict:
        return {**super().get_config(), "size": list(self.size)}


@keras.saving.register_keras_serializable(package="mobilenetv3")
class MobileNetV3ObjectDetector(MobileNetV3Task):
    """SSDLite object detection on a MobileNetV3 backbone.

    The architecture of torchvision's `ssdlite320_mobilenet_v3_large` (and
    the Small counterpart built the same way): the backbone's `C4` (the
    expansion output of the last stride-2 block, /16) and `C5` (its last
    1x1 conv, /32) features, then four extra blocks (1x1 conv -> depthwise
    3x3 stride 2 -> 1x1 conv, BatchNorm + ReLU6; 512/256/256/128 channels):
    six feature maps. On each, an SSDLite head for class logits and one for
    box regression (depthwise 3x3 + BatchNorm + ReLU6, then a 1x1 conv), six
    default boxes per position (SSD's scales 0.2 to 0.95, aspect ratios 2
    and 3), decoded by SSD's box coder (weights 10, 10, 5, 5).

    Images are raw 0..255 RGB of any size: the model resizes them
    (bilinear) to `image_size`; the backbone's `include_rescaling` /
    `preprocessing` then maps the pixels (torchvision's SSDLite uses
    `preprocessing="symmetric"`, [-1, 1]). Calling the model gives the raw
    head outputs `{"bbox_regression": (batch, num_boxes, 4), "cls_logits":
    (batch, num_boxes, num_classes)}` (keras-hub's names); `predict` gives
    detections in the caller's image coordinates and `bounding_box_format`:
    `{"boxes", "confidence", "labels", "num_detections"}`, sorted by
    confidence and padded per image with -1 (keras-hub's convention).

    Classes follow torchvision: `num_classes` counts the background, class
    0, so labels (in training data and in detections) are `1 ..
    num_classes - 1` (91 for torchvision's COCO model).

    Training (`fit`) takes images and keras-hub's padded targets `{"boxes":
    (batch, max_boxes, 4), "labels": (batch, max_boxes)}` (-1 labels pad),
    boxes in `bounding_box_format` and the images' own coordinates; the
    loss is SSD's (see `mobilenetv3.detection.ssd_loss`).

    Args:
        backbone: a `MobileNetV3Backbone` with `include_rescaling=True` and
            input height/width None or equal to `image_size`.
        num_classes: classes including the background (at least 1).
        bounding_box_format: one of `detection.BOX_FORMATS` ("xyxy",
            "yxyx", "xywh", "center_xywh", "center_yxhw" and their "rel_"
            forms) for targets and detections.
        image_size: the network's input (height, width), or one int (320).
        score_threshold: detections score above this (0.001).
        iou_threshold: per-class NMS threshold (0.55).
        max_detections: detections kept per image (300).
        topk_candidates: best boxes per class going into NMS (300).
        matching_iou_threshold: IoU for a default box to match a ground-truth
            box in training (0.5).
        negative_ratio: hard negatives per positive in the loss (3).
        classification_loss: "cross_entropy" (SSD, with hard-negative
            mining) or "focal" (softmax focal loss, no mining).
        **kwargs: passed to `keras.Model` (e.g. `name`).

    Example:

    ```python
    backbone = mobilenetv3.MobileNetV3LargeBackbone(reduced_tail=True, preprocessing="symmetric")
    model = mobilenetv3.MobileNetV3ObjectDetector(backbone, num_classes=91)
    model.count_params()  # 3440060, as torchvision's ssdlite320_mobilenet_v3_large
    detections = model.predict(np.zeros((1, 480, 640, 3)))
    detections["boxes"].shape  # (1, 300, 4)
    ```
    """

    kind = "detector"  # its row in `models.MODEL_CLASSES`

    def __init__(
        self,
        backbone: MobileNetV3Backbone,
        num_classes: int,
        bounding_box_format: str = "xyxy",
        image_size: int | Sequence[int] = 320,
        score_threshold: float = 0.001,
        iou_threshold: float = 0.55,
        max_detections: int = 300,
        topk_candidates: int = 300,
        matching_iou_threshold: float = 0.5,
        negative_ratio: float = 3.0,
        classification_loss: str = "cross_entropy",
        **kwargs: Any,
    ) -> None:
        validation.check_keywords(type(self).__name__, kwargs, (*_ARGUMENTS, *validation.KERAS_MODEL_KWARGS))
        num_classes = validation.check_int("num_classes", num_classes, 1, validation.MAX_CLASSES)
        detection.check_box_format(bounding_box_format)
        image_size = _image_size(image_size)
        _check_backbone(backbone, image_size)
        score_threshold = validation.check_number("score_threshold", score_threshold, 0, 1)
        iou_threshold = validation.check_number("iou_threshold", iou_threshold, 0, 1)
        matching_iou_threshold = validation.check_number("matching_iou_threshold", matching_iou_threshold, 0, 1)
        max_detections = validation.check_int("max_detections", max_detections, 1, validation.MAX_CLASSES)
        topk_candidates = validation.check_int("topk_candidates", topk_candidates, 1, validation.MAX_CLASSES)
        negative_ratio = validation.check_number("negative_ratio", negative_ratio, 0, validation.MAX_CLASSES)
        check_choice("classification_loss", classification_loss, detection.loss.CLASSIFICATION_LOSSES)

        dtype = backbone.dtype_policy
        inputs = keras.Input(shape=(None, None, 3), name="images")
        x = ResizeImages(image_size, name="resize", dtype=dtype)(inputs)
        features = backbone.feature_extractor(["C4", "C5"], name="ssdlite_features")(x)
        maps = [features["C4"], features["C5"]]
        builder = _HeadBuilder(backbone.padding, backbone.bn_epsilon, dtype)
        for index, filters in enumerate(EXTRA_FILTERS):
            maps.append(builder.extra_block(maps[-1], filters, f"extra_{index}"))
        per_location = boxes_per_location([ASPECT_RATIOS] * len(maps))
        outputs = {
            "bbox_regression": builder.head(maps, per_location, 4, "box_head"),
            "cls_logits": builder.head(maps, per_location, num_classes, "cls_head"),
        }
        super().__init__(backbone, inputs, outputs, **kwargs)
        self.grid_sizes = [tuple(int(s) for s in m.shape[1:3]) for m in maps]
        self.anchors = default_boxes(self.grid_sizes, image_size, [ASPECT_RATIOS] * len(maps))
        self.num_classes = num_classes
        self.bounding_box_format = bounding_box_format
        self.image_size = image_size
        self.score_threshold = score_threshold
        self.iou_threshold = iou_threshold
        self.max_detections = max_detections
        self.topk_candidates = topk_candidates
        self.matching_iou_threshold = matching_iou_threshold
        self.negative_ratio = negative_ratio
        self.classification_loss = classification_loss

    # -- inference ---------------------------------------------------------

    def decode_predictions(self, predictions: dict, images: Any) -> dict:
        """Detections (see the class docstring) from the raw outputs of
        `model(images)`, in the coordinates of `images`."""
        height, width = ops.shape(images)[1], ops.shape(images)[2]
        return detection.detect(
            predictions["cls_logits"],
            predictions["bbox_regression"],
            self.anchors,
            self.image_size,
            (height, width),
            self.bounding_box_format,
            self.score_threshold,
            self.iou_threshold,
            self.max_detections,
            self.topk_candidates,
        )

    def predict_step(self, *args: Any) -> Any:
        # `(data)`, or `(state, data)` on JAX, whose step also returns the state.
        outputs = super().predict_step(*args)
        x, _, _ = keras.utils.unpack_x_y_sample_weight(args[-1])
        if isinstance(outputs, tuple):
            return self.decode_predictions(outputs[0], x), outputs[1]
        return self.decode_predictions(outputs, x)

    # -- training ----------------------------------------------------------

    def compute_loss(
        self, x: Any = None, y: Any = None, y_pred: Any = None, sample_weight: Any = None, training: bool = True
    ) -> Any:
        """SSD loss (box + classification) of `y_pred` against targets `y`."""
        if sample_weight is not None:
            raise ValueError("MobileNetV3ObjectDetector does not support `sample_weight`.")
        if not isinstance(y, dict) or "boxes" not in y or "labels" not in y:
            raise ValueError("Detection targets `y` must be a dict with 'boxes' and 'labels'.")
        height, width = ops.shape(x)[1], ops.shape(x)[2]
        boxes = to_xyxy(y["boxes"], self.bounding_box_format, height, width)
        model_h, model_w = self.image_size
        scale = ops.stack([model_w / ops.cast(width, "float32"), model_h / ops.cast(height, "float32")] * 2)
        box_loss, class_loss = detection.ssd_loss(
            y_pred["cls_logits"],
            y_pred["bbox_regression"],
            boxes * scale,
            y["labels"],
            self.anchors,
            self.matching_iou_threshold,
            self.negative_ratio,
            self.classification_loss,
        )
        total = box_loss + class_loss
        for loss in self.losses:
            total = total + ops.cast(loss, "float32")
        return total

    def make_train_function(self, force: bool = False) -> Any:
        # Build the optimizer's slots eagerly: TensorFlow's trainer otherwise
        # creates them inside the first trace of the train step (slowly, one
        # variable at a time in the graph) and then traces the step again.
        if self.optimizer is not None and not self.optimizer.built:
            self.optimizer.build(self.trainable_variables)
        return super().make_train_function(force)

    def fit(self, x: Any = None, y: Any = None, *args: Any, **kwargs: Any) -> Any:
        """`keras.Model.fit`; the training targets are checked
        (`detection.check_targets`: labels in `[1, num_classes)` or -1,
        boxes inside their image with positive width and height): arrays
        before training, a `tf.data.Dataset` of `(images, targets)` batches
        as each batch is read (a bad batch stops `fit` with the same
        ValueError). Other inputs (generators, `PyDataset`) are not checked."""
        errors: list[str] = []
        if y is not None and hasattr(x, "shape"):
            detection.check_targets(tuple(x.shape), y, self.bounding_box_format, self.num_classes)
        elif type(x).__module__.startswith("tensorflow") and hasattr(x, "element_spec"):
            x = detection.checked_dataset(x, self.bounding_box_format, self.num_classes, errors)
        try:
            return super().fit(x, y, *args, **kwargs)
        except Exception:
            if errors:
                raise ValueError(errors[0]) from None
            raise

    # -- presets -----------------------------------------------------------

    @classmethod
    def head_args_from_checkpoint(cls, checkpoint: Checkpoint) -> dict[str, Any]:
        """A torchvision SSDLite file: its 320x320 input (the defaults
        are torchvision's postprocessing)."""
        return {"image_size": 320} if checkpoint.head == "ssdlite" else {}

    def head_config(self) -> dict[str, Any]:
        return {**super().head_config(), "image_size": list(self.image_size)}


class _HeadBuilder:
    """The extra blocks and prediction heads, in torchvision's layout."""

    def __init__(self, padding: str, bn_epsilon: float, dtype: Any) -> None:
        self.padding = padding
        self.bn_epsilon = bn_epsilon
        self.dtype = dtype

    def _conv(self, x: Any, filters: int | None, name: str, stride: int = 1, bias: bool = False) -> Any:
        init = keras.initializers.RandomNormal(stddev=HEAD_INIT_STDDEV)
        if filters is None:  # depthwise 3x3
            pad, mode = conv_padding(3, stride, 1, self.padding)
            if pad:
                x = keras.layers.ZeroPadding2D(pad, name=f"{name}_pad", dtype=self.dtype)(x)
            layer = DepthwiseConv2D(3, strides=stride, padding=mode, use_bias=False,
                                    depthwise_initializer=init, name=name, dtype=self.dtype)
        else:
            layer = Conv2D(filters, 1, use_bias=bias, kernel_initializer=init, name=name, dtype=self.dtype)
        return layer(x)

    def _bn_relu6(self, x: Any, name: str) -> Any:
        x = BatchNormalization(
            epsilon=self.bn_epsilon, momentum=HEAD_BN_MOMENTUM, name=f"{name}_BatchNorm", dtype=self.dtype
        )(x)
        return keras.layers.ReLU(max_value=6.0, name=f"{name}_relu6", dtype=self.dtype)(x)

    def extra_block(self, x: Any, filters: int, name: str) -> Any:
        x = self._bn_relu6(self._conv(x, filters // 2, f"{name}_expand"), f"{name}_expand")
        x = self._bn_relu6(self._conv(x, None, f"{name}_depthwise", stride=2), f"{name}_depthwise")
        return self._bn_relu6(self._conv(x, filters, f"{name}_project"), f"{name}_project")

    def head(self, maps: list, per_location: list[int], columns: int, name: str) -> Any:
        outputs = []
        for index, (x, boxes) in enumerate(zip(maps, per_location)):
            prefix = f"{name}_{index}"
            x = self._bn_relu6(self._conv(x, None, f"{prefix}_depthwise"), f"{prefix}_depthwise")
            x = self._conv(x, boxes * columns, f"{prefix}_conv", bias=True)
            outputs.append(keras.layers.Reshape((-1, columns), name=f"{prefix}_reshape", dtype=self.dtype)(x))
        return keras.layers.Concatenate(axis=1, name=name, dtype="float32")(outputs)


def _image_size(value: Any) -> tuple[int, int]:
    size = (value, value) if validation.is_integer(value) else value
    ok = isinstance(size, (list, tuple)) and len(size) == 2 and all(
        validation.is_integer(s) and 32 <= s <= validation.MAX_INPUT_SIDE for s in size
    )
    if not ok:
        raise ValueError(
            f"`image_size` must be an int or (height, width), each from 32 to {validation.MAX_INPUT_SIDE}; "
            f"got {value!r}."
        )
    return int(size[0]), int(size[1])


def _check_backbone(backbone: Any, image_size: tuple[int, int]) -> None:
    check_channels_last("MobileNetV3ObjectDetector")
    if not isinstance(backbone, MobileNetV3Backbone):
        raise ValueError(f"`backbone` must be a MobileNetV3Backbone; got {type(backbone).__name__}.")
    if "C4" not in backbone.feature_layers:
        raise ValueError("`backbone` has no C4 tap (its last stride-2 block has no expansion), which SSDLite needs.")
    fixed = tuple(backbone.input_shape[1:3])
    if fixed not in ((None, None), image_size):
        raise ValueError(
            f"`backbone` takes {fixed[0]}x{fixed[1]} images but the detector's `image_size` is "
            f"{image_size[0]}x{image_size[1]}: build the backbone with input_shape=(None, None, 3)."
        )


_ARGUMENTS = tuple(
    p.name for p in inspect.signature(MobileNetV3ObjectDetector.__init__).parameters.values()
    if p.kind is p.POSITIONAL_OR_KEYWORD and p.name != "self"
)
