"""Data-parallel training on two virtual CPU devices equals one device.

Each engine runs in its own subprocess (`tests/distributed_step.py`): the
device count must be fixed before JAX or TensorFlow starts.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

WORKER = Path(__file__).with_name("distributed_step.py")
# One SGD step (lr 0.1) moves weights by ~0.04-0.06; two replicas of 4 give
# the same weights as one device with the batch of 8 up to float32 rounding
# (measured max |difference|: 3e-8 JAX, 2e-8 TF).
WEIGHT_TOLERANCE = 1e-6


def _run(*args: str) -> dict:
    completed = subprocess.run(
        [sys.executable, str(WORKER), *args], capture_output=True, text=True, timeout=400, check=False
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


def _frozen_step_matches_one_device(engine: str) -> dict:
    """Run `engine`'s step: with BatchNorm frozen it must move the weights
    and equal one device's step; the training-mode result is returned."""
    result = _run(engine)
    frozen, training = result["frozen_bn"], result["training_bn"]
    assert frozen["replicas"] == training["replicas"] == 2
    assert frozen["max_change"] > 1e-2
    assert frozen["max_diff"] <= WEIGHT_TOLERANCE
    return training


# Each engine's process runs both BatchNorm settings (`distributed_step.py`):
# one engine start-up and one test instead of two.
@pytest.mark.slow
def test_jax_data_parallel_step_matches_one_device_with_frozen_or_training_batchnorm():
    training = _frozen_step_matches_one_device("jax")
    # DataParallel compiles one program over the global batch: even with
    # BatchNorm in training mode the step equals one device's (measured 6e-8).
    assert training["max_diff"] <= WEIGHT_TOLERANCE


@pytest.mark.slow
def test_tf_mirrored_strategy_step_matches_one_device_only_with_frozen_batchnorm():
    training = _frozen_step_matches_one_device("tf")
    # With BatchNorm in training mode each replica normalizes its own 4
    # examples, so the step differs from one device's: freeze BN (or use
    # BatchNormalization(synchronized=True)) for identical results.
    assert training["max_diff"] > 100 * WEIGHT_TOLERANCE
