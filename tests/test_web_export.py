"""`export --format web`: the exported page in headless Chromium (the
system `chromium`, driven by puppeteer-core: `tests/web_page.py`) gives the
Keras model's results on real photos. A classifier exported through the
console script: the page's top-5 against Keras' top-5 (same labels,
probabilities within 1e-4); a detector: its boxes set-matched against the
Keras detector's; a segmenter: its mask against Keras' argmax. The page's
resize (`preprocess.mjs`) is checked against Pillow pixel for pixel in Node.
The runtime files: pinned by the shipped lockfile, checked by SHA-256."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import keras
import numpy as np
import pytest
from conftest import SHARED_FIXTURES
from console_script import run_script
from web_page import missing, run_page

import mobilenetv3
from mobilenetv3.export import export_model, web_export
from mobilenetv3.presets import loader
from mobilenetv3.serving.predictor import open_predictor

pytestmark = pytest.mark.skipif(missing() is not None, reason=str(missing()))

CLASS_NAMES = ["tabby cat", "Egyptian cat", "golden retriever", "goldfinch", "dragonfly", "damselfly",
               "military uniform", "bow tie", "espresso", "lighthouse"]
DETECTOR_NAMES = ["background", "person", "cat", "bird"]
PROBABILITY_TOLERANCE = 1e-4  # same pixels in; ONNX Runtime (wasm) vs TensorFlow float rounding
SCORE_TOLERANCE = 1e-4
BOX_TOLERANCE = 0.05  # pixels of the original image (0.01 of the model input, scaled up to 5x)


def calibrated(model, images: np.ndarray, seed: int = 0):
    """Random weights made input-dependent, as trained weights are: every
    BatchNorm's statistics set to its inputs' on `images` (one
    training-mode pass with momentum 0; random weights alone give every
    image nearly the same output), then gamma and beta perturbed."""
    rng = np.random.default_rng(seed)
    norms = [layer for layer in model._flatten_layers() if isinstance(layer, keras.layers.BatchNormalization)]
    momenta = [layer.momentum for layer in norms]
    for layer in norms:
        layer.momentum = 0.0
    model(images, training=True)
    for layer, momentum in zip(norms, momenta):
        layer.momentum = momentum
        layer.gamma.assign(rng.uniform(0.7, 1.3, layer.gamma.shape))
        layer.beta.assign(rng.normal(0, 0.1, layer.beta.shape))
    return model


def _stack(paths, policy) -> np.ndarray:
    from mobilenetv3.presets.preprocessing import load_image

    return np.stack([load_image(path, policy) for path in paths])


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> list[Path]:
    """Real photos: ../shared/fixtures/images (see its PROVENANCE.md), else
    scikit-image's, else generated ones."""
    images = SHARED_FIXTURES / "images"
    if images.is_dir():
        return [images / "grace_hopper.bmp", images / "cat.bmp", images / "bird.bmp"]
    from PIL import Image

    folder = tmp_path_factory.mktemp("photos")
    try:
        from skimage import data

        arrays = [data.astronaut(), data.chelsea(), data.coffee()]
    except ImportError:
        rng = np.random.default_rng(0)
        arrays = [np.clip(np.cumsum(rng.normal(0, 9, (h, w, 3)), axis=1), 0, 255).astype("uint8")
                  for h, w in ((300, 400), (257, 190), (120, 333))]
    paths = [folder / f"photo{i}.png" for i in range(len(arrays))]
    for array, path in zip(arrays, paths):
        Image.fromarray(array).save(path)
    return paths


