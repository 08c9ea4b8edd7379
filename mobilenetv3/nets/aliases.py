"""`MobileNetV3SmallBackbone` and `MobileNetV3LargeBackbone`, built offline."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mobilenetv3 import presets
from mobilenetv3.nets.backbone import MobileNetV3Backbone

_DOC = """MobileNetV3-{Family} backbone ({params:,} parameters), built offline.

    Args:
        include_rescaling: rescale 0..255 inputs by 1/255 inside the model.
        input_shape: `(height, width, channels)`.
        input_tensor: optional Keras or plain tensor to use as input.
        **kwargs: any other `MobileNetV3Backbone` argument (`alpha`,
            `name`, `output_stride`, ...).

    Example:

    ```python
    backbone = mobilenetv3.MobileNetV3{Family}Backbone()
    backbone(np.ones((1, 224, 224, 3))).shape  # (1, 7, 7, {channels})
    ```
    """


def _alias(family: str, channels: int) -> type:
    """A class whose constructor builds the `mobilenet_v3_<family>` preset."""
    preset = presets.PRESETS[f"mobilenet_v3_{family}"]

    def __new__(
        cls: type,
        include_rescaling: bool = True,
        input_shape: Sequence[int | None] = (None, None, 3),
        input_tensor: Any = None,
        **kwargs: Any,
    ) -> MobileNetV3Backbone:
        config = {
            **preset.config,
            "include_rescaling": include_rescaling,
            "input_shape": input_shape,
            "input_tensor": input_tensor,
            **kwargs,
        }
        return MobileNetV3Backbone(**config)

    doc = _DOC.format(Family=family.title(), params=preset.params, channels=channels)
    return type(
        f"MobileNetV3{family.title()}Backbone",
        (MobileNetV3Backbone,),
        {"__new__": __new__, "__doc__": doc, "_family": family, "__module__": __name__},
    )


MobileNetV3SmallBackbone = _alias("small", channels=576)
MobileNetV3LargeBackbone = _alias("large", channels=960)
