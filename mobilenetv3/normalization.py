"""Image normalization conventions, in one place: the backbone's
`preprocessing` modes (mean and std) and the `ImagePolicy` policy that
says how a set of weights expects its images."""

from __future__ import annotations

import dataclasses
from typing import Any

from mobilenetv3.utils import check_choice

# Per `preprocessing` mode of the backbone: the mean and std, on the [0, 1]
# pixel scale, that the model subtracts and divides by (x / 255 - mean) / std.
# "unit" is keras-cv's [0, 1], "symmetric" TF-slim's [-1, 1], "imagenet"
# torchvision's and timm's mean/std.
PREPROCESSING_MEAN = {"unit": (0.0, 0.0, 0.0), "symmetric": (0.5, 0.5, 0.5), "imagenet": (0.485, 0.456, 0.406)}
PREPROCESSING_STD = {"unit": (1.0, 1.0, 1.0), "symmetric": (0.5, 0.5, 0.5), "imagenet": (0.229, 0.224, 0.225)}
PREPROCESSING_MODES = tuple(PREPROCESSING_MEAN)


def scale_and_offset(mode: str) -> tuple[Any, Any]:
    """The `(scale, offset)` that maps raw 0..255 pixels to `mode`'s input
    range, y = x * scale + offset: scalars when every channel is alike,
    per-channel lists otherwise.

    Example:

    ```python
    scale_and_offset("symmetric")  # (1 / 127.5, -1.0)
    ```
    """
    check_choice("preprocessing", mode, PREPROCESSING_MODES)
    mean, std = PREPROCESSING_MEAN[mode], PREPROCESSING_STD[mode]
    scale = [1 / (255 * s) for s in std]
    offset = [-m / s + 0.0 for m, s in zip(mean, std)]  # + 0.0: no negative zeros
    if len(set(scale)) == 1 and len(set(offset)) == 1:
        return scale[0], offset[0]
    return scale, offset
RESIZE_POLICIES = ("squash", "center_crop")


@dataclasses.dataclass(frozen=True)
class ImagePolicy:
    """How images must be prepared for a set of weights.

    The pixel scaling is done by the model itself (the backbone's
    `include_rescaling` + `preprocessing=mode`) on raw 0..255 RGB input; the
    resize/crop policy is for whoever loads the images (see
    `mobilenetv3.preprocessing.load_image`).

    Attributes:
        mode: the backbone's `preprocessing` ("unit", "symmetric", "imagenet").
        image_size: the square input size the weights were evaluated at.
        resize: "squash" (resize to `image_size` x `image_size`, no crop) or
            "center_crop" (resize the shorter side to `resize_size`, then take
            the central `image_size` square).
        resize_size: the shorter side before the crop ("center_crop" only).
        interpolation: PIL resampling filter name ("bilinear", "bicubic").

    Example:

    ```python
    policy = ImagePolicy("imagenet", 224, "center_crop", resize_size=256)
    policy.mean  # (0.485, 0.456, 0.406)
    ```
    """

    mode: str = "unit"
    image_size: int = 224
    resize: str = "squash"
    resize_size: int | None = None
    interpolation: str = "bilinear"

    def __post_init__(self) -> None:
        if self.mode not in PREPROCESSING_MEAN:
            raise ValueError(f"`mode` must be one of {list(PREPROCESSING_MEAN)}; got {self.mode!r}.")
        if self.resize not in RESIZE_POLICIES:
            raise ValueError(f"`resize` must be one of {list(RESIZE_POLICIES)}; got {self.resize!r}.")
        if self.resize == "center_crop" and (self.resize_size or 0) < self.image_size:
            raise ValueError(
                f"`resize_size` must be at least `image_size` ({self.image_size}) for "
                f"resize='center_crop'; got {self.resize_size!r}."
            )

    @property
    def mean(self) -> tuple[float, float, float]:
        return PREPROCESSING_MEAN[self.mode]

    @property
    def std(self) -> tuple[float, float, float]:
        return PREPROCESSING_STD[self.mode]

    def to_dict(self) -> dict[str, Any]:
        """The policy as JSON-friendly metadata."""
        return {**dataclasses.asdict(self), "input": "RGB 0..255", "mean": self.mean, "std": self.std}




# The name `ImagePolicy` had first (`mobilenetv3.presets.Preprocessing`).
Preprocessing = ImagePolicy