@pytest.fixture(scope="module")
def classifier_page(tmp_path_factory, photos) -> tuple[Path, Path]:
    """A tiny classifier preset folder (random weights, BatchNorm
    calibrated on the photos, real-looking labels, a bicubic center-crop
    policy) and its web folder, written by the console script."""
    from mobilenetv3.core.normalization import ImagePolicy
    from mobilenetv3.presets import folders

    keras.utils.set_random_seed(0)
    work = tmp_path_factory.mktemp("web_classifier")
    backbone = mobilenetv3.MobileNetV3SmallBackbone(alpha=0.35, input_shape=(96, 96, 3))
    model = mobilenetv3.MobileNetV3ImageClassifier(backbone, len(CLASS_NAMES))
    policy = ImagePolicy("unit", 96, "center_crop", resize_size=110, interpolation="bicubic")
    batch = _stack(photos, policy)
    calibrated(model, batch, seed=1)
    # Logits that differ from photo to photo, moderately peaked: centred over the photos, std 2.5.
    head = model.get_layer("Logits")
    features = np.asarray(model.predict(batch, verbose=0)) - keras.ops.convert_to_numpy(head.bias)
    scale = 2.5 / (features - features.mean(axis=0)).std()
    head.kernel.assign(head.kernel * scale)
    head.bias.assign((-scale * features.mean(axis=0)).astype("float32"))
    folders.save_preset(model, work / "tiny", class_names=CLASS_NAMES, preprocessing=policy)
    out = run_script("export", work / "tiny", work / "web", "--format", "web", cwd=work)
    assert "serve it" in out.stdout and "python serve.py" in out.stdout, out.stdout
    return work / "tiny", work / "web"


