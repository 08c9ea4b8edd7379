"""Where the Keras PyTorch backend spends MobileNetV3's time (same-process A/B).

Runs under KERAS_BACKEND=torch: our classifier (random weights) called
eagerly under `torch.no_grad()`, with Keras' own ops, through
`predict_on_batch` and folded, against torchvision's eager model (NCHW and
channels-last), batch 1 and 32, interleaved rounds (medians); then the
torch.profiler top ops of the Keras model at batch 32.

    KERAS_BACKEND=torch python benchmarks/torch_backend_profile.py [--model small] [--rounds 5] [--threads 1] [--profile]
"""

# ruff: noqa: I001  (torchvision must be imported before TensorFlow)
from __future__ import annotations

import argparse
import os
import statistics
import time

import torchvision  # noqa: F401, I001  (before TensorFlow: see tests/conftest.py)
import keras
import torch

import mobilenetv3
from torch_compile_ab import _inputs, _keras_ops  # same folder: one input maker and fast-paths-off switch


def _time(fn, x, runs: int) -> float:
    with torch.no_grad():
        fn(x)
        start = time.perf_counter()
        for _ in range(runs):
            fn(x)
    return (time.perf_counter() - start) / runs


def _train_steps(model, loss, optimizer, x, y, runs: int) -> float:
    """Seconds per plain PyTorch training step (forward, backward, SGD update)."""

    def step():
        optimizer.zero_grad()
        loss(model(x), y).backward()
        optimizer.step()

    step()
    start = time.perf_counter()
    for _ in range(runs):
        step()
    return (time.perf_counter() - start) / runs


def candidates(threads: int, model_name: str = "large") -> dict:
    torch.set_num_threads(threads)
    backbone = mobilenetv3.MobileNetV3LargeBackbone if model_name == "large" else mobilenetv3.MobileNetV3SmallBackbone
    model = mobilenetv3.MobileNetV3ImageClassifier(backbone(input_shape=(224, 224, 3), include_rescaling=True),
                                                  num_classes=1000)
    folded = mobilenetv3.fold_batch_norm(model)
    build = torchvision.models.mobilenet_v3_large if model_name == "large" else torchvision.models.mobilenet_v3_small
    reference = build().eval()
    reference_cl = build().eval().to(memory_format=torch.channels_last)
    return {
        "keras (torch backend), Keras' own ops": (_keras_ops(lambda x: model(x, training=False)), "nhwc"),
        "keras (torch backend), eager call": (lambda x: model(x, training=False), "nhwc"),
        "keras (torch backend), predict_on_batch": (model.predict_on_batch, "nhwc"),
        "keras (torch backend), folded predict_on_batch": (folded.predict_on_batch, "nhwc"),
        "torchvision eager": (reference, "nchw"),
        "torchvision eager channels-last": (reference_cl, "nchw_cl"),
    }


def train_step_ab(threads: int, batch: int = 32, runs: int = 1) -> None:
    """A training step at `batch`: Keras model (as a torch.nn.Module) vs torchvision, SGD, same loss."""
    torch.set_num_threads(threads)
    model = mobilenetv3.MobileNetV3ImageClassifier(
        mobilenetv3.MobileNetV3LargeBackbone(input_shape=(224, 224, 3), include_rescaling=True), num_classes=1000)
    reference = torchvision.models.mobilenet_v3_large().train()
    loss = torch.nn.CrossEntropyLoss()
    labels = torch.randint(0, 1000, (batch,))

    def keras_forward(x):
        return model(x, training=True)

    steps = {
        "keras (torch backend)": (keras_forward, model.parameters(), "nhwc"),
        "torchvision eager": (reference, reference.parameters(), "nchw"),
    }
    for name, (forward, parameters, layout) in steps.items():
        optimizer = torch.optim.SGD(list(parameters), lr=1e-3)
        seconds = _train_steps(forward, loss, optimizer, _inputs(layout, batch), labels, runs)
        print(f"training step, batch {batch}: {name} {batch / seconds:.1f} img/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--model", choices=("small", "large"), default="large")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--train", action="store_true", help="also one training step at batch 32")
    parser.add_argument("--profile-path", default="keras (torch backend), eager call")
    args = parser.parse_args()
    assert keras.backend.backend() == "torch", "run with KERAS_BACKEND=torch"
    paths = candidates(args.threads, args.model)
    for batch, runs in ((1, 10), (32, 1)):
        times = {k: [] for k in paths}
        for _ in range(args.rounds):
            for name, (fn, layout) in paths.items():
                times[name].append(_time(fn, _inputs(layout, batch), runs))
        speeds = {k: batch / statistics.median(v) for k, v in times.items()}
        base = speeds["torchvision eager"]
        print(f"{args.model} batch {batch} (load {os.getloadavg()}):")
        for name, speed in speeds.items():
            print(f"  {name}: {speed:.1f} img/s, {1000 * batch / speed:.1f} ms per call ({speed / base:.2f}x)")
    if args.train:
        train_step_ab(args.threads)
    if args.profile:
        fn, layout = paths[args.profile_path]
        x = _inputs(layout, 32)
        with torch.no_grad(), torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            fn(x)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
    print(f"load average: {os.getloadavg()}")


if __name__ == "__main__":
    main()
