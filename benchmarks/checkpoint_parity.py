"""The README's checkpoint table: every public MobileNetV3 checkpoint family,
converted, with the measured max |difference| against its own library.

Each checkpoint is made by the library itself with random weights (BatchNorm
statistics perturbed), saved in the library's own format, converted by this
package and compared on the same raw pixels at 224x224 and 193x257.

    python benchmarks/checkpoint_parity.py                       # every family
    python benchmarks/checkpoint_parity.py --families timm --quick

Run from the repository root (it uses the test oracles in tests/).
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

try:  # torchvision before TensorFlow (see tests/conftest.py)
    import torchvision  # noqa: F401
except ImportError:
    pass

import numpy as np  # noqa: E402

SIZES = ((224, 224), (193, 257))
Row = tuple[str, str, float, float]  # family, checkpoint, diff at 224, diff at 193x257


def _pixels(size: tuple[int, int]) -> np.ndarray:
    return np.random.default_rng(1).uniform(0, 255, (2, *size, 3)).astype("float32")


def timm_rows(folder: Path, quick: bool) -> Iterator[Row]:
    from mobilenetv3 import weights
    from mobilenetv3.weights import timm as timm_weights
    from tests.test_timm_weights import _max_diffs, _random_timm_model, _save

    tags = list(timm_weights.PRETRAINED_CFGS)
    for tag in tags[:3] if quick else tags:
        reference = _random_timm_model(tag)
        path, _ = _save(reference, folder, tag)
        model = weights.build_model(timm_weights.read(str(path)))
        yield ("timm", tag, *(_max_diffs(model, reference, size)[1] for size in SIZES))


def keras_hub_rows(folder: Path, quick: bool) -> Iterator[Row]:
    from mobilenetv3 import MobileNetV3ImageClassifier
    from tests.test_keras_hub_presets import _save_hub_classifier

    for index, architecture in enumerate(["mobilenetv3_small_050", "mobilenetv3_small_100", "mobilenetv3_large_100"]):
        if quick and index:
            break
        hub = _save_hub_classifier(folder / architecture, architecture, num_classes=1000)
        ours = MobileNetV3ImageClassifier.from_preset(str(folder / architecture))
        diffs = [np.abs(hub.predict(_pixels(s), verbose=0) - ours.predict(_pixels(s), verbose=0)).max() for s in SIZES]
        yield ("keras-hub", f"MobileNetImageClassifier ({architecture} config)", *map(float, diffs))


def _applications_variants(quick: bool) -> list[tuple]:
    variants = list(itertools.product(("small", "large"), (0.75, 1.0), (False, True), (True, False)))
    return variants[:1] if quick else variants


def keras3_rows(folder: Path, quick: bool) -> Iterator[Row]:
    import keras

    from mobilenetv3 import weights
    from mobilenetv3.weights import keras_applications
    from tests.keras_applications_oracle import randomize
    from tests.test_keras3_weights import _keras_model

    for family, alpha, minimal, top in _applications_variants(quick):
        reference = _keras_model(family, (224, 224), alpha, minimal, top)
        randomize(reference)
        path = folder / f"{family}_{alpha}_{minimal}_{top}.weights.h5"
        reference.save_weights(str(path))
        ours = weights.build_model(keras_applications.read(str(path)))
        diffs = []
        for size in SIZES:
            oracle = _keras_model(family, size, alpha, minimal, top)
            oracle.load_weights(str(path))
            pixels = _pixels(size)
            diffs.append(float(np.abs(np.asarray(oracle(pixels)) - keras.ops.convert_to_numpy(ours(pixels))).max()))
        name = f"{family} alpha {alpha}{' minimalistic' if minimal else ''}{' top' if top else ''}"
        yield ("keras.applications (Keras 3 .weights.h5)", name, *diffs)


FAMILIES: dict[str, Callable[[Path, bool], Iterator[Row]]] = {
    "timm": timm_rows,
    "keras-hub": keras_hub_rows,
    "keras3": keras3_rows,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--families", default=",".join(FAMILIES), help=f"comma-separated: {', '.join(FAMILIES)}")
    parser.add_argument("--quick", action="store_true", help="one checkpoint or few per family")
    args = parser.parse_args(argv)
    names = args.families.split(",")
    unknown = [n for n in names if n not in FAMILIES]
    if unknown:
        parser.error(f"unknown families {unknown}; choose from {list(FAMILIES)}")
    print("| family | checkpoint | max abs diff 224 | max abs diff 193x257 |")
    print("|---|---|---|---|")
    start = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            for family, checkpoint, at_224, at_odd in FAMILIES[name](Path(tmp), args.quick):
                print(f"| {family} | {checkpoint} | {at_224:.1e} | {at_odd:.1e} |", flush=True)
    print(f"\n({time.time() - start:.0f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
