"""A small, generated image-classification dataset (shapes and textures).

`make_classification_folder` writes PNG images in the layout that
`keras.utils.image_dataset_from_directory` reads (one sub-folder per class),
so the fine-tuning workflow can be tried and tested without downloading
anything. Every image is a pure function of `(seed, class, index)`: the same
arguments always give byte-identical files.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from mobilenetv3.core.utils import atomic_path, check_positive_int

MIN_SIZE = 32


def _random_color(rng: np.random.Generator) -> tuple[int, int, int]:
    return tuple(int(v) for v in rng.integers(0, 256, size=3))


def _contrasting_colors(rng: np.random.Generator) -> tuple[tuple, tuple]:
    """A background and a foreground color that differ visibly."""
    while True:
        background, foreground = _random_color(rng), _random_color(rng)
        if np.abs(np.subtract(background, foreground)).sum() > 200:
            return background, foreground


def _box(rng: np.random.Generator, size: int) -> tuple[int, int, int, int]:
    """A random square box, 35-70% of the image side, inside the image."""
    side = int(rng.uniform(0.35, 0.7) * size)
    left, top = (int(v) for v in rng.integers(0, size - side, size=2))
    return left, top, left + side, top + side


def _draw_circle(draw: ImageDraw.ImageDraw, rng: np.random.Generator, size: int, color: tuple) -> None:
    draw.ellipse(_box(rng, size), fill=color)


def _draw_square(draw: ImageDraw.ImageDraw, rng: np.random.Generator, size: int, color: tuple) -> None:
    draw.rectangle(_box(rng, size), fill=color)


def _draw_triangle(draw: ImageDraw.ImageDraw, rng: np.random.Generator, size: int, color: tuple) -> None:
    left, top, right, bottom = _box(rng, size)
    draw.polygon([((left + right) / 2, top), (left, bottom), (right, bottom)], fill=color)


def _draw_cross(draw: ImageDraw.ImageDraw, rng: np.random.Generator, size: int, color: tuple) -> None:
    left, top, right, bottom = _box(rng, size)
    width = max(2, (right - left) // 4)
    middle_x, middle_y = (left + right) // 2, (top + bottom) // 2
    draw.rectangle((middle_x - width // 2, top, middle_x + width // 2, bottom), fill=color)
    draw.rectangle((left, middle_y - width // 2, right, middle_y + width // 2), fill=color)


def _draw_stripes(draw: ImageDraw.ImageDraw, rng: np.random.Generator, size: int, color: tuple) -> None:
    period = int(rng.integers(6, 13))
    offset = int(rng.integers(0, period))
    for start in range(-size + offset, 2 * size, period):
        # Diagonal stripes, width half the period.
        draw.polygon(
            [(start, 0), (start + period // 2, 0), (start + period // 2 + size, size), (start + size, size)],
            fill=color,
        )


def _draw_checker(draw: ImageDraw.ImageDraw, rng: np.random.Generator, size: int, color: tuple) -> None:
    cell = int(rng.integers(5, 11))
    shift_x, shift_y = (int(v) for v in rng.integers(0, cell, size=2))
    for row in range(-1, size // cell + 2):
        for column in range(-1, size // cell + 2):
            if (row + column) % 2 == 0:
                x, y = column * cell - shift_x, row * cell - shift_y
                draw.rectangle((x, y, x + cell - 1, y + cell - 1), fill=color)


DRAWERS: dict[str, Callable] = {
    "circle": _draw_circle,
    "square": _draw_square,
    "triangle": _draw_triangle,
    "cross": _draw_cross,
    "stripes": _draw_stripes,
    "checker": _draw_checker,
}
DEFAULT_CLASSES = tuple(DRAWERS)


def render_image(class_name: str, index: int, size: int = 64, seed: int = 0) -> Image.Image:
    """One RGB image of `class_name`, a pure function of its arguments.

    Args:
        class_name: one of `DEFAULT_CLASSES`.
        index: the image's number within its class.
        size: the image side in pixels.
        seed: the dataset seed.

    Example:

    ```python
    image = render_image("circle", index=0, size=64)
    image.size  # (64, 64)
    ```
    """
    class_index = DEFAULT_CLASSES.index(class_name)
    rng = np.random.default_rng([seed, class_index, index])
    background, foreground = _contrasting_colors(rng)
    image = Image.new("RGB", (size, size), background)
    DRAWERS[class_name](ImageDraw.Draw(image), rng, size, foreground)
    noise = rng.normal(0.0, 8.0, size=(size, size, 3))
    pixels = np.clip(np.asarray(image, dtype=np.float64) + noise, 0, 255).astype(np.uint8)
    return Image.fromarray(pixels)


def _check_arguments(classes: Sequence[str], per_class: int, size: int) -> None:
    if isinstance(classes, str) or not classes:
        raise ValueError(f"`classes` must be a non-empty list of names from {list(DRAWERS)}; got {classes!r}.")
    unknown = [name for name in classes if name not in DRAWERS]
    if unknown or len(set(classes)) != len(classes):
        raise ValueError(
            f"`classes` must be distinct names from {list(DRAWERS)}; got {list(classes)!r}."
        )
    check_positive_int("per_class", per_class)
    if isinstance(size, bool) or not isinstance(size, int) or size < MIN_SIZE:
        raise ValueError(f"`size` must be an integer >= {MIN_SIZE} (pixels); got {size!r}.")


def make_classification_folder(
    path: str | os.PathLike,
    classes: Sequence[str] = DEFAULT_CLASSES,
    per_class: int = 60,
    size: int = 64,
    seed: int = 0,
) -> Path:
    """Write a shapes-and-textures classification dataset as PNG files.

    The folder holds one sub-folder per class (`circle/0000.png`, ...), the
    layout of `keras.utils.image_dataset_from_directory`. Shapes are drawn at
    a random position and scale in random colors, with pixel noise. The
    folder is written atomically: it appears complete or not at all, and an
    existing folder at `path` is replaced only once the new one is written.

    Args:
        path: the folder to create.
        classes: class names, a subset of `DEFAULT_CLASSES` ("circle",
            "square", "triangle", "cross", "stripes", "checker").
        per_class: images per class.
        size: image side in pixels (at least 32).
        seed: the dataset seed; the same arguments give identical files.

    Returns:
        The folder's path.

    Example:

    ```python
    import keras
    from mobilenetv3.datasets import make_classification_folder

    folder = make_classification_folder("/tmp/shapes", per_class=20)
    dataset = keras.utils.image_dataset_from_directory(folder, image_size=(64, 64))
    dataset.class_names  # ['checker', 'circle', 'cross', 'square', 'stripes', 'triangle']
    ```
    """
    _check_arguments(classes, per_class, size)
    with atomic_path(path, directory=True) as staging:
        for class_name in classes:
            (staging / class_name).mkdir(parents=True)
            for index in range(per_class):
                image = render_image(class_name, index, size, seed)
                image.save(staging / class_name / f"{index:04d}.png", optimize=False)
    return Path(path)
