"""Multi-process data parallelism for real: 2 local processes over the
loopback, each fed half of every global batch, end with the weights of one
process trained on the whole global batch.

The JAX test launches `tests/training_worker.py` 3 times (the
single-process reference and the 2 workers of the job); `fine_tune` of a
random MobileNetV3-Small at 64x64: BatchNorm statistics calibrated, then one
epoch of 2 global batches of 8 training the top 2 blocks with their
BatchNorm in training mode, no dropout. The TensorFlow test launches
`tests/tf_job_worker.py` 5 times (`distributed.train_steps`: the lone
process, then a job with and a job without synchronized BatchNorm).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mobilenetv3.datasets import make_classification_folder

WORKER = Path(__file__).with_name("training_worker.py")
TF_WORKER = Path(__file__).with_name("tf_job_worker.py")
# Measured max |2 processes - 1 process| over all variables (weights and
# BatchNorm statistics, steps that move the statistics by > 1e-2):
# TF MultiWorkerMirroredStrategy + synchronized BatchNorm: weights 1.2e-7,
# statistics 5.4e-7; without synchronization the statistics differ by 0.82.
WEIGHT_TOLERANCE = 1e-5
TIMEOUT = 600  # generous: CI machines and shared 2-core boxes are slow
# JAX processes compile ~460 small XLA programs (op by op while the model is
# built and BatchNorm calibrated, then the train and test steps): without
# LLVM's optimizations that takes 28 s of CPU instead of 46 s per process
# (measured), and the programs run on 64x64 images for 2 steps, where speed
# does not matter. The compared processes all use the same flags.
JAX_ENV = {"KERAS_BACKEND": "jax", "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "3",
           "XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} --xla_backend_optimization_level=0".strip()}


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _launch(backend: str, data: Path, out: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, **(JAX_ENV if backend == "jax" else {"KERAS_BACKEND": backend, "CUDA_VISIBLE_DEVICES": ""})}
    command = [sys.executable, str(WORKER), str(data), str(out), "--train-bn", "--dropout", "0",
               "--head-epochs", "0", "--fine-tune-epochs", "1", "--validation-split", "0.34", *args]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(process: subprocess.Popen) -> dict:
    try:
        stdout, stderr = process.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()
    assert process.returncode == 0, stderr[-3000:]
    return json.loads(stdout.strip().splitlines()[-1])


def _max_diff(tmp_path: Path, backend: str, *args: str) -> tuple[float, float]:
    """max |job - single| over all variables, and over the BatchNorm statistics."""
    data = make_classification_folder(tmp_path / "data", per_class=4, size=64)  # 16 train, 8 validation
    addresses = ",".join(f"127.0.0.1:{p}" for p in _free_ports(2))
    processes = [_launch(backend, data, tmp_path / "single.npz", *args)]
    for process_id in (0, 1):
        processes.append(
            _launch(backend, data, tmp_path / "job.npz", "--job", addresses, "--processes", "2",
                    "--process-id", str(process_id), *args)
        )
    results = [_finish(p) for p in processes]
    assert results[1]["val_accuracy"] == pytest.approx(results[2]["val_accuracy"])
    single, job = np.load(tmp_path / "single.npz"), np.load(tmp_path / "job.npz")
    assert sorted(single.files) == sorted(job.files)
    diff = max(float(np.abs(single[k] - job[k]).max()) for k in single.files)
    bn_diff = max(float(np.abs(single[k] - job[k]).max()) for k in single.files if "moving" in k)
    worst = max(single.files, key=lambda k: float(np.abs(single[k] - job[k]).max()))
    print(f"max |job - single| {diff:.3g} ({worst}); BatchNorm statistics {bn_diff:.3g}")
    return diff, bn_diff


# 3 processes (imports, JAX's eager variable initialization and BatchNorm
# calibration, compiling the train and test steps): about 3 x 46 s of CPU
# with XLA's default optimization, 3 x 28 s with JAX_ENV's flags. Measured
# 2026-11-26 on the shared 2-core box: default flags 410 s wall at load 14,
# 189 s at load 3-8 (max |job - single| 3.9e-6, Conv_1_BatchNorm/
# moving_variance); JAX_ENV 112 s wall at load 3-5 (109 s of CPU in all, so
# about a minute on 2 quiet cores), max |job - single| 3.5e-6 (BatchNorm
# statistics 3.1e-6). Since the weights are initialized on the host
# (`mobilenetv3.runtime.initializers`) the lone process and the job (under a Keras
# distribution, Keras' own initializers, unfused at this optimization level)
# start 1 ulp apart (<= 3e-8); after the epoch: 1.5e-5
# (expanded_conv_9_expand/kernel), BatchNorm statistics 9.7e-6.
JAX_JOB_TOLERANCE = 5e-5


@pytest.mark.slow
def test_jax_two_processes_equal_one_process_on_the_global_batch(tmp_path):
    # DataParallel compiles one program over the global batch: BatchNorm
    # statistics are the global batch's without any option. Keras shards the
    # tf.data epoch batches itself (rebatch to 4, shard by process): process
    # 0 gets the first half of every global batch of 8, process 1 the second
    # half, in the lone process's order (checked by printing the batches).
    diff, bn_diff = _max_diff(tmp_path, "jax", "--batch-size", "8")
    assert diff <= JAX_JOB_TOLERANCE, (diff, bn_diff)


# `mobilenetv3 train` as a real 2-process JAX job (random Small at 32x32, 48
# images of 3 classes: 39 training images, 4 global batches of 8 and 7 left
# over, and 9 validation images, a batch of 8 and 1 left over; a head epoch
# and a fine-tuning epoch, a checkpoint after every batch), then a resume
# where process 1 sees another checkpoint folder. Two bugs it caught: process
# 0 hung in `save_weights` (a cross-process check that Keras runs when it
# creates a variable under DataParallel, run by the chief alone); Keras split
# the leftovers unevenly (4 + 3, then 1 + nothing) and the job hung in the
# first validation (both processes at step 5 of epoch 0, SIGTERM ignored).
# One job covers both (each job costs about a minute of JAX start-up and
# compiles on the shared 2-core box).
@pytest.mark.slow
def test_train_cli_as_two_jax_processes_with_partial_batches_writes_the_preset_once(tmp_path):
    import mobilenetv3
    from mobilenetv3.training import checkpointing

    data = make_classification_folder(tmp_path / "data", classes=("circle", "square", "triangle"), per_class=16,
                                      size=32)
    out, checkpoint = tmp_path / "model", tmp_path / "checkpoint"
    common = ["train", str(data), "--out", str(out), "--preset", "mobilenet_v3_small", "--no-weights",
              "--image-size", "32", "--batch-size", "8", "--head-epochs", "1", "--fine-tune-epochs", "1",
              "--unfreeze-blocks", "1", "--checkpoint-every-steps", "1", "--quiet", "--job-timeout", "120"]
    results = _wait_all(_start_cli_job([*common, "--checkpoint-dir", str(checkpoint)]), timeout=TIMEOUT)
    for code, _, stderr in results:
        assert code == 0, stderr[-3000:]
    accuracies = [line for _, stdout, _ in results for line in stdout.splitlines() if "validation accuracy" in line]
    assert len(accuracies) == 2 and accuracies[0] == accuracies[1]
    assert f"wrote classifier preset to {out}" in results[0][1]
    assert "process 1: the classifier preset is written by process 0" in results[1][1]
    # the preset and the checkpoint, whole; no staging folder left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint", "data", "model"]
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "labels.txt", "metadata.json", "model.weights.h5", "preprocessor.json"]
    state = checkpointing.read_state(checkpoint)
    assert (state.phase, state.epoch, state.step) == ("fine_tune", 2, 0), state  # 2 epochs done in all
    model = mobilenetv3.MobileNetV3ImageClassifier.from_preset(str(out))
    assert model.num_classes == 3
    assert model.predict(np.zeros((1, 32, 32, 3), "float32"), verbose=0).shape == (1, 3)

    # Resuming from checkpoints that differ between the processes would run
    # different programs (and hang on each other): both refuse instead.
    written = (out / "model.weights.h5").stat().st_mtime_ns
    other = tmp_path / "other_checkpoint"
    results = _wait_all(_start_cli_job([*common, "--resume"], per_process=(
        ["--checkpoint-dir", str(checkpoint)], ["--checkpoint-dir", str(other)])), timeout=TIMEOUT)
    for code, _, stderr in results:
        assert code == 2 and "`checkpoint_dir` differs between the processes of the job" in stderr, stderr[-3000:]
    assert (out / "model.weights.h5").stat().st_mtime_ns == written
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint", "data", "model"]


def _tf_worker(out: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(TF_WORKER), str(out), *args], env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _tf_job(out: Path, *args: str) -> list[subprocess.Popen]:
    addresses = ",".join(f"127.0.0.1:{p}" for p in _free_ports(2))
    return [_tf_worker(out, "--job", addresses, "--process-id", str(process_id), *args) for process_id in (0, 1)]


def _tf_finish(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        try:
            _, stderr = process.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            _, stderr = process.communicate()
        assert process.returncode == 0, stderr[-3000:]


def _diffs(single: dict, job: dict, statistics: bool) -> float:
    keys = [k for k in single if not k.startswith("initial/") and ("moving" in k) == statistics]
    return max(float(np.abs(single[k] - job[k]).max()) for k in keys)


# One lone process and two 2-process jobs, with and without synchronized
# BatchNorm, in one test: the lone process is the reference of both (one
# TensorFlow start-up less than a test each).
@pytest.mark.slow
def test_tf_multi_worker_equals_one_process_only_with_synchronized_batchnorm(tmp_path):
    # Keras' fit does not run under MultiWorkerMirroredStrategy
    # (keras-team/keras#20585): TensorFlow jobs train with
    # distributed.train_steps, a strategy.run loop.
    _tf_finish([_tf_worker(tmp_path / "single.npz"), *_tf_job(tmp_path / "sync.npz", "--sync-bn")])
    _tf_finish(_tf_job(tmp_path / "unsync.npz"))
    single, job, unsynchronized = (dict(np.load(tmp_path / f"{name}.npz")) for name in ("single", "sync", "unsync"))
    moved = max(float(np.abs(single[k] - single[f"initial/{k}"]).max()) for k in single if k.startswith("expanded_conv_10") and "moving" in k)
    assert moved > 1e-2  # the trained BatchNorm statistics did move
    statistics, weights = _diffs(single, job, True), _diffs(single, job, False)
    print(f"max |job - single|: weights {weights:.3g}, BatchNorm statistics {statistics:.3g}")
    assert statistics <= WEIGHT_TOLERANCE and weights <= WEIGHT_TOLERANCE
    # Without synchronization each worker normalizes its own 4 examples: the
    # statistics (and so the weights) differ from the global batch's. The
    # check above is not vacuous.
    statistics = _diffs(single, unsynchronized, True)
    print(f"max |job - single| BatchNorm statistics without sync: {statistics:.3g}")
    assert statistics > 100 * WEIGHT_TOLERANCE


def test_join_data_parallel_rejects_bad_arguments():
    from mobilenetv3.training import distributed

    with pytest.raises(ValueError, match="'host:port'"):
        distributed.join_data_parallel("127.0.0.1", 2, 0)
    with pytest.raises(ValueError, match="`num_processes` must be an integer >= 1"):
        distributed.join_data_parallel("127.0.0.1:1", 0, 0)
    with pytest.raises(ValueError, match="`process_id` must be an integer from 0 to 1"):
        distributed.join_data_parallel("127.0.0.1:1,127.0.0.1:2", 2, 2)
    assert distributed.active_job() is None and distributed.is_chief()


def test_synchronize_batchnorm_sets_every_batchnorm_on_tensorflow():
    import keras

    import mobilenetv3
    from mobilenetv3.training import distributed

    model = mobilenetv3.MobileNetV3ImageClassifier(mobilenetv3.MobileNetV3SmallBackbone(input_shape=(32, 32, 3)), 3)
    assert distributed.synchronize_batchnorm(model) == 34
    flags = {layer.synchronized for layer in model._flatten_layers() if isinstance(layer, keras.layers.BatchNormalization)}
    assert flags == ({True} if keras.backend.backend() == "tensorflow" else {False})


def _start_cli_job(common: list[str], ports: int = 1,
                   per_process: tuple[list[str], list[str]] = ([], [])) -> list[subprocess.Popen]:
    """Processes 0 and 1 of a `python -m mobilenetv3 *common` JAX job over
    127.0.0.1 (plus each process's own arguments), each in its own process
    group (so that a test can stop or kill all of it)."""
    addresses = ",".join(f"127.0.0.1:{p}" for p in _free_ports(ports))
    return [
        subprocess.Popen(
            [sys.executable, "-m", "mobilenetv3", *common, "--job-addresses", addresses, "--num-processes", "2",
             "--process-id", str(i), *extra],
            env={**os.environ, **JAX_ENV}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            start_new_session=True,
        )
        for i, extra in enumerate(per_process)
    ]


def _wait_all(processes: list[subprocess.Popen], timeout: float) -> list[tuple[int, str, str]]:
    """(exit code, stdout, stderr) of each; on timeout every process group
    is killed and the test fails (a hang)."""
    results = []
    for process in processes:
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for p in processes:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
            pytest.fail(f"a process of the job did not finish within {timeout} s (hang)")
        results.append((process.returncode, stdout, stderr))
    return results


def _wait_for(path: Path, processes: list[subprocess.Popen], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline or any(p.poll() is not None for p in processes):
            for p in processes:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
            outputs = [p.communicate()[1][-2000:] for p in processes]
            pytest.fail(f"{path} did not appear within {timeout} s: {outputs}")
        time.sleep(0.2)


def _long_job(tmp_path: Path, timeout_s: int) -> tuple[list[str], Path]:
    data = make_classification_folder(tmp_path / "data", classes=("circle", "square"), per_class=8, size=32)
    checkpoint = tmp_path / "checkpoint"
    return ["train", str(data), "--out", str(tmp_path / "model"), "--preset", "mobilenet_v3_small", "--no-weights",
            "--image-size", "32", "--batch-size", "4", "--head-epochs", "300", "--fine-tune-epochs", "0",
            "--validation-split", "0.25", "--quiet", "--checkpoint-dir", str(checkpoint), "--checkpoint-every-steps",
            "1", "--job-timeout", str(timeout_s)], checkpoint


# A peer killed mid-training: the JAX runtime aborts the survivor (SIGABRT,
# a C++ stack) or it waits in a collective until the stall watchdog ends it;
# either way its last line says what happened and gives the command that
# resumes from the checkpoint. Measured on the shared 2-core box: 75 s.
@pytest.mark.heavy  # 30-110 s of two JAX processes each: opt-in (`pytest -m heavy`), not in CI
def test_jax_job_survivor_of_a_killed_peer_says_how_to_resume(tmp_path):
    common, checkpoint = _long_job(tmp_path, timeout_s=40)
    processes = _start_cli_job(common)
    _wait_for(checkpoint / "state.json", processes, timeout=300)
    os.killpg(processes[1].pid, signal.SIGKILL)
    started = time.monotonic()
    (code, _, stderr), _ = _wait_all(processes, timeout=200)
    print(f"survivor ended after {time.monotonic() - started:.0f} s with {code}")
    assert code != 0
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("mobilenetv3 train: error: process 0 of the 2-process job "), stderr[-3000:]
    assert "resume every process" in last and last.endswith("--process-id 0 --resume")
    assert f"--checkpoint-dir {checkpoint}" in last and "--process-id 0" in last


# A peer that hangs (SIGSTOP): the survivor waits in a collective; the stall
# watchdog ends it after --job-timeout with one line, and the command's line
# says how to resume. Measured on the shared 2-core box: 70 s.
@pytest.mark.heavy  # 30-110 s of two JAX processes each: opt-in (`pytest -m heavy`), not in CI
def test_jax_job_stuck_collective_ends_with_the_watchdog_line(tmp_path):
    common, checkpoint = _long_job(tmp_path, timeout_s=15)
    processes = _start_cli_job(common)
    _wait_for(checkpoint / "state.json", processes, timeout=300)
    os.killpg(processes[1].pid, signal.SIGSTOP)
    try:
        code, _, stderr = _wait_all(processes[:1], timeout=150)[0]
    finally:
        os.killpg(processes[1].pid, signal.SIGKILL)
        processes[1].communicate()
    lines = stderr.strip().splitlines()
    assert code == 3, stderr[-3000:]
    assert "process 0 of the 2-process job made no progress for" in lines[-2], stderr[-3000:]
    assert "stopped after no progress for 15 s (--job-timeout)" in lines[-1] and "--resume" in lines[-1]
