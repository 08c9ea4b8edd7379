"""Task models built on a `MobileNetV3Backbone`."""

from mobilenetv3.tasks.classifier import MobileNetV3ImageClassifier
from mobilenetv3.tasks.detector import MobileNetV3ObjectDetector
from mobilenetv3.tasks.segmenter import MobileNetV3ImageSegmenter

__all__ = ["MobileNetV3ImageClassifier", "MobileNetV3ImageSegmenter", "MobileNetV3ObjectDetector"]
