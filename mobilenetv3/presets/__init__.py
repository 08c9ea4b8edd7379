"""Presets and loading: the registry of named presets (`registry`, whose
names this package re-exports), preset folders on disk (`folders`), the one
loader with its table of model classes (`loader`), converting other
libraries' checkpoints into preset folders (`conversion`) and preparing
images as a preset says (`preprocessing`).

Example:

```python
from mobilenetv3 import presets

presets.find("mobilenet_v3_small_imagenet").params  # 939120
```
"""

from mobilenetv3.presets.registry import (
    CLASSIFIER_PRESETS,
    KERAS_APPLICATIONS_URL,
    PRESET_TABLES,
    PRESETS,
    ImagePolicy,
    Preprocessing,
    Preset,
    WeightsSource,
    all_presets,
    backbone_presets,
    classifier_presets,
    describe,
    find,
    get,
    task_presets,
)

__all__ = [
    "CLASSIFIER_PRESETS",
    "KERAS_APPLICATIONS_URL",
    "PRESETS",
    "PRESET_TABLES",
    "ImagePolicy",
    "Preprocessing",
    "Preset",
    "WeightsSource",
    "all_presets",
    "backbone_presets",
    "classifier_presets",
    "describe",
    "find",
    "get",
    "task_presets",
]
