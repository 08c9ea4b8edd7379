"""`mobilenetv3 export --format tflite` files run in MediaPipe Tasks as they
are: `vision.ImageClassifier` and `vision.ImageSegmenter` created from the
file alone (default options) give what Keras' `predict` gives, labels
included; the metadata inside is read back with MediaPipe's own
`MetadataDisplayer`.

The images are the real photos of `../shared/fixtures/images/` (when that
folder is there) and generated ones, resized beforehand to the model's
input size, so that MediaPipe's own resize is the identity and the
comparison is exact up to float rounding.
"""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest

import mobilenetv3
from mobilenetv3.export import litert_metadata

pytestmark = pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TFLite export needs TensorFlow")
mp = pytest.importorskip("mediapipe", reason="needs mediapipe (pip install 'mobilenetv3[mediapipe]')")
try:
    litert_metadata._import_writers()
except ImportError as error:  # pragma: no cover - depends on the installed mediapipe
    pytest.skip(f"MediaPipe's metadata writers do not import: {error}", allow_module_level=True)

from helpers import randomize  # noqa: E402

SHARED_FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures"
SIZE = 96
CLASS_NAMES = ["apple", "banana pepper", "cat", "dog", "eel", "fig", "goat", "hen", "ibis", "jay"]
SEGMENT_NAMES = ["background", "road", "sky", "tree"]
# MediaPipe's scores (its XNNPACK float kernels) vs Keras' predict (TensorFlow):
# float rounding only; the logits span several units.
SCORE_ATOL = 2e-4
INT8_TOP1_FLOOR = 0.5  # sanity floor only; the measured agreement is printed


def _images(shared_fixtures: Path) -> np.ndarray:
    """uint8 RGB (N, SIZE, SIZE, 3): the fixture photos, then generated ones."""
    from PIL import Image

    pictures = []
    folder = shared_fixtures / "images"
    for path in sorted(folder.glob("*.bmp")) if folder.is_dir() else []:
        with Image.open(path) as image:
            pictures.append(np.asarray(image.convert("RGB").resize((SIZE, SIZE), Image.BILINEAR)))
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    for i in range(6 - min(len(pictures), 4)):
        waves = np.stack([np.sin((3 + i) * x + c) * np.cos((2 + c) * y + i) for c in range(3)], -1)
        pictures.append(np.clip(127.5 + 100 * waves + rng.normal(0, 12, waves.shape), 0, 255).astype(np.uint8))
    return np.stack(pictures)


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return _images(SHARED_FIXTURES)  # without ../shared: generated images only


def _segmenter() -> keras.Model:
    """A segmenter with random weights whose class maps vary over each
    image: its classifier convs scaled up and centered on the test images."""
    keras.utils.set_random_seed(0)
    model = mobilenetv3.MobileNetV3ImageSegmenter(
        mobilenetv3.MobileNetV3SmallBackbone(input_shape=(SIZE, SIZE, 3), alpha=0.35),
        num_classes=len(SEGMENT_NAMES), inter_channels=16)
    randomize(model, seed=2)
    heads = [v for v in model.weights if "classifier" in v.path]
    for v in heads:
        v.assign(v.numpy() * (0 if v.path.endswith("bias") else 20))
    return model


@pytest.fixture(scope="module")
def exported(tmp_path_factory, images):
    """A classifier (random weights, BN statistics perturbed) saved as a
    preset folder and exported by the `export` command (its `main`, in this
    process: the console script's entry is test_export_cli's); the same classifier
    in int8 and a segmenter, exported by `export_model` (what the command
    calls)."""
    from mobilenetv3.cli import main
    from mobilenetv3.export import export_model

    work = tmp_path_factory.mktemp("mediapipe")
    keras.utils.set_random_seed(0)
    classifier = mobilenetv3.MobileNetV3ImageClassifier(
        mobilenetv3.MobileNetV3SmallBackbone(input_shape=(SIZE, SIZE, 3), alpha=0.35), num_classes=len(CLASS_NAMES))
    randomize(classifier, seed=1)
    classifier.class_names = list(CLASS_NAMES)
    classifier.save_to_preset(work / "classifier")
    assert main(["export", str(work / "classifier"), str(work / "classifier.tflite"), "--format", "tflite"]) == 0
    segmenter = _segmenter()
    head_bias = [v for v in segmenter.weights if "classifier" in v.path][-1]
    head_bias.assign(-segmenter.predict(images.astype("float32"), verbose=0).mean(axis=(0, 1, 2)))
    segmenter.class_names = list(SEGMENT_NAMES)
    export_model(segmenter, work / "segmenter.tflite", "tflite")
    export_model(classifier, work / "classifier_int8.tflite", "tflite", int8=True,
                 calibration=images.astype("float32"))
    return work, classifier, segmenter


