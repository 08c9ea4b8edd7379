"""Corrupted and foreign weight files in every format the package reads
(issue #14, part C): each outcome is a clear error, or, for the corruptions
the table of docs/presets-and-weights.md lists as undetectable in a format, a documented
limitation. Never a crash (an error that is not a ValueError) and never
silently wrong numbers elsewhere.

Corruptions: truncate, flip bytes (random bytes written at random places),
NaN-fill one tensor, drop one tensor, swap in another network. Run with -s
to see the counts per format.
"""

from __future__ import annotations

import collections
import random
import shutil
from pathlib import Path

import keras
import numpy as np
import pytest

from mobilenetv3 import MobileNetV3Backbone, presets
from mobilenetv3.presets import conversion as converter

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="tf-keras and TFLite write the files"),
]

# (format, corruption) pairs the format cannot always detect (docs/presets-and-weights.md, "Weight-file integrity").
UNDETECTABLE = {("keras-applications", "flip"), ("keras-cv", "flip"), ("timm-safetensors", "flip"),
                ("tflite", "flip")}
SEEDS = (0, 1, 2)
TRUNCATIONS = (0.3, 0.9, 0.999)


# -- intact files, one per format ---------------------------------------------


def _torch_save(state: dict, path: Path) -> Path:
    import torch

    torch.save(state, path)
    return path


def _safetensors_save(state: dict, path: Path) -> Path:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path


def _torchvision(path: Path, network: str = "mobilenet_v3_small") -> Path:
    import torchvision

    return _torch_save(getattr(torchvision.models, network)(weights=None).state_dict(), path)


def _timm(path: Path, network: str = "mobilenetv3_small_100") -> Path:
    import timm

    state = timm.create_model(network, pretrained=False).state_dict()
    return (_safetensors_save if path.suffix == ".safetensors" else _torch_save)(state, path)


def _keras_applications(path: Path, family: str = "small") -> Path:
    from tests.keras_applications_oracle import write_file

    return write_file(path, family, include_top=True)


def _keras_cv(path: Path, family: str = "small") -> Path:
    config = presets.get(f"mobilenet_v3_{family}").config
    MobileNetV3Backbone(**config, input_shape=(224, 224, 3)).save_to_preset(path)
    return path / "model.weights.h5"


def _tflite(path: Path, shared_fixtures: Path) -> Path:
    shutil.copy(shared_fixtures / "tflite" / "v3-small_224_1.0_uint8.tflite", path)
    return path


def _foreign_tflite(path: Path) -> Path:
    import tensorflow as tf

    kernel = tf.constant(np.random.default_rng(0).normal(size=(3, 3, 3, 8)).astype("float32"))

    @tf.function(input_signature=[tf.TensorSpec((1, 32, 32, 3), tf.float32)])
    def net(x):
        return tf.nn.relu(tf.nn.conv2d(x, kernel, 1, "SAME"))

    converter_ = tf.lite.TFLiteConverter.from_concrete_functions([net.get_concrete_function()], net)
    path.write_bytes(converter_.convert())
    return path


# -- corruptions ----------------------------------------------------------------


def _truncate(path: Path, fraction: float) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])


