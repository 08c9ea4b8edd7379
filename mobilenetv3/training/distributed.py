"""Multi-process data parallelism: join a job of several processes (hosts).

Each process runs the same program on its share of every global batch; the
gradients are averaged across processes, so the weights stay identical
everywhere and equal one process training on the whole global batch.

- JAX: `keras.distribution.initialize` (the first address is the
  coordinator) and `keras.distribution.DataParallel` over every process's
  devices. One program is compiled over the global batch, so BatchNorm
  statistics are the global batch's already.
- TensorFlow: `tf.distribute.MultiWorkerMirroredStrategy` configured through
  `TF_CONFIG`. BatchNorm normalizes each replica's examples unless
  `synchronize_batchnorm` is applied (then the global batch's statistics).

Call `join_data_parallel` at program start, before any model is built, on
every process with the same addresses and its own `process_id`; then build,
compile and fit inside `job.scope()` (`fine_tune` does this by itself). A
`tf.data` dataset with the global batch size is sharded per process by the
engine. Files are written through `run_on_chief`, which every process
reaches and the chief alone runs (`fine_tune`'s checkpoints and output).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import keras
import numpy as np

from mobilenetv3.core import keras_internals as internals
from mobilenetv3.core.utils import STALLED_EXIT_CODE
from mobilenetv3.core.validation import check_job_arguments

T = TypeVar("T")

_ACTIVE: DataParallelJob | None = None
# A process of a job that makes no progress (no batch, epoch, evaluation or
# write) for this long is stuck in a collective that a peer never joins: it
# prints one line and exits with `STALLED_EXIT_CODE`. Long enough for the
# first step's compilation of a large model on a slow host.
DEFAULT_TIMEOUT_S = 900.0


@dataclasses.dataclass
class DataParallelJob:
    """The job this process joined (see `join_data_parallel`).

    Attributes:
        addresses: `host:port` of every process, process 0 first.
        num_processes: number of processes.
        process_id: this process's index (0 is the chief: it writes files).
        strategy: the `tf.distribute` strategy on TensorFlow, else None.
    """

    addresses: list[str]
    num_processes: int
    process_id: int
    strategy: Any = None
    timeout_s: float = DEFAULT_TIMEOUT_S

    @property
    def is_chief(self) -> bool:
        """True on process 0, the one that writes checkpoints and outputs."""
        return self.process_id == 0

    @contextlib.contextmanager
    def scope(self) -> Iterator[None]:
        """Build, compile and fit models inside this scope."""
        if self.strategy is None:
            yield
        else:
            with self.strategy.scope():
                yield


def join_data_parallel(
    job_addresses: str | Sequence[str], num_processes: int, process_id: int, timeout_s: float = DEFAULT_TIMEOUT_S
) -> DataParallelJob:
    """Join a multi-process data-parallel job (JAX or TensorFlow backend).

    Args:
        job_addresses: `host:port` of every process, comma separated or a
            list, process 0 first (JAX needs only process 0's: the
            coordinator; TensorFlow needs all of them).
        num_processes: number of processes in the job (>= 1).
        process_id: this process's index, 0 to `num_processes - 1`.
        timeout_s: inside `stall_watchdog` (`fine_tune` uses it), a process
            that makes no progress for this long (a collective a peer never
            joins: the peer died, hangs or runs another program) prints one
            line and exits with `STALLED_EXIT_CODE`.

    Returns:
        The `DataParallelJob`; it is also made the active job, which
        `active_scope` and `fine_tune` use.

    Example:

    ```python
    # on host A (process 0) and host B (process 1), with process_id 0 / 1:
    job = join_data_parallel("10.0.0.1:7000,10.0.0.2:7000", 2, process_id=0)
    with job.scope():
        model = build_and_compile()
    model.fit(global_batch_dataset)  # each process gets its half
    ```
    """
    global _ACTIVE
    addresses = check_job_arguments(job_addresses, num_processes, process_id, timeout_s)
    backend = keras.backend.backend()
    strategy = None
    if backend == "jax":
        keras.distribution.initialize(addresses[0], num_processes, process_id)
        if threading.current_thread() is threading.main_thread():
            # JAX's preemption notifier takes SIGTERM (and then only records
            # it): a process stuck in a collective could not be terminated.
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=keras.distribution.list_devices()))
    elif backend == "tensorflow":
        if len(addresses) != num_processes:
            raise ValueError(
                f"`job_addresses` must list one 'host:port' per process on TensorFlow "
                f"({num_processes}); got {len(addresses)}."
            )
        import tensorflow as tf

        os.environ["TF_CONFIG"] = json.dumps(
            {"cluster": {"worker": addresses}, "task": {"type": "worker", "index": process_id}}
        )
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    else:
        raise ValueError(
            f"Multi-process data parallelism needs the 'jax' or 'tensorflow' backend; got {backend!r}."
        )
    _ACTIVE = DataParallelJob(addresses, num_processes, process_id, strategy, float(timeout_s))
    return _ACTIVE


def num_processes() -> int:
    """The number of processes of the active job (1 without a job)."""
    return 1 if _ACTIVE is None else _ACTIVE.num_processes


class _Progress:
    """The last progress of this process: when, and what it was."""

    def __init__(self) -> None:
        self.time, self.what, self.lock = time.monotonic(), "starting", threading.Lock()

    def mark(self, what: str) -> None:
        with self.lock:
            self.time, self.what = time.monotonic(), what

    def since(self) -> tuple[float, str]:
        with self.lock:
            return time.monotonic() - self.time, self.what


_PROGRESS = _Progress()


def heartbeat(what: str) -> None:
    """Record progress for `stall_watchdog` (`what`: where this process is)."""
    _PROGRESS.mark(what)


class ProgressCallback(keras.callbacks.Callback):
    """Calls `heartbeat` at every training and evaluation batch of `fit`."""

    def __init__(self) -> None:
        super().__init__()
        self.epoch = 0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.epoch = epoch
        heartbeat(f"epoch {epoch}, starting")

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        heartbeat(f"epoch {self.epoch}, after training batch {batch + 1}")

    def on_test_batch_end(self, batch: int, logs: dict | None = None) -> None:
        heartbeat(f"epoch {self.epoch}, after validation batch {batch + 1}")


@contextlib.contextmanager
def stall_watchdog(hint: str = "") -> Iterator[None]:
    """In a JAX job of several processes, end this process when it makes no
    progress (`heartbeat`) for the job's `timeout_s`: a collective that a
    peer never joins (it died, hangs, or runs another program) would
    otherwise wait forever. One line goes to stderr, naming this process,
    how long it waited and where it was, followed by `hint` (e.g. how to
    resume); then the process exits with `STALLED_EXIT_CODE` (its main
    thread is blocked inside the runtime, so nothing else can end it).
    Without such a job it does nothing.

    Example:

    ```python
    with stall_watchdog():
        model.fit(data, callbacks=[ProgressCallback()])
    ```
    """
    job = _ACTIVE
    if not _jax_job() or job is None:
        yield
        return
    done = threading.Event()

    def watch() -> None:
        while not done.wait(min(5.0, job.timeout_s / 4)):
            idle, what = _PROGRESS.since()
            if idle >= job.timeout_s:
                sys.stderr.write(
                    f"mobilenetv3: error: process {job.process_id} of the {job.num_processes}-process job made no "
                    f"progress for {idle:.0f} s ({what}): a collective is stuck because a peer process died, hangs "
                    f"or runs a different program; stopping this process{hint}\n"
                )
                sys.stderr.flush()
                os._exit(STALLED_EXIT_CODE)

    heartbeat("starting")
    thread = threading.Thread(target=watch, name="mobilenetv3-stall-watchdog", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def active_job() -> DataParallelJob | None:
    """The job joined with `join_data_parallel` in this process, or None."""
    return _ACTIVE


def active_scope() -> contextlib.AbstractContextManager:
    """The active job's scope, or a do-nothing context without a job."""
    return _ACTIVE.scope() if _ACTIVE is not None else contextlib.nullcontext()