@pytest.mark.slow
def test_classifier_page_gives_keras_top5_on_real_photos(classifier_page, photos):
    preset, folder = classifier_page
    assert sorted(p.name for p in (folder / "ort").iterdir()) == [
        "NOTICE.txt", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm", "ort.wasm.min.mjs"]
    assert (folder / "labels.txt").read_text().splitlines() == CLASS_NAMES
    page = run_page(folder, photos[:2], runs=10, screenshot=folder.parent / "classifier.png")
    assert page["backend"]["runtime"] == f"onnxruntime-web {web_export.runtime_manifest()['version']}"
    assert not [line for line in page["console"] if line.startswith(("error", "pageerror"))], page["console"]
    model = loader.load_model(preset)
    with open_predictor(model, "keras") as predictor:
        assert predictor.policy.resize == "center_crop" and predictor.policy.interpolation == "bicubic"
        for photo, got in zip(photos, page["results"]):
            image, size = predictor.prepare(photo)
            (expected,) = predictor.run(image[None], [size])
            probabilities = expected["probabilities"]
            top5 = np.argsort(-probabilities)[:5]
            assert np.sort(probabilities)[-1] > 0.25, "too flat to test"
            assert [r["index"] for r in got["top5"]] == top5.tolist(), photo
            assert [r["label"] for r in got["top5"]] == [CLASS_NAMES[i] for i in top5]
            diff = np.abs(np.asarray(got["probabilities"]) - probabilities).max()
            assert diff <= PROBABILITY_TOLERANCE, f"{photo.name}: max probability diff {diff:.2e}"
            print(f"{photo.name}: top-1 {probabilities.max():.3f}, max probability diff {diff:.2e}")
            assert got["image_size"] == list(size)
    first, second = (np.asarray(r["probabilities"]) for r in page["results"])
    assert np.abs(first - second).max() > 0.05, "the outputs hardly depend on the image"
    assert CLASS_NAMES[int(top5[0])] in page["dom"]  # the last photo's top-5, shown on the page
    assert len(page["timings"]) == 2 and all(t["inference_ms"] > 0 for t in page["timings"])
    assert len(page["benchmark_ms"]) == 10


@pytest.fixture(scope="module")
def detector(tmp_path_factory, photos):
    keras.utils.set_random_seed(0)
    backbone = mobilenetv3.MobileNetV3SmallBackbone(alpha=0.35, reduced_tail=True, preprocessing="symmetric")
    model = mobilenetv3.MobileNetV3ObjectDetector(backbone, len(DETECTOR_NAMES), image_size=128,
                                                  score_threshold=0.4, max_detections=100)
    calibrated(model, _stack(photos, web_export.web_policy(model, None)), seed=3)
    model.class_names = DETECTOR_NAMES
    folder = tmp_path_factory.mktemp("web_detector") / "web"
    export_model(model, folder, "web")
    return model, folder


def test_detector_page_draws_the_keras_detections(detector, photos, tmp_path):
    model, folder = detector
    assert not list(folder.parent.glob("*.anchors.npy")) and not list(folder.rglob("*.npy"))
    page = run_page(folder, photos[:2], screenshot=tmp_path / "detector.png", isolated=True, threads=2)
    assert page["backend"]["crossOriginIsolated"] and page["backend"]["threads"] == 2  # serve.py's headers
    with open_predictor(model, "keras") as predictor:
        for photo, got in zip(photos, page["results"]):
            image, size = predictor.prepare(photo)
            (expected,) = predictor.run(image[None], [size])
            count = len(expected["scores"])
            assert count > 0 and len(got["detections"]) == count, (photo.name, count, len(got["detections"]))
            used, worst = np.zeros(count, bool), 0.0
            for detection in got["detections"]:  # one to one, as sets: equal scores may come in another order
                close = (~used & (expected["labels"] == detection["label"])
                         & (np.abs(expected["scores"] - detection["score"]) <= SCORE_TOLERANCE)
                         & (np.abs(expected["boxes"] - np.asarray(detection["box"])).max(axis=1) <= BOX_TOLERANCE))
                assert close.any(), f"{photo.name}: page detection {detection} has no Keras match"
                used[np.argmax(close)] = True
                worst = max(worst, float(np.abs(expected["boxes"][np.argmax(close)] - detection["box"]).max()))
                assert detection["name"] == DETECTOR_NAMES[detection["label"]]
            print(f"{photo.name}: {count} detections, worst box diff {worst:.2e} px")
    assert (tmp_path / "detector.png").stat().st_size > 10_000


def test_segmenter_page_overlays_the_keras_mask(photos, tmp_path):
    from mobilenetv3.presets.preprocessing import load_image

    backbone = mobilenetv3.MobileNetV3SmallBackbone(alpha=0.35, input_shape=(None, None, 3))
    model = mobilenetv3.MobileNetV3ImageSegmenter(backbone, num_classes=3)
    calibrated(model, _stack(photos, web_export.web_policy(model, 64)), seed=2)
    rng = np.random.default_rng(2)
    for name in ("lraspp_low_classifier", "lraspp_high_classifier"):  # random kernels, no bias: several classes
        layer = model.get_layer(name)
        layer.kernel.assign(rng.normal(0, 1, layer.kernel.shape).astype("float32"))
        layer.bias.assign(np.zeros(3, "float32"))
    image = load_image(photos[0], web_export.web_policy(model, 64))[None]
    folder = export_model(model, tmp_path / "web", "web", input_size=64)
    page = run_page(folder, photos[:1], screenshot=tmp_path / "segmenter.png")
    (got,) = page["results"]
    expected = np.argmax(np.asarray(model.predict(image, verbose=0))[0], axis=-1)
    assert got["size"] == [64, 64] and len(np.unique(expected)) > 1, "a one-class mask is too easy"
    agreement = float(np.mean(np.asarray(got["mask"]).reshape(64, 64) == expected))
    assert agreement >= 0.999, f"the page's mask agrees with Keras on {agreement:.2%} of pixels"


def test_page_resize_is_pillows_pixel_for_pixel(tmp_path):
    """`preprocess.mjs` (run by Node) against `apply_policy` (Pillow) on
    odd sizes, up and down, every interpolation and both resize policies."""
    from PIL import Image

    from mobilenetv3.core.normalization import ImagePolicy
    from mobilenetv3.presets.preprocessing import apply_policy

    rng = np.random.default_rng(0)
    policies = [ImagePolicy("unit", 64), ImagePolicy("unit", 96, interpolation="bicubic"),
                ImagePolicy("unit", 50, interpolation="nearest"), ImagePolicy("imagenet", 64, "center_crop", 73),
                ImagePolicy("imagenet", 56, "center_crop", 64, "bicubic"), ImagePolicy("unit", 300)]
    cases, expected = [], []
    for height, width in ((37, 53), (300, 200), (17, 250), (225, 223)):
        array = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        for policy in policies:
            expected.append(apply_policy(Image.fromarray(array), policy).astype(np.uint8))
            cases.append({"width": width, "height": height, "data": array.ravel().tolist(),
                          "policy": {k: v for k, v in policy.to_dict().items() if k != "input"}})
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    script = (f"import {{applyPolicy}} from {json.dumps((web_export.WEB_DIR / 'preprocess.mjs').as_uri())};\n"
              "import fs from 'fs';\n"
              f"const cases = JSON.parse(fs.readFileSync({json.dumps(str(tmp_path / 'cases.json'))}));\n"
              "process.stdout.write(JSON.stringify(cases.map((c) => Array.from(applyPolicy("
              "{width: c.width, height: c.height, data: Uint8Array.from(c.data)}, c.policy).data))));\n")
    result = subprocess.run(["node", "--input-type=module", "-e", script], capture_output=True, text=True,
                            timeout=120, check=True)
    for case, want, got in zip(cases, expected, json.loads(result.stdout)):
        got = np.asarray(got, np.uint8).reshape(want.shape)
        assert np.array_equal(got, want), (case["width"], case["height"], case["policy"],
                                           int(np.abs(got.astype(int) - want).max()))


def test_runtime_is_pinned_and_checked(tmp_path, detector, monkeypatch):
    """The shipped package.json, lockfile and SHA-256 manifest name one
    version; a folder of another version, an incomplete one or a changed
    file is refused with the reason, and nothing is written."""
    manifest = web_export.runtime_manifest()
    package = json.loads((web_export.WEB_DIR / "package.json").read_text())
    lock = json.loads((web_export.WEB_DIR / "package-lock.json").read_text())
    assert package["dependencies"]["onnxruntime-web"] == manifest["version"]
    entry = lock["packages"]["node_modules/onnxruntime-web"]
    assert entry["version"] == manifest["version"] and entry["integrity"].startswith("sha512-")
    real = web_export.find_web_runtime(log=lambda _: None)
    model, _ = detector

    fake = tmp_path / "fake"
    shutil.copytree(real, fake, ignore=shutil.ignore_patterns("*.map", "ort.*", "*.jsep.*", "*.asyncify.*",
                                                              "*.jspi.*", "lib", "docs"))
    for relative in manifest["files"]:
        shutil.copy(real / relative, fake / relative)
    out = tmp_path / "web"
    export_model(model, out, "web", web_runtime=fake)  # a complete copy is accepted
    shutil.rmtree(out)
    wasm = fake / "dist" / "ort-wasm-simd-threaded.wasm"
    data = bytearray(wasm.read_bytes())
    data[1000] ^= 0xFF
    wasm.write_bytes(bytes(data))
    with pytest.raises(OSError, match="SHA-256.*changed or corrupted"):
        export_model(model, out, "web", web_runtime=fake)
    assert not out.exists()
    wasm.unlink()
    with pytest.raises(OSError, match="lacks dist/ort-wasm-simd-threaded.wasm"):
        export_model(model, out, "web", web_runtime=fake)
    (fake / "package.json").write_text(json.dumps({"name": "onnxruntime-web", "version": "1.0.0"}))
    with pytest.raises(OSError, match="holds onnxruntime-web 1.0.0.*needs " + manifest["version"]):
        export_model(model, out, "web", web_runtime=fake)
    with pytest.raises(OSError, match="is not an installed onnxruntime-web"):
        export_model(model, out, "web", web_runtime=tmp_path)
    monkeypatch.setenv(web_export.RUNTIME_ENV, str(fake))
    with pytest.raises(OSError, match=r"\$MOBILENETV3_WEB_RUNTIME .*holds onnxruntime-web 1.0.0"):
        export_model(model, out, "web")
    monkeypatch.delenv(web_export.RUNTIME_ENV)
    monkeypatch.setenv("MOBILENETV3_CACHE", str(tmp_path / "empty_cache"))  # nothing cached, and no npm:
    monkeypatch.setattr(web_export.shutil, "which", lambda name: None)
    with pytest.raises(OSError, match="npm is not on the PATH.*--web-runtime DIR"):
        export_model(model, out, "web")
    assert not out.exists()


def test_web_export_refuses_what_it_cannot_run(tmp_path, capsys):
    from mobilenetv3.cli import main

    backbone = mobilenetv3.MobileNetV3SmallBackbone(alpha=0.35, input_shape=(64, 64, 3))
    with pytest.raises(ValueError, match=r"kind \['classifier', 'detector', 'segmenter'\]; got a backbone"):
        export_model(backbone, tmp_path / "web", "web")
    with pytest.raises(ValueError, match="`web_runtime` applies to format 'web'"):
        export_model(backbone, tmp_path / "m.onnx", "onnx", web_runtime=tmp_path)
    assert main(["export", "mobilenet_v3_small", str(tmp_path / "m.onnx"), "--format", "onnx",
                 "--web-runtime", str(tmp_path)]) == 2
    assert "--web-runtime applies to --format web only" in capsys.readouterr().err
    assert not (tmp_path / "web").exists() and not (tmp_path / "m.onnx").exists()
