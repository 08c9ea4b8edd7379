"""Minimal reproduction: Keras 3's PyTorch conv copies a channels-last input twice.

`keras.src.backend.torch.nn.conv` runs `permute(0, 3, 1, 2).contiguous()`
(an NCHW copy) and then `.contiguous(memory_format=torch.channels_last)`
(a copy back to the original memory order) before `conv2d`, while the
permuted view of an NHWC tensor already is a channels-last NCHW tensor.
This counts `aten::copy_` calls and times one 1x1 conv (MobileNetV3-Large's
112x112x64 expand) both ways; the outputs are identical.

    KERAS_BACKEND=torch python benchmarks/keras_torch_conv_repro.py
"""

from __future__ import annotations

import time

import keras
import numpy as np
import torch
import torch.nn.functional as functional


def _copies(fn) -> int:
    with torch.no_grad(), torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fn()
    return sum(e.count for e in prof.key_averages() if e.key == "aten::copy_")


def _seconds(fn, runs: int = 20) -> float:
    with torch.no_grad():
        fn()
        start = time.perf_counter()
        for _ in range(runs):
            fn()
    return (time.perf_counter() - start) / runs


def main() -> None:
    assert keras.backend.backend() == "torch", "run with KERAS_BACKEND=torch"
    x = torch.tensor(np.random.default_rng(0).normal(size=(32, 112, 112, 64)).astype("float32"))
    layer = keras.layers.Conv2D(64, 1, use_bias=False)
    layer.build(x.shape)
    kernel = layer.kernel.value.permute(3, 2, 0, 1)

    def keras_conv():
        return layer(x)

    def view_conv():
        return functional.conv2d(x.permute(0, 3, 1, 2), kernel).permute(0, 2, 3, 1)

    print("max difference:", float((keras_conv() - view_conv()).abs().max()))
    for name, fn in (("keras.layers.Conv2D", keras_conv), ("conv2d on the permuted view", view_conv)):
        print(f"{name}: {_copies(fn)} aten::copy_, {_seconds(fn) * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
