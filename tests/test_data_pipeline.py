"""The tf.data input pipeline: shapes, labels, per-process shards that
partition the files, reproducible augmentation."""

from __future__ import annotations

import numpy as np
import pytest

from mobilenetv3.datasets import make_classification_folder
from mobilenetv3.training.data_pipeline import image_folder_pipeline


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_classification_folder(tmp_path_factory.mktemp("pipe") / "d", classes=["circle", "square"], per_class=5, size=40)


def _all(dataset) -> tuple[np.ndarray, np.ndarray]:
    images, labels = zip(*[(np.asarray(x), np.asarray(y)) for x, y in dataset], strict=True)
    return np.concatenate(images), np.concatenate(labels)


def test_pipeline_batches_labels_and_shards(folder):
    dataset, names = image_folder_pipeline(folder, (32, 32), 4, shuffle=False)
    assert names == ["circle", "square"]
    images, labels = _all(dataset)
    assert images.shape == (10, 32, 32, 3) and images.dtype == np.float32 and 0 <= images.min() and images.max() <= 255
    assert labels.tolist() == [0] * 5 + [1] * 5
    shards = [_all(image_folder_pipeline(folder, (32, 32), 4, shuffle=False, num_shards=2, shard_index=i)[0]) for i in (0, 1)]
    assert len(shards[0][0]) == len(shards[1][0]) == 5
    merged = np.concatenate([shards[0][0], shards[1][0]])  # the shards partition the files
    assert sorted(map(bytes, merged.reshape(10, -1))) == sorted(map(bytes, images.reshape(10, -1)))
    with pytest.raises(ValueError, match="`shard_index` must be from 0 to 1"):
        image_folder_pipeline(folder, (32, 32), 4, num_shards=2, shard_index=2)


def test_pipeline_augmentation_is_random_but_reproducible(folder):
    plain = _all(image_folder_pipeline(folder, (32, 32), 4, shuffle=False)[0])[0]
    first = _all(image_folder_pipeline(folder, (32, 32), 4, shuffle=False, augment=True)[0])[0]
    again = _all(image_folder_pipeline(folder, (32, 32), 4, shuffle=False, augment=True)[0])[0]
    other = _all(image_folder_pipeline(folder, (32, 32), 4, shuffle=False, augment=True, epoch=1)[0])[0]
    np.testing.assert_array_equal(first, again)
    assert np.abs(first - plain).max() > 10 and np.abs(first - other).max() > 10
