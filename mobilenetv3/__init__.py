"""MobileNetV3 for Keras 3: keras-cv-compatible backbones, presets and weights."""

import os as _os
import sys as _sys

if "tensorflow" not in _sys.modules:  # keep TensorFlow's C++ start-up chatter out of the way
    _os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from mobilenetv3.aliases import MobileNetV3LargeBackbone, MobileNetV3SmallBackbone
from mobilenetv3.architectures import make_divisible
from mobilenetv3.backbone import MobileNetV3Backbone
from mobilenetv3.batch_norm_folding import fold_batch_norm
from mobilenetv3.decode import decode_predictions
from mobilenetv3.layers import SqueezeAndExcite2D
from mobilenetv3.tasks import (
    MobileNetV3ImageClassifier,
    MobileNetV3ImageSegmenter,
    MobileNetV3ObjectDetector,
    MobileNetV3Task,
)
from mobilenetv3.version import __version__ as __version__

__all__ = [
    "MobileNetV3Backbone",
    "MobileNetV3ImageClassifier",
    "MobileNetV3ImageSegmenter",
    "MobileNetV3LargeBackbone",
    "MobileNetV3ObjectDetector",
    "MobileNetV3SmallBackbone",
    "MobileNetV3Task",
    "SqueezeAndExcite2D",
    "decode_predictions",
    "fold_batch_norm",
    "make_divisible",
]
