"""Minimal reproduction: Keras' per-layer call cost on the PyTorch backend (no mobilenetv3 code).

A functional model of N `keras.layers.Activation("relu")` layers on a tiny tensor, so that the
arithmetic is nothing and what is timed is the call machinery: `model(x)` (every layer through
`Layer.__call__`: input conversion, call spec, name scope, masks, autocast scope, call context),
against the same graph run by calling each layer's `call` directly (what `mobilenetv3.runtime.direct_call`
does for the package's models at inference), against a `torch.nn.Sequential` of N `torch.nn.ReLU`.
Prints microseconds per layer.

    KERAS_BACKEND=torch python benchmarks/keras_torch_call_overhead_repro.py [--layers 200]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import keras
import torch


def _microseconds_per_layer(fn: Callable, layers: int, runs: int = 50, rounds: int = 5) -> float:
    fn()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(runs):
            fn()
        times.append((time.perf_counter() - start) / runs)
    return statistics.median(times) / layers * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=200)
    args = parser.parse_args()
    assert keras.backend.backend() == "torch", "run with KERAS_BACKEND=torch"
    torch.set_num_threads(1)
    inputs = keras.Input((8,))
    x = inputs
    for _ in range(args.layers):
        x = keras.layers.Activation("relu")(x)
    model = keras.Model(inputs, x)
    reference = torch.nn.Sequential(*[torch.nn.ReLU() for _ in range(args.layers)])
    data = torch.ones(1, 8)

    def direct() -> torch.Tensor:
        return model._run_through_graph([data], operation_fn=lambda operation: operation.call)

    with torch.no_grad():
        paths = {
            "keras model(x) (Layer.__call__ per layer)": lambda: model(data),
            "same graph, each layer's call directly": direct,
            "torch.nn.Sequential of torch.nn.ReLU": lambda: reference(data),
        }
        for name, fn in paths.items():
            print(f"{name}: {_microseconds_per_layer(fn, args.layers):.1f} us per layer")


if __name__ == "__main__":
    main()