def _mp_image(pixels: np.ndarray):
    return mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(pixels))


def _classify(path: Path, images: np.ndarray) -> list[list]:
    from mediapipe.tasks.python import vision

    with vision.ImageClassifier.create_from_model_path(str(path)) as classifier:
        return [[(c.index, c.category_name, c.score) for c in classifier.classify(_mp_image(image))
                 .classifications[0].categories] for image in images]


@pytest.mark.slow  # the `exported` files: three exports in this process; ~30 s
def test_mediapipe_image_classifier_matches_keras(exported, images):
    work, model, _ = exported
    expected = model.predict(images.astype("float32"), verbose=0)
    results = _classify(work / "classifier.tflite", images)
    for scores, categories in zip(expected, results):
        order = np.argsort(-scores)[:5]
        assert np.all(-np.diff(scores[order]) > 2 * SCORE_ATOL)  # a ranking rounding cannot swap
        assert [c[0] for c in categories[:5]] == list(order)
        assert [c[1] for c in categories[:5]] == [CLASS_NAMES[i] for i in order]
        np.testing.assert_allclose([c[2] for c in categories[:5]], scores[order], atol=SCORE_ATOL, rtol=0)
    assert np.ptp(expected) > 1.0  # logits that depend on the image
    scores = np.array([[c[2] for c in sorted(categories)] for categories in results])
    print(f"classifier: MediaPipe scores vs Keras max abs difference {np.abs(scores - expected).max():.1e} "
          f"(logits spanning {np.ptp(expected):.1f})")
    predict = litert_metadata.open_mediapipe(work / "classifier.tflite")  # the timing helper: every score
    np.testing.assert_allclose(np.stack([predict(image) for image in images]), expected, atol=SCORE_ATOL, rtol=0)
    predict.close()
    # LiteRT itself still runs the file with metadata as Keras does.
    from mobilenetv3.export.runtimes import open_litert

    litert = open_litert(work / "classifier.tflite", threads=1)(images.astype("float32"))
    np.testing.assert_allclose(litert, expected, atol=SCORE_ATOL, rtol=0)


@pytest.mark.slow  # the `exported` files: three exports in this process; ~30 s
def test_mediapipe_image_segmenter_category_mask_is_keras_argmax(exported, images):
    from mediapipe.tasks.python import vision
    from mediapipe.tasks.python.core.base_options import BaseOptions

    work, _, model = exported
    logits = model.predict(images.astype("float32"), verbose=0)
    expected = logits.argmax(-1)
    options = vision.ImageSegmenterOptions(base_options=BaseOptions(model_asset_path=str(work / "segmenter.tflite")),
                                           output_category_mask=True, output_confidence_masks=True)
    with vision.ImageSegmenter.create_from_options(options) as segmenter:
        results = [segmenter.segment(_mp_image(image)) for image in images]
        assert segmenter.labels == SEGMENT_NAMES
    masks = np.stack([r.category_mask.numpy_view().squeeze() for r in results])
    assert masks.shape == expected.shape
    predict = litert_metadata.open_mediapipe(work / "segmenter.tflite", "segmenter")
    np.testing.assert_array_equal(predict(images[0]), masks[0])
    predict.close()
    print(f"segmenter: {np.mean(masks != expected):.2e} of pixels differ from Keras' argmax")
    assert len(np.unique(expected)) > 1  # a mask that depends on the pixels
    top2 = np.sort(logits, -1)
    clear = top2[..., -1] - top2[..., -2] > 1e-3  # not a near-tie
    assert clear.mean() > 0.99
    np.testing.assert_array_equal(masks[clear], expected[clear])
    # The confidence masks are softmax(logits): the metadata asks MediaPipe for it.
    confidence = np.stack([np.stack([m.numpy_view().squeeze() for m in r.confidence_masks], -1) for r in results])
    probabilities = np.exp(logits - logits.max(-1, keepdims=True))
    probabilities /= probabilities.sum(-1, keepdims=True)
    print(f"segmenter: confidence masks vs softmax(Keras) max abs difference "
          f"{np.abs(confidence - probabilities).max():.1e}")
    np.testing.assert_allclose(confidence, probabilities, atol=1e-4, rtol=0)