def _flip(path: Path, seed: int, count: int = 32) -> None:
    data = bytearray(path.read_bytes())
    chooser = random.Random(seed)
    for _ in range(count):
        data[chooser.randrange(len(data) // 5, len(data))] = chooser.randrange(256)
    path.write_bytes(bytes(data))


def _edit_torch(path: Path, edit) -> None:
    import torch

    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
        edit(state)
        _safetensors_save(state, path)
    else:
        state = torch.load(path, weights_only=True)
        edit(state)
        torch.save(state, path)


def _edit_h5(path: Path, nan: bool) -> None:
    import h5py

    with h5py.File(path, "r+") as f:
        names = []
        f.visititems(lambda name, item: names.append(name) if isinstance(item, h5py.Dataset) and item.ndim == 4 else None)
        name = sorted(names)[len(names) // 2]
        if nan:
            f[name][...] = np.nan
        else:
            del f[name]


def _torch_key(state: dict) -> str:
    return sorted(k for k in state if k.endswith("weight") and state[k].ndim == 4)[5]


def _nan_torch(state: dict) -> None:
    state[_torch_key(state)].fill_(float("nan"))


def _drop_torch(state: dict) -> None:
    del state[_torch_key(state)]


# -- the test -------------------------------------------------------------------------


FORMATS = {
    # name: (reader format, file name, writer)
    "torchvision": ("torchvision", "mobilenet_v3_small.pth", _torchvision),
    "timm-safetensors": ("timm", "mobilenetv3_small_100.safetensors", _timm),
    "timm-pth": ("timm", "mobilenetv3_small_100.pth", _timm),
    "keras-applications": ("keras-applications", "weights_small.h5", _keras_applications),
    "keras-cv": ("keras-cv", "kcv_preset", _keras_cv),
}


def _cases(name: str) -> list[tuple[str, object]]:
    cases = [("truncate", lambda p, f=f: _truncate(p, f)) for f in TRUNCATIONS]
    cases += [("flip", lambda p, s=s: _flip(p, s)) for s in SEEDS]
    if name in ("torchvision", "timm-safetensors", "timm-pth"):
        cases += [("nan", lambda p: _edit_torch(p, _nan_torch)), ("drop", lambda p: _edit_torch(p, _drop_torch))]
    elif name != "tflite":  # a uint8 graph has no NaN; its tensors are its graph.
        cases += [("nan", lambda p: _edit_h5(p, True)), ("drop", lambda p: _edit_h5(p, False))]
    return cases


def _swap(name: str, folder: Path) -> Path:
    """A file of another network under the format's name."""
    if name == "torchvision":
        return _torchvision(folder / "mobilenet_v3_small.pth", "mobilenet_v2")
    if name.startswith("timm"):
        suffix = ".safetensors" if name.endswith("safetensors") else ".pth"
        return _timm(folder / f"mobilenetv3_small_100{suffix}", "efficientnet_b0")
    if name == "keras-applications":
        import tf_keras

        path = folder / "weights_small.h5"
        tf_keras.applications.MobileNetV2(weights=None).save_weights(str(path))
        return path
    if name == "keras-cv":  # a Large backbone's weights under a Small config
        small = _keras_cv(folder / "kcv_preset")
        large = _keras_cv(folder / "large", "large")
        shutil.copy(large, small)
        return small
    return _foreign_tflite(folder / "v3-small_224_1.0_uint8.tflite")


def _outcome(reader: str, path: Path, intact: list[np.ndarray]) -> tuple[str, str]:
    source = str(path.parent if reader == "keras-cv" else path)
    try:
        model, _ = converter.load(source, reader)
    except ValueError as error:
        message = str(error)
        if "weights_only=False" in message or not message:
            return "crash", message
        return "clear error", message
    except Exception as error:  # noqa: BLE001 - anything else is the defect counted
        return "crash", f"{type(error).__name__}: {error}"
    got = model.get_weights()
    same = len(got) == len(intact) and all(np.array_equal(a, b) for a, b in zip(got, intact))
    return ("no effect" if same else "silent wrong"), ""


def test_every_corruption_is_caught_or_documented(tmp_path, shared_fixtures):
    formats = {**FORMATS, "tflite": ("tflite", "v3-small_224_1.0_uint8.tflite", None)}
    counts: dict = collections.defaultdict(collections.Counter)
    failures = []
    for name, (reader, filename, writer) in formats.items():
        base = tmp_path / name / "intact"
        base.mkdir(parents=True)
        original = _tflite(base / filename, shared_fixtures) if writer is None else writer(base / filename)
        intact = converter.load(str(original.parent if reader == "keras-cv" else original), reader)[0].get_weights()
        cases = [*_cases(name), ("swap", None)]
        for index, (corruption, corrupt) in enumerate(cases):
            folder = tmp_path / name / f"case{index}"
            if corrupt is None:
                folder.mkdir()
                path = _swap(name, folder)
            else:
                shutil.copytree(base, folder)
                path = folder / original.relative_to(base)
                corrupt(path)
            outcome, message = _outcome(reader, path, intact)
            counts[name][outcome] += 1
            counts[name, corruption][outcome] += 1
            allowed = {"clear error", "no effect"} | ({"silent wrong"} if (name, corruption) in UNDETECTABLE else set())
            if outcome not in allowed:
                failures.append(f"{name} {corruption} #{index}: {outcome} {message[:300]}")
    total = sum((c for k, c in counts.items() if isinstance(k, str)), collections.Counter())
    print("\ncorruption outcomes per format:", {k: dict(v) for k, v in counts.items() if isinstance(k, str)})
    print("per format and corruption:", {f"{k[0]}/{k[1]}": dict(v) for k, v in counts.items() if isinstance(k, tuple)})
    print("total:", dict(total), "tried:", sum(total.values()))
    assert not failures, "\n".join(failures)
