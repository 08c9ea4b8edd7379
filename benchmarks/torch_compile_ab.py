"""Keras on PyTorch with `jit_compile=True` (torch.compile) vs eager and torchvision eager: same-process A/B.

Runs under KERAS_BACKEND=torch. Inference at batch 1 and 32 (interleaved rounds, medians):

- our classifier called eagerly (the package's channels-last fast paths),
- `model.compile(jit_compile=True)` + `predict_on_batch` (Keras wraps its predict step in `torch.compile`),
- with `--freezing`: `torch.compile` of the eager call with Inductor's `freezing` (weights
  constant-folded and pre-packed for oneDNN: the permuted/re-laid-out kernels computed once),
- torchvision eager, NCHW and channels-last.

With `--train`: one SGD training step at batch 32, Keras `train_on_batch` eager (the package's fused
BatchNorm), with Keras' own ops, and `jit_compile=True` (unless `--no-jit`) against torchvision eager,
NCHW and channels-last (same loss, same optimizer). Compile time is reported apart (first call).
The load average is printed beside every figure: on a shared machine only the ratios mean anything.

    KERAS_BACKEND=torch python benchmarks/torch_compile_ab.py [--model large] [--rounds 3] [--train]
"""

# ruff: noqa: I001  (torchvision must be imported before TensorFlow)
from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import torchvision  # noqa: F401, I001  (before TensorFlow: see tests/conftest.py)
import keras
import numpy as np
import torch

import mobilenetv3
from mobilenetv3.runtime import kernels


def _load() -> str:
    return "load " + "/".join(f"{x:.1f}" for x in os.getloadavg())


def _classifier(model: str) -> keras.Model:
    backbone = (mobilenetv3.MobileNetV3LargeBackbone if model == "large" else mobilenetv3.MobileNetV3SmallBackbone)
    return mobilenetv3.MobileNetV3ImageClassifier(backbone(input_shape=(224, 224, 3), include_rescaling=True),
                                                 num_classes=1000)


def _torchvision(model: str) -> torch.nn.Module:
    return (torchvision.models.mobilenet_v3_large if model == "large" else torchvision.models.mobilenet_v3_small)()


def _inputs(layout: str, batch: int) -> torch.Tensor:
    x = torch.from_numpy(np.random.default_rng(0).uniform(0, 255, (batch, 224, 224, 3)).astype("float32"))
    if layout == "nhwc":
        return x
    x = x.permute(0, 3, 1, 2)
    return x.contiguous(memory_format=torch.channels_last) if layout == "nchw_cl" else x.contiguous()


def _first_call(name: str, fn: Callable, x: torch.Tensor) -> None:
    start = time.perf_counter()
    with torch.no_grad():
        fn(x)
    print(f"  first call (compile) {name}: {time.perf_counter() - start:.1f} s ({_load()})", flush=True)


def inference_paths(model_name: str, freezing: bool, jit_compile: bool = True) -> dict[str, tuple[Callable, str]]:
    model = _classifier(model_name)
    jit = _classifier(model_name)
    jit.set_weights(model.get_weights())
    jit.compile(jit_compile=True)
    reference = _torchvision(model_name).eval()
    reference_cl = _torchvision(model_name).eval().to(memory_format=torch.channels_last)
    paths = {
        "keras eager call": (lambda x: model(x, training=False), "nhwc"),
        "keras jit_compile=True predict_on_batch": (lambda x: jit.predict_on_batch(x), "nhwc"),
        "torchvision eager": (reference, "nchw"),
        "torchvision eager channels-last": (reference_cl, "nchw_cl"),
    }
    if not jit_compile:
        del paths["keras jit_compile=True predict_on_batch"]
    if freezing:
        frozen_model = _classifier(model_name)
        frozen_model.set_weights(model.get_weights())
        frozen = torch.compile(lambda x: frozen_model(x, training=False), options={"freezing": True})
        paths["torch.compile(freezing) of the keras call"] = (frozen, "nhwc")
    return paths


def _seconds(fn: Callable, x: torch.Tensor, runs: int) -> float:
    with torch.no_grad():
        start = time.perf_counter()
        for _ in range(runs):
            fn(x)
    return (time.perf_counter() - start) / runs


