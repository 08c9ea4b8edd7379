"""MobileNetV3 for Keras 3: keras-cv-compatible backbones, presets and weights."""

from mobilenetv3.aliases import MobileNetV3LargeBackbone, MobileNetV3SmallBackbone
from mobilenetv3.architectures import make_divisible
from mobilenetv3.backbone import MobileNetV3Backbone
from mobilenetv3.layers import SqueezeAndExcite2D
from mobilenetv3.tasks import MobileNetV3ImageClassifier

__version__ = "0.1.0"

__all__ = [
    "MobileNetV3Backbone",
    "MobileNetV3ImageClassifier",
    "MobileNetV3LargeBackbone",
    "MobileNetV3SmallBackbone",
    "SqueezeAndExcite2D",
    "make_divisible",
]
