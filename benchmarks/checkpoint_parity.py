"""The checkpoint table of docs/presets-and-weights.md: every public MobileNetV3 checkpoint family,
converted, with the measured max |difference| against its own library.

Each checkpoint is made by the library itself with random weights (BatchNorm
statistics perturbed), saved in the library's own format, converted by this
package and compared with the library's own model on the same inputs at
224x224 and 193x257 (an odd size exercises padding). The TF-slim / MediaPipe
TFLite rows are the real released files (../shared/fixtures) against the
TFLite runtime on real images at their fixed 224x224.

    python benchmarks/checkpoint_parity.py                       # every family
    python benchmarks/checkpoint_parity.py --families timm,tflite --quick

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
sys.path.insert(0, str(ROOT / "tests"))

try:  # torchvision before TensorFlow (see tests/conftest.py)
    import torchvision  # noqa: F401
except ImportError:
    pass

import numpy as np  # noqa: E402

SIZES = ((224, 224), (193, 257))
SHARED = ROOT.parent / "shared" / "fixtures"
# family, checkpoint, what is compared, diff at 224, diff at 193x257 (None: not applicable)
Row = tuple[str, str, str, "float | None", "float | None"]
LOGITS = "logits"
FEATURES = "backbone features"


def _pixels(size: tuple[int, int]) -> np.ndarray:
    return np.random.default_rng(1).uniform(0, 255, (2, *size, 3)).astype("float32")


def timm_rows(folder: Path, quick: bool) -> Iterator[Row]:
    from mobilenetv3.presets import loader
    from mobilenetv3.weights import timm as timm_weights
    from tests.test_timm_weights import _max_diffs, _random_timm_model, _save

    tags = list(timm_weights.PRETRAINED_CFGS)
    for tag in tags[:3] if quick else tags:
        reference = _random_timm_model(tag)
        path, _ = _save(reference, folder, tag)
        model = loader.build_model(timm_weights.read(str(path)))
        yield ("timm", tag, LOGITS, *(_max_diffs(model, reference, size)[1] for size in SIZES))


def keras_hub_rows(folder: Path, quick: bool) -> Iterator[Row]:
    from mobilenetv3 import MobileNetV3ImageClassifier
    from tests.test_keras_hub_presets import _save_hub_classifier

    for index, architecture in enumerate(["mobilenetv3_small_050", "mobilenetv3_small_100", "mobilenetv3_large_100"]):
        if quick and index:
            break
        hub = _save_hub_classifier(folder / architecture, architecture, num_classes=1000)
        ours = MobileNetV3ImageClassifier.from_preset(str(folder / architecture))
        diffs = [np.abs(hub.predict(_pixels(s), verbose=0) - ours.predict(_pixels(s), verbose=0)).max() for s in SIZES]
        yield ("keras-hub", f"MobileNetImageClassifier ({architecture} config)", LOGITS, *map(float, diffs))


def _applications_variants(quick: bool) -> list[tuple]:
    variants = list(itertools.product(("small", "large"), (0.75, 1.0), (False, True), (True, False)))
    return variants[:1] if quick else variants


def keras3_rows(folder: Path, quick: bool) -> Iterator[Row]:
    import keras

    from mobilenetv3.presets import loader
    from mobilenetv3.weights import keras_applications
    from tests.keras_applications_oracle import randomize
    from tests.test_keras3_weights import _keras_model

    for family, alpha, minimal, top in _applications_variants(quick):
        reference = _keras_model(family, (224, 224), alpha, minimal, top)
        randomize(reference)
        path = folder / f"{family}_{alpha}_{minimal}_{top}.weights.h5"
        reference.save_weights(str(path))
        ours = loader.build_model(keras_applications.read(str(path)))
        diffs = []
        for size in SIZES:
            oracle = _keras_model(family, size, alpha, minimal, top)
            oracle.load_weights(str(path))
            pixels = _pixels(size)
            diffs.append(float(np.abs(np.asarray(oracle(pixels)) - keras.ops.convert_to_numpy(ours(pixels))).max()))
        yield ("keras.applications (Keras 3 .weights.h5)", _variant_name(family, alpha, minimal, top),
               LOGITS if top else FEATURES, *diffs)


def _variant_name(family: str, alpha: float, minimal: bool, top: bool) -> str:
    return f"{family} alpha {alpha}{' minimalistic' if minimal else ''}{' with top' if top else ' no top'}"


def _max_diff(a: object, b: object) -> float:
    import keras

    return float(np.abs(keras.ops.convert_to_numpy(a) - keras.ops.convert_to_numpy(b)).max())


def keras2_rows(folder: Path, quick: bool) -> Iterator[Row]:
    """keras.applications `.h5` files as Keras 2 (tf-keras) writes them."""
    from mobilenetv3.presets import loader
    from mobilenetv3.weights import keras_applications
    from tests.keras_applications_oracle import tf_keras_model, write_file

    for family, alpha, minimal, top in _applications_variants(quick):
        options = {"alpha": alpha, "minimalistic": minimal}
        path = write_file(folder / f"{family}_{alpha}_{minimal}_{top}.h5", family, top, **options)
        ours = loader.build_model(keras_applications.read(str(path)))
        diffs = []
        for size in SIZES:
            oracle = tf_keras_model(family, (*size, 3), top, **options)
            oracle.load_weights(str(path))
            pixels = _pixels(size)
            diffs.append(_max_diff(oracle(pixels, training=False), ours(pixels, training=False)))
        yield ("keras.applications (Keras 2 .h5)", _variant_name(family, alpha, minimal, top),
               LOGITS if top else FEATURES, *diffs)


def keras_cv_rows(folder: Path, quick: bool) -> Iterator[Row]:
    """keras-cv 0.9.0 `MobileNetV3Backbone`, built offline from its block
    tables (our presets' `stackwise_*`), saved with keras-cv's own
    `save_to_preset` and read back by `MobileNetV3Backbone.from_preset`.

    keras-cv is compared built at each static input size: with an unknown
    size (input_shape (None, None, 3)) it pads every stride-2 depthwise as
    for an even size, so at 193x257 its feature map is 6x8, not TF "SAME"'s
    7x9 (its static-size graph, and ours, give 7x9)."""
    import keras_cv
    from keras_cv.src.utils.preset_utils import save_to_preset

    from mobilenetv3 import MobileNetV3Backbone, presets
    from tests.helpers import randomize

    for family in ("small", "large")[: 1 if quick else 2]:
        config = presets.PRESETS[f"mobilenet_v3_{family}"].config
        stackwise = {k: v for k, v in config.items() if k.startswith("stackwise_")}
        theirs = keras_cv.models.MobileNetV3Backbone(**stackwise, include_rescaling=True)
        randomize(theirs, seed=1)
        save_to_preset(theirs, str(folder / f"keras_cv_{family}"))
        ours = MobileNetV3Backbone.from_preset(str(folder / f"keras_cv_{family}"))
        theirs.save_weights(str(folder / f"keras_cv_{family}.weights.h5"))
        diffs = []
        for size in SIZES:
            static = keras_cv.models.MobileNetV3Backbone(**stackwise, include_rescaling=True, input_shape=(*size, 3))
            static.load_weights(str(folder / f"keras_cv_{family}.weights.h5"))
            diffs.append(_max_diff(static(_pixels(size), training=False), ours(_pixels(size), training=False)))
        yield ("keras-cv 0.9.0", f"MobileNetV3Backbone {family} preset folder", f"{FEATURES} (static size)", *diffs)


def _nchw(size: tuple[int, int]) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(2, 3, *size)).astype("float32")


def _torch_vs_ours(oracle: object, ours: object, size: tuple[int, int]) -> float:
    from torch_oracle import keras_forward, torch_forward

    x = _nchw(size)
    return _max_diff(keras_forward(ours, x), torch_forward(oracle, x))


def torchvision_rows(folder: Path, quick: bool) -> Iterator[Row]:
    """torchvision classifiers, LR-ASPP, DeepLabV3, SSDLite and the Faster
    R-CNN MobileNetV3 bodies (random weights and BatchNorm statistics)."""
    from torch_oracle import deeplabv3_oracle, faster_rcnn_oracle, lraspp_oracle, randomized, save_state_dict

    from mobilenetv3 import weights
    from mobilenetv3.presets import loader

    def convert(path: str) -> object:
        return loader.build_model(weights.read(path, "torchvision"), include_rescaling=False)

    for family in ("small", "large")[: 1 if quick else 2]:
        oracle = randomized(getattr(torchvision.models, f"mobilenet_v3_{family}")(weights=None), seed=1)
        ours = convert(save_state_dict(oracle, folder, f"{family}.pth"))
        yield ("torchvision", f"mobilenet_v3_{family}", LOGITS, *(_torch_vs_ours(oracle, ours, s) for s in SIZES))
    for name, make in (("lraspp_mobilenet_v3_large", lraspp_oracle), ("deeplabv3_mobilenet_v3_large", deeplabv3_oracle)):
        sub = folder / name
        sub.mkdir()
        oracle, path = make(sub)
        ours = convert(path)
        yield ("torchvision", f"{name} (21 classes)", "segmentation logits",
               *(_torch_vs_ours(oracle, ours, s) for s in SIZES))
        if quick:
            return
    yield ssdlite_row()
    for name in ("fasterrcnn_mobilenet_v3_large_fpn", "fasterrcnn_mobilenet_v3_large_320_fpn"):
        sub = folder / name
        sub.mkdir()
        oracle, path = faster_rcnn_oracle(sub, name)
        extractor = convert(path).feature_extractor(["block_12", "last"])
        diffs = []
        for size in SIZES:
            expected = _torch_dict(oracle.backbone.body, _nchw(size))
            features = extractor(_nchw(size).transpose(0, 2, 3, 1), training=False)
            diffs.append(max(_max_diff(features["block_12"], expected["0"]), _max_diff(features["last"], expected["1"])))
        yield ("torchvision", f"{name} (MobileNetV3 body, eps 1e-5)", "both body outputs (FPN inputs)", *diffs)


def _torch_dict(module: object, x: np.ndarray) -> dict[str, np.ndarray]:
    import torch

    with torch.no_grad():
        return {k: v.numpy().transpose(0, 2, 3, 1) for k, v in module(torch.from_numpy(x)).items()}


def ssdlite_row() -> Row:
    """SSDLite: class logits and box regression of all 3234 default boxes;
    both models resize the image to 320x320 themselves."""
    import torch

    from mobilenetv3 import MobileNetV3Backbone, MobileNetV3ObjectDetector, weights
    from mobilenetv3.weights import torchvision as torchvision_weights
    from tests.test_detector import _oracle

    oracle = _oracle()
    checkpoint = torchvision_weights.read_state_dict(oracle.state_dict(), "random SSDLite")
    # Built here, not by loader.build_model: the detector is not (yet) a registered task.
    ours = MobileNetV3ObjectDetector(MobileNetV3Backbone(**checkpoint.backbone_config), checkpoint.num_classes)
    weights.load_into(ours, checkpoint)
    diffs = []
    for size in SIZES:
        image = _pixels(size)[0]
        with torch.no_grad():
            images, _ = oracle.transform([torch.from_numpy(image.transpose(2, 0, 1) / 255.0).float()])
            expected = oracle.head(list(oracle.backbone(images.tensors).values()))
        got = ours(image[None], training=False)
        diffs.append(max(_max_diff(got[k], expected[k].numpy()) for k in ("cls_logits", "bbox_regression")))
    return ("torchvision", "ssdlite320_mobilenet_v3_large", "raw class logits + box regression", *diffs)


def tflite_rows(folder: Path, quick: bool) -> Iterator[Row]:
    """The released TFLite files against the TFLite runtime on the four
    real images (224x224 graphs: no odd size)."""
    import keras

    from mobilenetv3.presets import loader
    from mobilenetv3.weights import tflite
    from tests.test_tflite_weights import EMBEDDER, IMAGES, UINT8_MODEL, _run
    from tests.test_tflite_weights import _pixels as image_pixels

    if not SHARED.is_dir():
        print(f"(tflite rows skipped: {SHARED} is absent)", file=sys.stderr)
        return
    classifier = loader.build_model(tflite.read(str(SHARED / UINT8_MODEL)))
    diffs, agree = [], 0
    for name in IMAGES:
        pixels = image_pixels(SHARED, name)
        runtime, _ = _run(SHARED / UINT8_MODEL, pixels)
        logits = keras.ops.convert_to_numpy(classifier(pixels[None].astype("float32")))[0]
        probabilities = np.exp(logits - logits.max())
        probabilities /= probabilities.sum()
        diffs.append(float(np.abs(probabilities - runtime).max()))
        agree += int(np.argmax(probabilities) == np.argmax(runtime))
    yield ("TF-slim TFLite", "v3-small_224_1.0_uint8 (dequantized, float)",
           f"softmax probabilities vs the uint8 runtime, 4 real images; top-1 agrees {agree}/4", max(diffs), None)
    embedder = loader.build_embedder(tflite.read(str(SHARED / EMBEDDER)))
    diffs = []
    for name in IMAGES:
        pixels = image_pixels(SHARED, name).astype("float32")
        runtime, _ = _run(SHARED / EMBEDDER, pixels / 255.0)
        diffs.append(_max_diff(embedder(pixels[None])[0], runtime))
    yield ("MediaPipe TFLite", "mobilenet_v3_small_075_224_embedder (float32)",
           "1024-d embedding vs the runtime, 4 real images", max(diffs), None)


FAMILIES: dict[str, Callable[[Path, bool], Iterator[Row]]] = {
    "keras2": keras2_rows,
    "keras3": keras3_rows,
    "keras-cv": keras_cv_rows,
    "keras-hub": keras_hub_rows,
    "torchvision": torchvision_rows,
    "timm": timm_rows,
    "tflite": tflite_rows,
}


def _cell(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1e}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--families", default=",".join(FAMILIES), help=f"comma-separated: {', '.join(FAMILIES)}")
    parser.add_argument("--quick", action="store_true", help="one checkpoint or few per family")
    args = parser.parse_args(argv)
    names = args.families.split(",")
    unknown = [n for n in names if n not in FAMILIES]
    if unknown:
        parser.error(f"unknown families {unknown}; choose from {list(FAMILIES)}")
    print("| family | checkpoint | compared | max abs diff 224 | max abs diff 193x257 |")
    print("|---|---|---|---|---|")
    start = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            folder = Path(tmp) / name
            folder.mkdir()
            for family, checkpoint, compared, at_224, at_odd in FAMILIES[name](folder, args.quick):
                print(f"| {family} | {checkpoint} | {compared} | {_cell(at_224)} | {_cell(at_odd)} |", flush=True)
    print(f"\n({time.time() - start:.0f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