def check_fit_supported() -> None:
    """Raise a clear error where Keras' `fit` cannot run the active job."""
    if _ACTIVE is not None and _ACTIVE.strategy is not None and _ACTIVE.num_processes > 1:
        raise NotImplementedError(
            "Keras 3's `fit` does not run under TensorFlow's MultiWorkerMirroredStrategy "
            "(keras-team/keras#20585), so `fine_tune` / `mobilenetv3 train` cannot join a TensorFlow "
            "multi-process job: use KERAS_BACKEND=jax for them, or `mobilenetv3.training.distributed.train_steps` "
            "(a custom loop) on TensorFlow."
        )


def is_chief() -> bool:
    """True unless this process is a non-zero process of a job."""
    return _ACTIVE is None or _ACTIVE.is_chief


def _jax_job() -> bool:
    """True in a JAX job of more than one process."""
    return _ACTIVE is not None and _ACTIVE.num_processes > 1 and keras.backend.backend() == "jax"


def host_arrays(values: Sequence[Any]) -> list[np.ndarray]:
    """The values of `values` (variables or tensors) as NumPy arrays.

    Every process of a job must call this together: in a JAX job an array
    split across processes is gathered (a collective). Arrays replicated on
    every process (all variables under `DataParallel`) are read from this
    process's copy.

    Example:

    ```python
    arrays = host_arrays(model.variables)  # on every process
    ```
    """
    arrays = []
    for value in values:
        value = value.value if isinstance(value, keras.Variable) else value
        if _jax_job() and not getattr(value, "is_fully_addressable", True) and not value.is_fully_replicated:
            from jax.experimental import multihost_utils

            value = multihost_utils.process_allgather(value, tiled=True)
        arrays.append(keras.ops.convert_to_numpy(value))
    return arrays


@contextlib.contextmanager
def _local_keras_objects() -> Iterator[None]:
    """No Keras distribution inside: variables created here stay on this
    process (under `DataParallel` creating one is a cross-process check)."""
    if not _jax_job():
        yield
        return
    saved = keras.distribution.distribution()
    keras.distribution.set_distribution(None)
    try:
        yield
    finally:
        keras.distribution.set_distribution(saved)


