"""Task models built on a `MobileNetV3Backbone`: each is a `MobileNetV3Task`
subclass registered with the model factory (`mobilenetv3.presets.loader`) under its
kind."""

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