@pytest.mark.slow  # the `exported` files: three exports in this process; ~30 s
def test_mediapipe_int8_classifier_loads_and_agrees(exported, images):
    work, model, _ = exported
    expected = model.predict(images.astype("float32"), verbose=0).argmax(-1)
    results = _classify(work / "classifier_int8.tflite", images)
    assert all(len(categories) == len(CLASS_NAMES) for categories in results)
    assert {c[1] for c in results[0]} == set(CLASS_NAMES)
    agreement = float(np.mean([categories[0][0] == e for categories, e in zip(results, expected)]))
    print(f"int8 top-1 agreement with Keras float: {agreement:.2f} on {len(images)} images")
    assert agreement >= INT8_TOP1_FLOOR


@pytest.mark.slow  # the `exported` files: three exports in this process; ~30 s
def test_metadata_inside_reads_back(exported):
    work, _, _ = exported
    writers = litert_metadata._import_writers()
    for name, labels, activation in (("classifier", CLASS_NAMES, None), ("classifier_int8", CLASS_NAMES, None),
                                     ("segmenter", SEGMENT_NAMES, "SOFTMAX")):
        displayer = writers.metadata.MetadataDisplayer.with_model_file(str(work / f"{name}.tflite"))
        assert displayer.get_packed_associated_file_list() == ["labels.txt"]
        assert displayer.get_associated_file_buffer("labels.txt").decode().split("\n") == labels
        metadata = json.loads(displayer.get_metadata_json())
        assert metadata["min_parser_version"] == ("1.5.0" if activation else "1.0.0")
        (image,) = metadata["subgraph_metadata"][0]["input_tensor_metadata"]
        assert image["content"]["content_properties"]["color_space"] == "RGB"
        (normalization,) = image["process_units"]
        assert normalization["options"] == {"mean": [0.0], "std": [1.0]}  # raw 0..255 in, as Keras takes
        custom = metadata["subgraph_metadata"][0].get("custom_metadata")
        assert (custom is not None) == (activation is not None)


@pytest.mark.slow  # the `exported` files: three exports in this process; ~30 s
def test_add_metadata_refuses_what_mediapipe_cannot_run(exported):
    work, _, _ = exported
    data = (work / "classifier.tflite").read_bytes()
    with pytest.raises(ValueError, match="`task` must be one of"):
        litert_metadata.add_metadata(data, task="embedder")
    with pytest.raises(ValueError, match="same for every channel"):
        litert_metadata.add_metadata(data, task="classifier", mean=(123.7, 116.3, 103.5), std=(58.4, 57.1, 57.4))
    with pytest.raises(ValueError, match="one-line strings"):
        litert_metadata.add_metadata(data, task="classifier", labels=["a\nb"])
    with pytest.raises(ValueError, match="labels"):
        litert_metadata.add_metadata(data, task="detector")
    with pytest.raises(ValueError, match="already has metadata"):
        litert_metadata.add_metadata(data, task="classifier")
    with pytest.raises(ValueError, match="LiteRT flatbuffer"):
        litert_metadata.add_metadata(b"not a model", task="classifier")


def _metadata_using(member: str) -> bytes:
    """A metadata flatbuffer using one schema member added after 1.0.0."""
    import flatbuffers
    from mediapipe.tasks.metadata import metadata_schema_py_generated as fb

    model, subgraph, tensor = fb.ModelMetadataT(), fb.SubGraphMetadataT(), fb.TensorMetadataT()
    model.subgraphMetadata, subgraph.inputTensorMetadata = [subgraph], [tensor]
    file, unit = fb.AssociatedFileT(), fb.ProcessUnitT()
    file.name = "a.txt"
    options = {"bert": "BertTokenizerOptions", "sentencepiece": "SentencePieceTokenizerOptions",
               "regex": "RegexTokenizerOptions"}
    if member == "vocabulary":
        file.type, tensor.associatedFiles = fb.AssociatedFileType.VOCABULARY, [file]
    elif member == "scann":
        file.type, model.associatedFiles = fb.AssociatedFileType.SCANN_INDEX_FILE, [file]
    elif member == "file_version":
        file.version, subgraph.associatedFiles = "2", [file]
    elif member == "input_process_units":
        subgraph.inputProcessUnits = []
    elif member in options:
        unit.optionsType = getattr(fb.ProcessUnitOptions, options[member])
        unit.options = getattr(fb, options[member] + "T")()
        tensor.processUnits = [unit]
    elif member == "output_tensor_groups":
        subgraph.outputTensorGroups = [fb.TensorGroupT()]
    elif member == "audio":
        tensor.content = fb.ContentT()
        tensor.content.contentPropertiesType = fb.ContentProperties.AudioProperties
        tensor.content.contentProperties = fb.AudioPropertiesT()
    elif member == "custom_metadata":
        subgraph.customMetadata = [fb.CustomMetadataT()]
    builder = flatbuffers.Builder(0)
    builder.Finish(model.Pack(builder), b"M001")
    return bytes(builder.Output())


