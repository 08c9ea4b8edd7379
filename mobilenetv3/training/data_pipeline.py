"""A `tf.data` input pipeline that keeps the model fed.

Files are listed once, sharded per process (each process of a multi-process
job decodes only its own files), shuffled with a seed, then decoded,
resized and augmented in parallel (`num_parallel_calls=AUTOTUNE`), batched and
prefetched. Augmentation uses stateless random ops seeded by
`(seed, epoch, element index)`: it is random but reproducible, whatever the
parallelism.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mobilenetv3.core.images import IMAGE_SUFFIXES as _READABLE

# The files `tf.io.decode_image` decodes (of those the package reads).
IMAGE_SUFFIXES = tuple(suffix for suffix in _READABLE if suffix in (".png", ".jpg", ".jpeg", ".bmp", ".gif"))


def list_image_folder(data_dir: str | os.PathLike) -> tuple[list[str], list[int], list[str]]:
    """Files, integer labels and class names (sorted sub-folder names) of a
    class-per-folder tree."""
    folder = Path(data_dir)
    if not folder.is_dir():
        raise ValueError(f"`data_dir` {str(folder)!r} is not a folder of class sub-folders.")
    class_names = sorted(child.name for child in folder.iterdir() if child.is_dir())
    files, labels = [], []
    for label, name in enumerate(class_names):
        for file in sorted((folder / name).iterdir()):
            if file.suffix.lower() in IMAGE_SUFFIXES:
                files.append(str(file))
                labels.append(label)
    if len(class_names) < 2 or not files:
        raise ValueError(f"`data_dir` {str(folder)!r} must hold at least 2 sub-folders of images; found {class_names}.")
    return files, labels, class_names


def image_folder_pipeline(
    data_dir: str | os.PathLike,
    image_size: tuple[int, int],
    batch_size: int,
    *,
    shuffle: bool = True,
    augment: bool = False,
    seed: int = 0,
    epoch: int = 0,
    num_shards: int = 1,
    shard_index: int = 0,
    repeat: bool = False,
) -> tuple[Any, list[str]]:
    """Batches of `(images, labels)` from a class-per-folder tree.

    Args:
        data_dir: one sub-folder of images per class.
        image_size: `(height, width)` the images are resized to (bilinear).
        batch_size: images per batch of this process.
        shuffle: shuffle the files (seeded by `seed` and `epoch`).
        augment: random left-right flips and random crops of 80-100% of the
            side, resized back to `image_size`.
        seed: the shuffle and augmentation seed.
        epoch: selects the epoch's file order and augmentation.
        num_shards: number of processes reading the data.
        shard_index: this process's index; it reads every `num_shards`-th
            file starting at `shard_index`.
        repeat: repeat forever (for step-based loops and benchmarks).

    Returns:
        `(dataset, class_names)`; images are float32 0..255 RGB, labels int32.

    Example:

    ```python
    from mobilenetv3.datasets import make_classification_folder
    folder = make_classification_folder("/tmp/shapes", per_class=10, size=64)
    dataset, names = image_folder_pipeline(folder, (64, 64), 8, augment=True)
    images, labels = next(iter(dataset))  # (8, 64, 64, 3), (8,)
    ```
    """
    import tensorflow as tf

    if not 0 <= shard_index < num_shards:
        raise ValueError(f"`shard_index` must be from 0 to {num_shards - 1}; got {shard_index!r}.")
    files, labels, class_names = list_image_folder(data_dir)
    height, width = (int(v) for v in image_size)
    autotune = tf.data.AUTOTUNE
    data = tf.data.Dataset.from_tensor_slices((files, tf.constant(labels, tf.int32)))
    data = data.shard(num_shards, shard_index)
    if shuffle:
        data = data.shuffle(len(files), seed=seed * 1_000_003 + epoch, reshuffle_each_iteration=False)
    if repeat:
        data = data.repeat()
    data = data.enumerate()

    def load(index: Any, example: Any) -> tuple[Any, Any]:
        path, label = example
        image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
        image = tf.image.resize(tf.cast(image, tf.float32), (height, width))
        if augment:
            key = tf.stack([tf.cast(seed * 1_000_003 + epoch, tf.int64), index])
            image = tf.image.stateless_random_flip_left_right(image, key)
            scale = tf.random.stateless_uniform([], key + 1, 0.8, 1.0)
            crop = tf.cast(tf.cast([height, width], tf.float32) * scale, tf.int32)
            image = tf.image.stateless_random_crop(image, tf.concat([crop, [3]], 0), key + 2)
            image = tf.image.resize(image, (height, width))
        image.set_shape((height, width, 3))
        return image, label

    data = data.map(load, num_parallel_calls=autotune, deterministic=True)
    return data.batch(batch_size).prefetch(autotune), class_names