def check_same_on_every_process(name: str, value: Any, hint: str = "") -> None:
    """Raise a `ValueError` naming `name` unless `value` (JSON-serializable)
    is the same on every process of a JAX job; every process calls this.

    Processes that disagree (e.g. on the checkpoint they resume from) would
    run different programs and wait forever on each other's collectives;
    all of them raise instead.

    Example:

    ```python
    check_same_on_every_process("checkpoint_dir", {"epoch": 2, "step": 0})
    ```
    """
    if not _jax_job():
        return
    from jax.experimental import multihost_utils

    digest = np.uint32(zlib.crc32(json.dumps(value, sort_keys=True).encode()))
    digests = np.asarray(multihost_utils.process_allgather(digest)).ravel().tolist()
    if len(set(digests)) > 1:
        raise ValueError(
            f"`{name}` differs between the processes of the job (this is process {_ACTIVE.process_id}, "
            f"which has {value!r}){': ' + hint if hint else ''}."
        )


_BARRIERS = [0]


def _barrier() -> None:
    """Every process of a JAX job waits here for all the others."""
    if _jax_job():
        from jax.experimental import multihost_utils

        _BARRIERS[0] += 1
        multihost_utils.sync_global_devices(f"mobilenetv3.training.distributed.barrier.{_BARRIERS[0]}")


def run_on_chief(write: Callable[[], T]) -> T | None:
    """Run `write` (e.g. saving a file) on the chief only; every process of
    a job must call this at the same point.

    Writing on one process alone must not start a cross-process
    computation, which the others would never join (the chief would hang):
    inside `write` no Keras distribution is active, so the Keras objects it
    creates (Keras' `save_weights` builds a throwaway optimizer) stay on the
    chief; read the job's variables with `host_arrays` on every process
    beforehand, or read replicated ones (`DataParallel`'s) directly. Then
    every process waits for the others (even if `write` raised), so none
    goes on (or exits) before the chief has written.

    Returns:
        `write()`'s result on the chief, None on the other processes.

    Example:

    ```python
    arrays = host_arrays(model.variables)  # every process
    run_on_chief(lambda: np.savez("weights.npz", *arrays))
    ```
    """
    try:
        if is_chief():
            with _local_keras_objects():
                return write()
        return None
    finally:
        _barrier()


def synchronize_batchnorm(model: keras.Model, synchronized: bool = True) -> int:
    """Make every BatchNorm layer of `model` use the global batch's statistics.

    On TensorFlow this sets Keras' `BatchNormalization(synchronized=True)`
    behaviour (the mean and variance are all-reduced across replicas at each
    training step). On JAX, `DataParallel` compiles one program over the
    global batch, so the statistics are global already and nothing changes.

    Args:
        model: any Keras model.
        synchronized: False turns synchronization off again.

    Returns:
        The number of BatchNorm layers.

    Example:

    ```python
    model = mobilenetv3.MobileNetV3ImageClassifier(
        mobilenetv3.MobileNetV3SmallBackbone(), 10)
    synchronize_batchnorm(model)  # 34 on MobileNetV3-Small
    ```
    """
    layers = [layer for layer in internals.all_layers(model) if isinstance(layer, keras.layers.BatchNormalization)]
    if keras.backend.backend() == "tensorflow":
        for layer in layers:
            layer.synchronized = synchronized
    return len(layers)


def train_steps(model: keras.Model, dataset: Any, steps: int, global_batch_size: int) -> float:
    """`steps` SGD steps of a compiled classifier (logits, integer labels) on
    the active TensorFlow job: a custom loop around `strategy.run`.

    Keras 3's `fit` does not run under `MultiWorkerMirroredStrategy` (it
    fails with "Attempt to convert a value (PerReplica...)",
    keras-team/keras#20585), so on TensorFlow a multi-process job trains
    with this loop: each worker computes the gradient of its share of every
    global batch, the optimizer all-reduces them.

    Args:
        model: a compiled model built inside `job.scope()`.
        dataset: a `tf.data` dataset of `(images, labels)` batches of
            `global_batch_size` (split across the workers).
        steps: number of steps.
        global_batch_size: examples per global batch.

    Returns:
        The loss of the last step (averaged over the global batch).
    """
    import tensorflow as tf

    job = _ACTIVE
    strategy = job.strategy if job is not None and job.strategy is not None else tf.distribute.get_strategy()
    iterator = iter(strategy.experimental_distribute_dataset(dataset))

    def replica_step(images: Any, labels: Any) -> Any:
        with tf.GradientTape() as tape:
            logits = model(images, training=True)
            per_example = keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
            loss = tf.nn.compute_average_loss(per_example, global_batch_size=global_batch_size)
        variables = model.trainable_variables
        model.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))
        return loss

    @tf.function
    def step(batch: Any) -> Any:
        losses = strategy.run(replica_step, args=batch)
        return strategy.reduce(tf.distribute.ReduceOp.SUM, losses, axis=None)

    loss = None
    for _ in range(steps):
        loss = step(next(iterator))
    return float(loss)
