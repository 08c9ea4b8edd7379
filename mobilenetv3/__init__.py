"""MobileNetV3 for Keras 3: keras-cv-compatible backbones, presets and weights."""

import os as _os
import sys as _sys

if "tensorflow" not in _sys.modules:  # keep TensorFlow's C++ start-up chatter out of the way
    _os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from mobilenetv3.core.lazy import lazy_attributes as _lazy_attributes
from mobilenetv3.version import __version__ as __version__

# Public name -> the module defining it.
_EXPORTS = {
    "MobileNetV3Backbone": "mobilenetv3.nets.backbone",
    "MobileNetV3ImageClassifier": "mobilenetv3.tasks",
    "MobileNetV3ImageSegmenter": "mobilenetv3.tasks",
    "MobileNetV3LargeBackbone": "mobilenetv3.nets.aliases",
    "MobileNetV3ObjectDetector": "mobilenetv3.tasks",
    "MobileNetV3SmallBackbone": "mobilenetv3.nets.aliases",
    "MobileNetV3Task": "mobilenetv3.tasks",
    "SqueezeAndExcite2D": "mobilenetv3.nets.layers",
    "decode_predictions": "mobilenetv3.core.decode",
    "fold_batch_norm": "mobilenetv3.runtime.batch_norm_folding",
    "load_model": "mobilenetv3.presets.loader",
    "make_divisible": "mobilenetv3.core.architectures",
    "quantize_aware": "mobilenetv3.quantization",
}
__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = _lazy_attributes(__name__, _EXPORTS)


def _started_as_command() -> bool:
    """Whether this import starts the `mobilenetv3` command (the console
    script, or `python -m mobilenetv3`, whose argv[0] is "-m" while the
    package is imported): it imports Keras only for the subcommand it runs."""
    return _os.path.basename(_sys.argv[0] if _sys.argv else "") in ("mobilenetv3", "-m")


if not _started_as_command():
    # Everything at once, as before: importing the package registers its
    # Keras classes, so keras.saving.load_model reads .keras files of them.
    for _name in __all__:
        __getattr__(_name)
