"""Task models built on a `MobileNetV3Backbone`: each is a `MobileNetV3Task`
subclass in its own file, with its row (kind -> class) in the loader's
`mobilenetv3.presets.loader.MODEL_CLASSES`."""

from mobilenetv3.tasks.classifier import MobileNetV3ImageClassifier
from mobilenetv3.tasks.detector import MobileNetV3ObjectDetector
from mobilenetv3.tasks.segmenter import MobileNetV3ImageSegmenter
from mobilenetv3.tasks.task import MobileNetV3Task

__all__ = [
    "MobileNetV3ImageClassifier",
    "MobileNetV3ImageSegmenter",
    "MobileNetV3ObjectDetector",
    "MobileNetV3Task",
]