# What MediaPipe's compiled GetMinimumMetadataParserVersion (mediapipe 0.10.21,
# the last wheel that has it) returns for each: measured, all equal to ours.
@pytest.mark.parametrize("member, version", [
    ("none", "1.0.0"), ("vocabulary", "1.0.1"), ("input_process_units", "1.1.0"), ("bert", "1.1.0"),
    ("sentencepiece", "1.1.0"), ("output_tensor_groups", "1.2.0"), ("regex", "1.2.1"), ("audio", "1.3.0"),
    ("scann", "1.4.0"), ("file_version", "1.4.1"), ("custom_metadata", "1.5.0"),
])
def test_parser_version_is_mediapipes(member, version):
    assert litert_metadata._parser_version(_metadata_using(member)) == version


def test_imagenet_labels_line_up_with_the_outputs():
    """1000 classes: ImageNet's names; 1001 (TF-slim): "background" first."""
    for num_classes, offset in ((1000, 0), (1001, 1)):
        model = mobilenetv3.MobileNetV3ImageClassifier(
            mobilenetv3.MobileNetV3SmallBackbone(input_shape=(32, 32, 3), alpha=0.35), num_classes=num_classes,
            head="dense")
        values = litert_metadata.model_metadata(model)
        assert values["labels"][offset + 1] == "goldfish" and len(values["labels"]) == num_classes
        assert values["mean"] == [0.0] and values["std"] == [1.0]
    assert litert_metadata.model_metadata(mobilenetv3.MobileNetV3SmallBackbone(alpha=0.35)) is None


@pytest.mark.slow  # converts a 224-pixel model: ~13 s
def test_real_weights_in_mediapipe_match_keras(shared_fixtures, tmp_path):
    """The TF-slim release (1001 classes, "background" first) through
    MediaPipe: its top-3 names and logits are Keras' on the fixture photos."""
    from PIL import Image

    from mobilenetv3.export import export_model
    from mobilenetv3.presets import loader

    model = loader.load_model(shared_fixtures / "tflite" / "v3-small_224_1.0_uint8.tflite")
    export_model(model, tmp_path / "slim.tflite", "tflite", input_size=224)
    names = litert_metadata.model_metadata(model)["labels"]
    photos = []
    for path in sorted((shared_fixtures / "images").glob("*.bmp")):
        with Image.open(path) as image:
            photos.append(np.asarray(image.convert("RGB").resize((224, 224), Image.BILINEAR)))
    photos = np.stack(photos)
    expected = model.predict(photos.astype("float32"), verbose=0)
    results = _classify(tmp_path / "slim.tflite", photos)
    for scores, categories in zip(expected, results):
        order = np.argsort(-scores)[:3]
        assert [c[1] for c in categories[:3]] == [names[i] for i in order]
        np.testing.assert_allclose([c[2] for c in categories[:3]], scores[order], atol=1e-3, rtol=0)
    assert [r[0][1] for r in results] == ["chickadee", "Egyptian cat", "dragonfly", "military uniform"]


@pytest.mark.slow  # one small conversion: ~5 s
def test_resizable_segmenter_gets_no_metadata_and_says_so(tmp_path):
    """MediaPipe would feed a resizable input at 1x1: no metadata, a warning
    naming `--input-size`, and `with_model_metadata` refuses it."""
    from mobilenetv3.export import export_model

    model = mobilenetv3.MobileNetV3ImageSegmenter(mobilenetv3.MobileNetV3SmallBackbone(alpha=0.35), num_classes=3,
                                                  inter_channels=16)
    with pytest.warns(UserWarning, match=r"without MediaPipe metadata.*--input-size"):
        export_model(model, tmp_path / "s.tflite", "tflite")
    data = (tmp_path / "s.tflite").read_bytes()
    assert litert_metadata._import_writers().metadata.get_metadata_buffer(data) is None
    with pytest.raises(ValueError, match="fixed input size"):
        litert_metadata.with_model_metadata(data, model)
