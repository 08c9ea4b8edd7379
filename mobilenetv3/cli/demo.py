"""`mobilenetv3 demo`: the library's main job, offline, in well under a minute."""

from __future__ import annotations

import argparse
import time

import numpy as np

from mobilenetv3.cli.info import format_table, preset_rows
from mobilenetv3.utils import scratch_dir


def synthetic_images(count: int = 4, size: int = 224, seed: int = 0) -> np.ndarray:
    """Images the package makes itself: gradients with a bright disc and a
    dark square at random places, as uint8-range floats (0..255)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    batch = []
    for _ in range(count):
        base = np.stack([xx, yy, 1 - xx], axis=-1) * rng.uniform(60, 200, 3)
        cy, cx, r = rng.uniform(0.25, 0.75, 2).tolist() + [rng.uniform(0.1, 0.2)]
        base[(yy - cy) ** 2 + (xx - cx) ** 2 < r**2] = rng.uniform(200, 255, 3)
        sy, sx = rng.integers(0, size // 2, 2)
        base[sy : sy + size // 4, sx : sx + size // 4] = rng.uniform(0, 50, 3)
        batch.append(base + rng.normal(0, 8, base.shape))
    return np.clip(np.stack(batch), 0, 255).astype("float32")


def run(args: argparse.Namespace) -> int:
    import keras

    import mobilenetv3

    start = time.perf_counter()
    print(f"mobilenetv3 {mobilenetv3.__version__} on Keras {keras.__version__} ({keras.backend.backend()} backend)\n")
    print("Presets (built offline from the packaged architecture tables):")
    print(format_table(preset_rows(["mobilenet_v3_small", "mobilenet_v3_large"])))

    images = synthetic_images()
    print(f"\nRunning {len(images)} generated 224x224 images through each backbone:")
    for alias in (mobilenetv3.MobileNetV3SmallBackbone, mobilenetv3.MobileNetV3LargeBackbone):
        backbone = alias()
        features = backbone.feature_extractor(["P1", "P2", "P3", "P4", "P5", "last"])(images)
        print(f"\n  {alias.__name__}: {backbone.count_params():,} parameters")
        for level, tensor in features.items():
            array = keras.ops.convert_to_numpy(tensor)
            layer = backbone.feature_layers[level]
            print(f"    {level:<5} {str(array.shape):<20} from {layer:<34} mean {array.mean():+.3f}")

    with scratch_dir("demo") as folder:
        backbone = mobilenetv3.MobileNetV3SmallBackbone()
        backbone.save_to_preset(f"{folder}/preset")
        again = mobilenetv3.MobileNetV3Backbone.from_preset(f"{folder}/preset")
        diff = np.abs(keras.ops.convert_to_numpy(backbone(images) - again(images))).max()
        print(f"\nsave_to_preset -> from_preset round trip: max abs difference {diff:.1e}")
    print(f"\nDone in {time.perf_counter() - start:.1f} s.")
    return 0 if diff == 0 else 1


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("demo", help="build the presets and run generated images through them (offline)")
    parser.set_defaults(func=run)