def inference_ab(model_name: str, rounds: int, freezing: bool, jit_compile: bool = True) -> None:
    paths = inference_paths(model_name, freezing, jit_compile)
    for batch, runs in ((1, 10), (32, 1)):
        for name, (fn, layout) in list(paths.items()):
            try:
                _first_call(f"{name} batch {batch}", fn, _inputs(layout, batch))
            except Exception as error:  # noqa: BLE001  (report the failing path, keep the others)
                lines = [line for line in str(error).splitlines() if "Error" in line] or [str(error)]
                print(f"  {name} failed: {type(error).__name__}: {lines[-1].strip()[:300]}")
                del paths[name]
        times: dict[str, list[float]] = {k: [] for k in paths}
        for _ in range(rounds):
            for name, (fn, layout) in paths.items():
                times[name].append(_seconds(fn, _inputs(layout, batch), runs))
        speeds = {k: batch / statistics.median(v) for k, v in times.items()}
        base = speeds["torchvision eager"]
        print(f"{model_name} batch {batch} ({_load()}):")
        for name, speed in speeds.items():
            print(f"  {name}: {speed:.1f} img/s ({speed / base:.2f}x torchvision eager)", flush=True)


def _keras_ops(step: Callable) -> Callable:
    """`step` with the package's PyTorch fast paths off (Keras' own conv and BatchNorm ops)."""

    def run(x: torch.Tensor) -> Any:
        kernels.TORCH_FAST_PATHS = False
        try:
            return step(x)
        finally:
            kernels.TORCH_FAST_PATHS = True

    return run


def _torchvision_step(model_name: str, batch: int, labels: np.ndarray, channels_last: bool) -> tuple:
    reference = _torchvision(model_name).train()
    if channels_last:
        reference = reference.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(reference.parameters(), lr=1e-3)
    loss = torch.nn.CrossEntropyLoss()
    target = torch.from_numpy(labels)

    def step(x: torch.Tensor) -> None:
        optimizer.zero_grad()
        loss(reference(x), target).backward()
        optimizer.step()

    return step, _inputs("nchw_cl" if channels_last else "nchw", batch)


def train_ab(model_name: str, rounds: int, batch: int = 32, jit_compile: bool = True) -> None:
    labels = np.random.default_rng(1).integers(0, 1000, batch)
    steps = {}
    for jit in (False, True) if jit_compile else (False,):
        model = _classifier(model_name)
        model.compile(optimizer=keras.optimizers.SGD(1e-3), jit_compile=jit,
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        steps[f"keras train_on_batch jit_compile={jit}"] = (
            lambda x, model=model: model.train_on_batch(x, labels), _inputs("nhwc", batch))
    own = _classifier(model_name)
    own.compile(optimizer=keras.optimizers.SGD(1e-3), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    steps["keras train_on_batch, Keras' own ops"] = (
        _keras_ops(lambda x: own.train_on_batch(x, labels)), _inputs("nhwc", batch))
    steps["torchvision eager"] = _torchvision_step(model_name, batch, labels, channels_last=False)
    steps["torchvision eager channels-last"] = _torchvision_step(model_name, batch, labels, channels_last=True)
    for name, (step, x) in steps.items():
        start = time.perf_counter()
        step(x)
        print(f"  first step {name}: {time.perf_counter() - start:.1f} s ({_load()})", flush=True)
    times: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(rounds):
        for name, (step, x) in steps.items():
            start = time.perf_counter()
            step(x)
            times[name].append(time.perf_counter() - start)
    base = batch / statistics.median(times["torchvision eager"])
    print(f"{model_name} training step batch {batch} ({_load()}):")
    for name, values in times.items():
        speed = batch / statistics.median(values)
        print(f"  {name}: {speed:.1f} img/s ({speed / base:.2f}x torchvision eager)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("small", "large"), default="large")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--train", action="store_true", help="also a training step at batch 32")
    parser.add_argument("--no-inference", action="store_true")
    parser.add_argument("--no-jit", action="store_true", help="skip Keras' jit_compile=True inference path")
    parser.add_argument("--freezing", action="store_true",
                        help="also torch.compile with Inductor freezing (weights pre-packed once)")
    args = parser.parse_args()
    assert keras.backend.backend() == "torch", "run with KERAS_BACKEND=torch"
    torch.set_num_threads(args.threads)
    if not args.no_inference:
        inference_ab(args.model, args.rounds, args.freezing, not args.no_jit)
    if args.train:
        train_ab(args.model, args.rounds, jit_compile=not args.no_jit)


if __name__ == "__main__":
    main()
