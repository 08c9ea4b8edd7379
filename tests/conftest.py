"""Shared test fixtures: the real weights and images in ../shared/fixtures."""

from __future__ import annotations

import os
import sys
from pathlib import Path

# torchvision must be imported before TensorFlow: importing it afterwards
# segfaults here (torch 2.14, TF 2.21). Tests using torch oracles need this.
try:
    import torchvision  # noqa: F401, I001
except ImportError:
    pass

import keras
import numpy as np
import pytest
from helpers import trained_looking

import mobilenetv3

ROOT = Path(__file__).resolve().parents[1]
# The peer-comparison harness (benchmarks/harness.py, roofline.py) is not
# part of the package; its tests import it from the checkout's folder.
BENCHMARKS = ROOT / "benchmarks"
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))
SHARED_FIXTURES = ROOT.parent / "shared" / "fixtures"
BACKEND = keras.backend.backend()


@pytest.fixture(scope="session")
def shared_fixtures() -> Path:
    """`../shared/fixtures`, or skip when this checkout has no ../shared."""
    if not SHARED_FIXTURES.is_dir():
        pytest.skip(f"real-weights fixtures not found at {SHARED_FIXTURES} (../shared is absent)")
    return SHARED_FIXTURES


@pytest.fixture(autouse=True)
def _seed() -> None:
    keras.utils.set_random_seed(0)
    np.random.seed(0)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def pytest_report_header(config: pytest.Config) -> str:
    return f"keras backend: {BACKEND}, keras {keras.__version__}, KERAS_BACKEND={os.environ.get('KERAS_BACKEND')}"


@pytest.fixture(scope="module")
def small_backbone() -> keras.Model:
    """A Small backbone with trained-looking BatchNorm statistics (export tests)."""
    keras.utils.set_random_seed(0)
    return trained_looking(mobilenetv3.MobileNetV3SmallBackbone(include_rescaling=True))
