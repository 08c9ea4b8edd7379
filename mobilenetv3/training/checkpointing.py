"""Training checkpoints that survive a kill: written atomically, resumed exactly.

A checkpoint is a folder holding every model variable (weights, BatchNorm
statistics, random-generator states), every optimizer variable (step count,
moments) and `state.json` (training phase, epoch, step within the epoch, the
data-order seed). It is written with `mobilenetv3.core.utils.atomic_path`: a
process killed mid-write leaves the previous checkpoint intact, never a
half-written one.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import keras
import numpy as np

from mobilenetv3.core.utils import atomic_path
from mobilenetv3.training import distributed

STATE_FILE = "state.json"
MODEL_FILE = "model_variables.npz"
OPTIMIZER_FILE = "optimizer_variables.npz"
FORMAT_VERSION = 1


@dataclasses.dataclass
class TrainingState:
    """Where training stands.

    Attributes:
        phase: name of the training phase (e.g. "head", "fine_tune").
        epoch: the epoch in progress (0-based, counted over all phases).
        step: batches of `epoch` already trained (0 at an epoch's start).
        seed: the seed of the data order (epoch `e` is shuffled with a seed
            derived from `seed` and `e`).
        history: per-epoch metrics of the epochs completed so far.
        settings: the arguments the run was started with (JSON values); a
            resume compares them with its own (`fine_tune`).
    """

    phase: str
    epoch: int
    step: int
    seed: int
    history: dict[str, dict[str, list[float]]] = dataclasses.field(default_factory=dict)
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)


def _arrays(variables: list) -> dict[str, np.ndarray]:
    return {f"{i:05d}": array for i, array in enumerate(distributed.host_arrays(variables))}


def save_checkpoint(path: str | os.PathLike, model: keras.Model, state: TrainingState) -> Path:
    """Write `model`'s and its optimizer's variables and `state`, atomically.

    In a multi-process job (`mobilenetv3.training.distributed`) every process calls
    this: all of them fetch the variables, the chief alone writes.

    Example:

    ```python
    save_checkpoint("/tmp/run/checkpoint", model, TrainingState("head", 1, 0, seed=0))
    ```
    """
    optimizer_variables = list(model.optimizer.variables) if model.optimizer is not None else []
    meta = {
        "format_version": FORMAT_VERSION,
        "state": dataclasses.asdict(state),
        "model_variables": _signature(model.variables),
        "optimizer_variables": _signature(optimizer_variables),
    }
    model_arrays, optimizer_arrays = _arrays(model.variables), _arrays(optimizer_variables)

    def write() -> None:
        with atomic_path(path, directory=True) as staging:
            staging.mkdir()
            np.savez(staging / MODEL_FILE, **model_arrays)
            np.savez(staging / OPTIMIZER_FILE, **optimizer_arrays)
            (staging / STATE_FILE).write_text(json.dumps(meta, indent=1))

    distributed.run_on_chief(write)
    return Path(path)


def read_state(path: str | os.PathLike) -> TrainingState | None:
    """The `TrainingState` of the checkpoint at `path`, or None if there is none."""
    state_file = Path(path) / STATE_FILE
    if not state_file.is_file():
        return None
    meta = json.loads(state_file.read_text())
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"Checkpoint {str(path)!r} has format {meta.get('format_version')!r}; expected {FORMAT_VERSION}.")
    return TrainingState(**meta["state"])


def restore_checkpoint(path: str | os.PathLike, model: keras.Model) -> TrainingState:
    """Load the checkpoint at `path` into `model` and its (compiled) optimizer.

    The model must be built and compiled the same way as when the checkpoint
    was written (same architecture, same trainable layers, same optimizer).
    """
    folder = Path(path)
    meta = json.loads((folder / STATE_FILE).read_text())
    _assign(model.variables, meta["model_variables"], folder / MODEL_FILE, "model")
    optimizer = model.optimizer
    if meta["optimizer_variables"]:
        if not optimizer.built:
            optimizer.build(model.trainable_variables)
        _assign(list(optimizer.variables), meta["optimizer_variables"], folder / OPTIMIZER_FILE, "optimizer")
    return TrainingState(**meta["state"])


def _signature(variables: list) -> list[str]:
    """Name and shape of each variable (paths carry per-process unique
    prefixes, so they are not compared)."""
    return [f"{v.name}{list(v.shape)}" for v in variables]


def _assign(variables: list, saved: list[str], file: Path, what: str) -> None:
    current = _signature(variables)
    if current != saved:
        raise ValueError(
            f"The checkpoint's {what} variables do not match this {what} ({len(saved)} saved, "
            f"{len(current)} here); resume with the settings the checkpoint was written with."
        )
    with np.load(file) as arrays:
        for i, variable in enumerate(variables):
            variable.assign(arrays[f"{i:05d}"])


class CheckpointCallback(keras.callbacks.Callback):
    """Writes a checkpoint every `every_steps` batches of one epoch's `fit`.

    Args:
        path: the checkpoint folder.
        state: the state at the start of this `fit` (its `step` is the number
            of batches skipped at the start of the epoch).
        every_steps: 0 writes nothing mid-epoch.
        steps_per_epoch: batches per epoch (the epoch's end is written by
            the caller, as the next epoch's start).

    In a multi-process job it runs on every process (`save_checkpoint`
    writes on the chief only).
    """

    def __init__(self, path: str | os.PathLike, state: TrainingState, every_steps: int, steps_per_epoch: int) -> None:
        super().__init__()
        self.path, self.state, self.every_steps = path, state, every_steps
        self.steps_per_epoch = steps_per_epoch

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        step = self.state.step + batch + 1
        mid_epoch = step < self.steps_per_epoch
        if self.every_steps and step % self.every_steps == 0 and mid_epoch:
            save_checkpoint(self.path, self.model, dataclasses.replace(self.state, step=step))
