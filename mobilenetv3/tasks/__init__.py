"""Task models built on a `MobileNetV3Backbone`."""

from mobilenetv3.tasks.classifier import MobileNetV3ImageClassifier

__all__ = ["MobileNetV3ImageClassifier"]
