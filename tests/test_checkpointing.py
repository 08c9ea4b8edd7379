"""Training checkpoints: written atomically, and a run killed with SIGKILL
mid-epoch resumes to the weights of an uninterrupted run."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

import mobilenetv3
from mobilenetv3.datasets import make_classification_folder
from mobilenetv3.training import checkpointing

WORKER = Path(__file__).with_name("training_worker.py")
# Same data order, same optimizer and random-generator states, deterministic
# TF ops: measured max |resumed - uninterrupted| = 0.0 over 210 variables.
RESUME_TOLERANCE = 1e-6


def _model() -> keras.Model:
    backbone = mobilenetv3.MobileNetV3SmallBackbone(input_shape=(32, 32, 3))
    model = mobilenetv3.MobileNetV3ImageClassifier(backbone, 3)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def _train_step(model: keras.Model) -> None:
    """Change every model and optimizer variable, as training would."""
    rng = np.random.default_rng(len(model.optimizer.variables))
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    for variable in [*model.variables, *model.optimizer.variables]:
        if "seed_generator" not in variable.path:
            variable.assign(rng.normal(size=variable.shape).astype(variable.dtype))
    model.optimizer.iterations.assign(1)


def test_checkpoint_round_trip_restores_weights_and_optimizer(tmp_path):
    model = _model()
    _train_step(model)
    state = checkpointing.TrainingState("head", 2, 3, seed=7, history={"head": {"loss": [1.0]}})
    checkpointing.save_checkpoint(tmp_path / "ck", model, state)
    assert checkpointing.read_state(tmp_path / "ck") == state
    other = _model()
    assert checkpointing.restore_checkpoint(tmp_path / "ck", other) == state
    for a, b in zip(model.variables, other.variables, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=a.path)
    assert int(other.optimizer.iterations.numpy()) == 1
    for a, b in zip(model.optimizer.variables, other.optimizer.variables, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=a.path)
    assert checkpointing.read_state(tmp_path / "none") is None


def test_checkpoint_refuses_another_model_and_is_never_half_written(tmp_path, monkeypatch):
    model = _model()
    _train_step(model)
    checkpointing.save_checkpoint(tmp_path / "ck", model, checkpointing.TrainingState("head", 1, 0, 0))
    before = {p.name: p.read_bytes() for p in (tmp_path / "ck").iterdir()}
    wider = mobilenetv3.MobileNetV3ImageClassifier(model.backbone, 4)  # 4 classes, not 3
    wider.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match="model variables do not match"):
        checkpointing.restore_checkpoint(tmp_path / "ck", wider)

    def fail(*args, **kwargs):
        raise OSError("disk full")

    _train_step(model)
    monkeypatch.setattr(checkpointing.np, "savez", fail)
    with pytest.raises(OSError, match="disk full"):
        checkpointing.save_checkpoint(tmp_path / "ck", model, checkpointing.TrainingState("head", 2, 0, 0))
    assert {p.name: p.read_bytes() for p in (tmp_path / "ck").iterdir()} == before  # the old one, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]


def test_fine_tune_resume_needs_a_checkpoint_dir(tmp_path):
    folder = make_classification_folder(tmp_path / "d", classes=["circle", "square"], per_class=4, size=32)
    from mobilenetv3.training import fine_tune

    with pytest.raises(ValueError, match="`resume=True` needs `checkpoint_dir`"):
        fine_tune(folder, "mobilenet_v3_small", image_size=(32, 32), resume=True)


def test_fine_tune_resume_with_other_settings_is_refused_naming_each_change(tmp_path):
    # The checkpoint records the arguments it was started with; before, a
    # resume with another batch size, learning rate, head epochs or data
    # folder went on silently (a run that is neither the old one nor a new one).
    import shutil
    import warnings

    from mobilenetv3.training import fine_tune

    data = make_classification_folder(tmp_path / "d", classes=["circle", "square"], per_class=6, size=32)
    checkpoint = tmp_path / "checkpoint"
    run = {"image_size": (32, 32), "batch_size": 4, "head_epochs": 1, "fine_tune_epochs": 0, "load_weights": False,
           "checkpoint_dir": checkpoint, "verbose": 0, "validation_split": 0.34}
    fine_tune(data, "mobilenet_v3_small", **run)
    written = (checkpoint / checkpointing.STATE_FILE).read_text()
    other = make_classification_folder(tmp_path / "other", classes=["circle", "square"], per_class=7, size=32)
    for changes, expected in (
        ({"batch_size": 8}, "batch_size 4 -> 8"),
        ({"head_learning_rate": 0.01}, "head_learning_rate 0.001 -> 0.01"),
        ({"head_epochs": 2}, "head_epochs 1 -> 2"),
        ({"data_dir": other}, f"data_dir {str(data.resolve())!r} -> {str(other.resolve())!r}"),
    ):
        arguments = {**run, **changes}
        with pytest.raises(ValueError) as info:
            fine_tune(arguments.pop("data_dir", data), "mobilenet_v3_small", **arguments, resume=True)
        message = str(info.value)
        assert expected in message and str(checkpoint) in message and "\n" not in message, message
    assert (checkpoint / checkpointing.STATE_FILE).read_text() == written  # refused before training
    assert checkpointing.read_state(checkpoint).settings["batch_size"] == 4
    # The same images in another folder, or more fine-tuning epochs, resume (the latter with a warning).
    moved = shutil.copytree(data, tmp_path / "moved")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fine_tune(moved, "mobilenet_v3_small", **{**run, "fine_tune_epochs": 1}, resume=True)
    assert any("fine_tune_epochs 0 -> 1" in str(w.message) for w in caught)


def _worker(*args: str, expect_kill: bool = False) -> dict:
    completed = subprocess.run(
        [sys.executable, str(WORKER), *args], capture_output=True, text=True, timeout=300, check=False
    )
    if expect_kill:
        assert completed.returncode == -signal.SIGKILL, completed.stderr[-3000:]
        return {}
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_equals_uninterrupted_run(tmp_path):
    if keras.backend.backend() != "tensorflow":
        pytest.skip("deterministic ops are enabled for TensorFlow in the worker")
    data = make_classification_folder(tmp_path / "data", per_class=8, size=64)  # 39 train images: 5 batches
    common = [str(data), "--train-bn"]
    _worker(*common[:1], str(tmp_path / "full.npz"), *common[1:])
    checkpoint = tmp_path / "checkpoint"
    run = [str(tmp_path / "resumed.npz"), *common[1:], "--checkpoint", str(checkpoint), "--every", "2"]
    # Epoch 1 is the fine-tuning phase's first; killed at its 4th batch, after
    # the checkpoint of step 2: the 3rd batch is lost and must be redone.
    _worker(str(data), *run, "--kill-at", "1:3", expect_kill=True)
    state = checkpointing.read_state(checkpoint)
    assert (state.phase, state.epoch, state.step) == ("fine_tune", 1, 2)
    assert not (tmp_path / "resumed.npz").exists()
    _worker(str(data), *run, "--resume")
    assert checkpointing.read_state(checkpoint).epoch == 2  # finished
    full, resumed = np.load(tmp_path / "full.npz"), np.load(tmp_path / "resumed.npz")
    assert sorted(full.files) == sorted(resumed.files) and len(full.files) > 100
    diff = max(float(np.abs(full[k] - resumed[k]).max()) for k in full.files)
    assert diff <= RESUME_TOLERANCE
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint", "data", "full.npz", "resumed.npz"]
