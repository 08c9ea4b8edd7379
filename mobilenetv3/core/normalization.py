"""Image normalization conventions, in one place: the backbone's
`preprocessing` modes (mean and std) and the `ImagePolicy` policy that
says how a set of weights expects its images."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from mobilenetv3.core.utils import check_choice

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
DEFAULT_IMAGE_SIZE = 224


@dataclasses.dataclass(frozen=True)
class ImagePolicy:
    """How images must be prepared for a set of weights.

    The pixel scaling is done by the model itself (the backbone's
    `include_rescaling` + `preprocessing=mode`) on raw 0..255 RGB input; the
    resize/crop policy is for whoever loads the images (see
    `mobilenetv3.presets.preprocessing.load_image`).

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
        """The policy as JSON-friendly metadata (what a preset folder's
        `preprocessor.json` holds; `from_dict` reads it back)."""
        return {**dataclasses.asdict(self), "input": "RGB 0..255", "mean": self.mean, "std": self.std}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ImagePolicy:
        """The policy `to_dict` wrote (its informative keys ignored).

        Example:

        ```python
        policy = ImagePolicy("imagenet", 224, "center_crop", resize_size=256)
        ImagePolicy.from_dict(policy.to_dict()) == policy  # True
        ```
        """
        fields = {field.name for field in dataclasses.fields(cls)}
        if not isinstance(values, dict) or "mode" not in values:
            raise ValueError(f"An image policy must be a dict with at least 'mode'; got {values!r}.")
        return cls(**{k: v for k, v in values.items() if k in fields})

    @classmethod
    def from_mean_std(
        cls, mean: tuple, std: tuple, image_size: int, crop_pct: float | None = None, interpolation: str = "bilinear"
    ) -> ImagePolicy:
        """The policy of a timm-style data config: mean / std (matched to a
        backbone `preprocessing` mode), input size and `crop_pct` (resize the
        shorter side to `floor(image_size / crop_pct)`, then center-crop).

        Example:

        ```python
        ImagePolicy.from_mean_std((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), 224, 0.875).resize_size  # 256
        ```
        """
        mode = mode_of(mean, std)
        if crop_pct is None or crop_pct >= 1:
            return cls(mode, image_size, "squash", interpolation=interpolation)
        return cls(mode, image_size, "center_crop", math.floor(image_size / crop_pct), interpolation)

    @classmethod
    def for_backbone_config(cls, config: dict[str, Any]) -> ImagePolicy:
        """The policy a backbone config implies when nothing better is
        recorded: its `preprocessing` mode, images squashed to its static
        square input size (else 224)."""
        shape = config.get("input_shape") or (None, None, 3)
        height, width = shape[0], shape[1]
        size = height if height is not None and height == width else DEFAULT_IMAGE_SIZE
        return cls(config.get("preprocessing", "unit"), size, "squash")

    @classmethod
    def of_model(cls, model: Any, recorded: bool = True) -> ImagePolicy:
        """The policy a loaded model carries (`image_policy` of its
        backbone, set by the loader from the preset), adapted to a static
        square input size; else (or with `recorded=False`) the one its
        backbone config implies: its `preprocessing` mode, images squashed
        to its input size."""
        backbone = getattr(model, "backbone", model)
        shape = tuple(backbone.input_shape[1:])
        policy = getattr(backbone, "image_policy", None) if recorded else None
        if policy is None:
            return cls.for_backbone_config({"preprocessing": getattr(backbone, "preprocessing", "unit"),
                                            "input_shape": shape})
        height, width = shape[0], shape[1]
        return policy.resized_to(height) if height is not None and height == width else policy

    def resized_to(self, image_size: int) -> ImagePolicy:
        """The same policy for another input size (the crop ratio kept)."""
        if image_size == self.image_size:
            return self
        resize_size = None
        if self.resize_size is not None:
            resize_size = max(image_size, round(self.resize_size * image_size / self.image_size))
        return dataclasses.replace(self, image_size=image_size, resize_size=resize_size)


def mode_of(mean: tuple, std: tuple) -> str:
    """The backbone `preprocessing` mode with this mean and std (0..1 scale).

    Example:

    ```python
    mode_of((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))  # 'symmetric'
    ```
    """
    for mode in PREPROCESSING_MODES:
        if _close(mean, PREPROCESSING_MEAN[mode]) and _close(std, PREPROCESSING_STD[mode]):
            return mode
    raise ValueError(
        f"mean {tuple(mean)} / std {tuple(std)} match none of the backbone's preprocessing modes "
        f"({', '.join(f'{m}: {PREPROCESSING_MEAN[m]} / {PREPROCESSING_STD[m]}' for m in PREPROCESSING_MODES)})."
    )


def _close(a: tuple, b: tuple) -> bool:
    return len(a) == len(b) and all(abs(float(x) - y) < 1e-6 for x, y in zip(a, b))




# The name `ImagePolicy` had first (`mobilenetv3.presets.Preprocessing`).
Preprocessing = ImagePolicy
