"""Numerical parity with keras.applications given the same weights."""

from __future__ import annotations

import keras
import pytest
from helpers import LARGE, SMALL, images, max_abs_diff, randomize

from mobilenetv3 import MobileNetV3Backbone

pytestmark = pytest.mark.core

APPS = {"small": keras.applications.MobileNetV3Small, "large": keras.applications.MobileNetV3Large}


def copy_in_order(source: keras.Model, target: keras.Model) -> None:
    """Copy weights variable by variable; both graphs create them in the same order."""
    assert len(source.weights) == len(target.weights)
    for s, t in zip(source.weights, target.weights):
        assert tuple(s.shape) == tuple(t.shape), (s.path, t.path)
        t.assign(s)


@pytest.mark.parametrize("family, cfg", [("small", SMALL), ("large", LARGE)])
@pytest.mark.parametrize("size", [(224, 224), (193, 257)])
def test_matches_keras_applications(family, cfg, size):
    theirs = APPS[family](
        input_shape=(*size, 3), include_top=False, include_preprocessing=False, weights=None
    )
    randomize(theirs, seed=3)
    ours = MobileNetV3Backbone(**{**cfg, "include_rescaling": False})  # dynamic input size
    copy_in_order(theirs, ours)
    x = images(2, *size, scale=2.0) - 1.0
    assert max_abs_diff(theirs(x), ours(x)) <= 1e-5
