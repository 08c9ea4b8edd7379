"""`MobileNetV3SmallBackbone` and `MobileNetV3LargeBackbone`, built offline."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mobilenetv3 import presets
from mobilenetv3.backbone import MobileNetV3Backbone


def _alias(preset_name: str, family: str, doc: str) -> type:
    def __new__(
        cls: type,
        include_rescaling: bool = True,
        input_shape: Sequence[int | None] = (None, None, 3),
        input_tensor: Any = None,
        **kwargs: Any,
    ) -> MobileNetV3Backbone:
        config = {
            **presets.PRESETS[preset_name].config,
            "include_rescaling": include_rescaling,
            "input_shape": input_shape,
            "input_tensor": input_tensor,
            **kwargs,
        }
        return MobileNetV3Backbone(**config)

    return type(
        f"MobileNetV3{family.title()}Backbone",
        (MobileNetV3Backbone,),
        {"__new__": __new__, "__doc__": doc, "_family": family, "__module__": __name__},
    )


MobileNetV3SmallBackbone = _alias(
    "mobilenet_v3_small",
    "small",
    """MobileNetV3-Small backbone (939,120 parameters), built offline.

    Args:
        include_rescaling: rescale 0..255 inputs by 1/255 inside the model.
        input_shape: `(height, width, channels)`.
        input_tensor: optional Keras or plain tensor to use as input.
        **kwargs: any other `MobileNetV3Backbone` argument (`alpha`,
            `name`, `output_stride`, ...).

    Example:

    ```python
    backbone = mobilenetv3.MobileNetV3SmallBackbone()
    backbone(np.ones((1, 224, 224, 3))).shape  # (1, 7, 7, 576)
    ```
    """,
)

MobileNetV3LargeBackbone = _alias(
    "mobilenet_v3_large",
    "large",
    """MobileNetV3-Large backbone (2,996,352 parameters), built offline.

    Args:
        include_rescaling: rescale 0..255 inputs by 1/255 inside the model.
        input_shape: `(height, width, channels)`.
        input_tensor: optional Keras or plain tensor to use as input.
        **kwargs: any other `MobileNetV3Backbone` argument (`alpha`,
            `name`, `output_stride`, ...).

    Example:

    ```python
    backbone = mobilenetv3.MobileNetV3LargeBackbone()
    backbone(np.ones((1, 224, 224, 3))).shape  # (1, 7, 7, 960)
    ```
    """,
)

