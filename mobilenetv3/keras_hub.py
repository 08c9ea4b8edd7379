"""keras-hub integration: our backbone as a `keras_hub.models.FeaturePyramidBackbone`.

Importing this module needs keras-hub (`pip install keras-hub`); the rest of
the package never imports it. It registers two classes with Keras
serialization (package "mobilenetv3"), so that keras-hub's own
`from_preset` finds them in a folder written by keras-hub's
`save_to_preset`:

- `MobileNetV3HubBackbone`: a `MobileNetV3Backbone` that is also a
  `keras_hub.models.FeaturePyramidBackbone` (`pyramid_outputs` P1..P5,
  `image_shape`, keras-hub's `save_to_preset(preset_dir, max_shard_size)`
  and `from_preset`). Pass it as the `backbone` of
  `keras_hub.models.ImageClassifier` or as the `image_encoder` of
  `DeepLabV3Backbone` / `RetinaNetBackbone` (and any other consumer of
  `pyramid_outputs`).
- `MobileNetV3HubImageClassifier`: `keras_hub.models.ImageClassifier` with
  `backbone_cls = MobileNetV3HubBackbone`, which keras-hub needs to map a
  saved classifier back to a task class
  (`keras_hub.models.ImageClassifier.from_preset(folder)`).

The detection and segmentation tasks keep keras-hub's own backbone classes
(`RetinaNetBackbone`, `DeepLabV3Backbone`), whose presets nest ours as the
`image_encoder`. `BASNetBackbone` is built from ResNet's layer names
(`pool1_pool`, `stack*_block*_add`) and takes no other encoder.

Example:

```python
import keras_hub
import numpy as np
from mobilenetv3.keras_hub import MobileNetV3HubBackbone

encoder = MobileNetV3HubBackbone.from_preset("mobilenet_v3_small", load_weights=False)
backbone = keras_hub.models.DeepLabV3Backbone(
    image_encoder=encoder,
    low_level_feature_key="P2",
    spatial_pyramid_pooling_key="P5",
    dilation_rates=[6, 12, 18],
    upsampling_size=8,
)
segmenter = keras_hub.models.DeepLabV3ImageSegmenter(backbone=backbone, num_classes=3)
segmenter.predict(np.zeros((1, 64, 64, 3)), verbose=0).shape  # (1, 64, 64, 3)
```
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import keras
import keras_hub

from mobilenetv3.nets.backbone import MobileNetV3Backbone
from mobilenetv3.presets import folders, loader

__all__ = ["MobileNetV3HubBackbone", "MobileNetV3HubImageClassifier", "is_keras_hub_preset"]


def is_keras_hub_preset(folder: str | os.PathLike) -> bool:
    """Whether `folder` holds a keras-hub preset of a keras-hub `Backbone`
    class (its `config.json` names a class registered with Keras that
    subclasses `keras_hub.models.Backbone`)."""
    config = Path(folder) / folders.CONFIG_FILE
    if not config.is_file():
        return False
    try:
        name = json.loads(config.read_text())["registered_name"]
    except (ValueError, KeyError, TypeError):
        return False
    cls = keras.saving.get_registered_object(name)
    return isinstance(cls, type) and issubclass(cls, keras_hub.models.Backbone)


@keras.saving.register_keras_serializable(package="mobilenetv3")
class MobileNetV3HubBackbone(MobileNetV3Backbone, keras_hub.models.FeaturePyramidBackbone):
    """A `MobileNetV3Backbone` that keras-hub accepts as its own backbone.

    Same arguments, graph, weights and config as `MobileNetV3Backbone`;
    additionally a `keras_hub.models.FeaturePyramidBackbone`, with
    `image_shape` and keras-hub's preset format.

    Args:
        image_shape: keras-hub's name for `input_shape`, `(height, width,
            channels)`; when given it replaces `input_shape` (keras-hub's
            preset loaders pass it over a stored config, e.g.
            `keras_hub.models.ImageClassifier.from_preset(folder,
            image_shape=(224, 224, 3))`).
        **kwargs: the arguments of `MobileNetV3Backbone`.

    Example:

    ```python
    import keras_hub
    from mobilenetv3.keras_hub import MobileNetV3HubBackbone

    backbone = MobileNetV3HubBackbone.from_preset("mobilenet_v3_small", load_weights=False)
    classifier = keras_hub.models.ImageClassifier(backbone=backbone, num_classes=10)
    backbone.save_to_preset("my_backbone")  # keras-hub's layout
    same = keras_hub.models.Backbone.from_preset("my_backbone")
    ```
    """

    def __init__(self, *, image_shape: tuple[int | None, ...] | None = None, **kwargs: Any) -> None:
        if image_shape is not None:
            kwargs["input_shape"] = image_shape
        super().__init__(**kwargs)

    @property
    def image_shape(self) -> tuple:
        """The input image shape `(height, width, channels)` (keras-hub's name)."""
        return tuple(self.input_shape[1:])

    @classmethod
    def from_preset(
        cls, preset: str, load_weights: bool | None = None, **kwargs: Any
    ) -> MobileNetV3HubBackbone:
        """Build from a preset: a folder written by keras-hub's
        `save_to_preset` (loaded by keras-hub), or anything
        `MobileNetV3Backbone.from_preset` takes (registry names, our preset
        folders, `kaggle://` / `hf://` handles).

        Args:
            preset: preset name, folder or handle.
            load_weights: None loads weights when the preset has them; True
                requires them; False gives random initialization.
            **kwargs: config overrides, as `MobileNetV3Backbone.from_preset`;
                `image_shape` (keras-hub's name) for `input_shape`.

        Example:

        ```python
        backbone = MobileNetV3HubBackbone.from_preset("mobilenet_v3_small", load_weights=False)
        ```
        """
        if "image_shape" in kwargs:
            if "input_shape" in kwargs:
                raise ValueError(
                    "Pass `image_shape` (keras-hub's name) or `input_shape`, not both: they are the same argument."
                )
            kwargs["input_shape"] = kwargs.pop("image_shape")
        folder = folders.resolve_handle(preset)
        if os.path.isdir(folder) and is_keras_hub_preset(folder):
            hub_from_preset = keras_hub.models.Backbone.from_preset.__func__
            return hub_from_preset(cls, folder, load_weights=load_weights is not False, **kwargs)
        return loader.load_model(folder, cls, load_weights, **kwargs)

    def save_to_preset(self, preset_dir: str, max_shard_size: float | None = 10) -> None:
        """keras-hub's `Backbone.save_to_preset`: `config.json`,
        `model.weights.h5` (or shards above `max_shard_size` GB) and
        `metadata.json` in `preset_dir`.

        Example:

        ```python
        backbone.save_to_preset("my_backbone")
        ```
        """
        keras_hub.models.Backbone.save_to_preset(self, preset_dir, max_shard_size=max_shard_size)


@keras.saving.register_keras_serializable(package="mobilenetv3")
class MobileNetV3HubImageClassifier(keras_hub.models.ImageClassifier):
    """`keras_hub.models.ImageClassifier` on a `MobileNetV3HubBackbone`.

    keras-hub's classifier (pool, dropout, Dense), registered for our
    backbone so that `keras_hub.models.ImageClassifier.from_preset(folder)`
    rebuilds it. Arguments as `keras_hub.models.ImageClassifier`.

    Example:

    ```python
    backbone = MobileNetV3HubBackbone.from_preset("mobilenet_v3_small", load_weights=False)
    classifier = MobileNetV3HubImageClassifier(backbone=backbone, num_classes=10)
    classifier.save_to_preset("my_classifier")
    same = keras_hub.models.ImageClassifier.from_preset("my_classifier")
    ```
    """

    backbone_cls = MobileNetV3HubBackbone
