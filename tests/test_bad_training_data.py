"""Bad training data (issue #25): labels and masks out of range, bad
detection annotations, unreadable or odd image files, diverged training.

Each case either trains correctly, or is refused before training with one
line naming the file (or the array position), or is skipped with a line
naming the file; nothing trains silently on wrong targets and no diverged
model is written as a success."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

import mobilenetv3
from mobilenetv3.core import images as image_files
from mobilenetv3.core.validation import check_class_labels
from mobilenetv3.datasets import (
    DETECTION_CLASSES,
    check_masks,
    read_coco_folder,
    render_image,
    synthetic_detection,
    write_coco_folder,
)

BACKEND = keras.backend.backend()
TF_ONLY = pytest.mark.skipif(BACKEND != "tensorflow", reason="tf.data image folders and the train command")

# -- class labels and masks (numpy only) --------------------------------------------------


@pytest.mark.core
@pytest.mark.parametrize(
    ("labels", "kwargs", "message"),
    [
        (np.array([[[0, 1], [2, 3]], [[0, 1], [2, 4]]]), {}, "a label 4 at mask 1, row 1, column 1"),
        (np.array([[[0, -1]]]), {}, "a label -1 at mask 0, row 0, column 1"),
        (np.array([[[0.0, 1.5]]], "float32"), {}, "a fractional label 1.5 at mask 0, row 0, column 1"),
        (np.array([[[np.nan, 1.0]]]), {}, "a label nan at mask 0, row 0, column 0"),
        (np.array([[[0, 254]]], "uint8"), {"ignore_index": 255}, "a label 254 at mask 0, row 0, column 1"),
        (np.array([["a"]]), {}, "dtype <U1"),
    ],
)
def test_bad_class_labels_are_refused_naming_the_position(labels, kwargs, message):
    with pytest.raises(ValueError, match="integers in \\[0, 4\\)") as error:
        check_class_labels(labels, 4, source="`y`", axes=("mask", "row", "column"), **kwargs)
    assert message in str(error.value) and str(error.value).startswith("`y`")


@pytest.mark.core
def test_good_class_labels_pass():
    check_class_labels(np.array([[0, 3], [255, 1]], "uint8"), 4, ignore_index=255)
    check_class_labels(np.array([0.0, 3.0], "float32"), 4)
    check_class_labels(np.array([True, False]), 2)
    check_class_labels(np.zeros((0,), "int32"), 4)


@pytest.mark.core
def test_masks_must_match_their_images():
    check_masks((2, 8, 6, 3), np.zeros((2, 8, 6, 1), "int32"), 3)
    for shape in [(2, 6, 8), (1, 8, 6), (2, 8, 6, 3)]:
        with pytest.raises(ValueError, match=r"matching the images \(2, 8, 6, 3\), i.e. \(2, 8, 6\)"):
            check_masks((2, 8, 6, 3), np.zeros(shape, "int32"), 3)


# -- fit on raw arrays: every backend ----------------------------------------------------------


def _segmenter(num_classes: int = 4) -> mobilenetv3.MobileNetV3ImageSegmenter:
    backbone = mobilenetv3.MobileNetV3SmallBackbone(input_shape=(32, 32, 3), include_rescaling=True)
    return mobilenetv3.MobileNetV3ImageSegmenter(backbone, num_classes=num_classes)


@pytest.mark.core
def test_segmenter_fit_refuses_masks_out_of_range_before_training():
    """JAX trained on label 7 of 4 silently, TensorFlow stopped in the loss
    (InvalidArgumentError), PyTorch with an IndexError."""
    model = _segmenter()
    model.compile()
    images = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    masks = np.zeros((2, 32, 32), "int32")
    masks[1, 5, 9] = 7
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(ValueError, match=r"^`y` holds a label 7 at mask 1, row 5, column 9; class labels must be "
                       r"integers in \[0, 4\)\.$"):
        model.fit(images, masks, epochs=1, verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True))


@pytest.mark.core
def test_segmenter_fit_refuses_fractional_and_misshaped_masks():
    model = _segmenter()
    model.compile()
    images = np.zeros((2, 32, 32, 3), "float32")
    with pytest.raises(ValueError, match="a fractional label 1.5 at mask 0, row 0, column 0"):
        model.fit(images, np.full((2, 32, 32), 1.5, "float32"), verbose=0)
    with pytest.raises(ValueError, match=r"got \(2, 16, 16\)"):
        model.fit(images, np.zeros((2, 16, 16), "int32"), verbose=0)


def _ignore_255_masks() -> tuple[np.ndarray, np.ndarray]:
    images = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    masks = np.full((2, 32, 32), 255, "int32")
    masks[:, :8] = 3
    return images, masks


@pytest.mark.core
def test_segmenter_fit_accepts_only_the_losses_ignore_class():
    model = _segmenter()
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=255))
    images, masks = _ignore_255_masks()
    model.check_sparse_labels(images.shape, masks)  # what fit runs first
    masks[0, 0, 0] = 254
    with pytest.raises(ValueError, match=r"a label 254 .* or 255 \(ignored\)"):
        model.fit(images, masks, verbose=0)
    model.compile()
    with pytest.raises(ValueError, match=r"a label 255 at mask 0, row 8, column 0; .* in \[0, 4\)\.$"):
        model.fit(images, np.where(masks == 254, 0, masks), verbose=0)


def test_segmenter_trains_with_ignored_pixels():
    model = _segmenter()
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=255), run_eagerly=True)
    history = model.fit(*_ignore_255_masks(), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


@pytest.mark.core
def test_classifier_fit_refuses_labels_out_of_range():
    model = mobilenetv3.MobileNetV3ImageClassifier(
        mobilenetv3.MobileNetV3SmallBackbone(input_shape=(32, 32, 3)), num_classes=3, activation="softmax"
    )
    model.compile(loss="sparse_categorical_crossentropy")  # the loss's name
    with pytest.raises(ValueError, match=r"^`y` holds a label 3 at image 1; class labels must be integers in \[0, 3\)"):
        model.fit(np.zeros((2, 32, 32, 3), "float32"), np.array([0, 3]), verbose=0)


@pytest.mark.core
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_detection_targets_refuse_non_finite_boxes(bad):
    """`MobileNetV3ObjectDetector.fit` runs this check (its wiring is tested in
    test_detector.py); NaN passed every comparison and trained to NaN weights."""
    from mobilenetv3.detection import check_targets

    targets = {"boxes": np.array([[[5, 5, 20, 20], [bad, 10, 30, 30]]], "float32"), "labels": np.array([[1, 2]])}
    with pytest.raises(ValueError, match=r"^Box 1 of image 0, \[(-?inf|nan), 10.0, 30.0, 30.0\] in 'xyxy', holds NaN or infinity\.$"):
        check_targets((1, 64, 64, 3), targets, "xyxy", 4)
    targets["labels"][0, 1] = -1  # padding: not checked
    check_targets((1, 64, 64, 3), targets, "xyxy", 4)


@pytest.mark.core
def test_diverged_weights_are_named():
    from mobilenetv3.training import check_finite_weights

    model = mobilenetv3.MobileNetV3SmallBackbone(input_shape=(32, 32, 3))
    check_finite_weights(model)
    variable = model.get_layer("Conv").kernel
    kernel = keras.ops.convert_to_numpy(variable)
    kernel[0, 0, 0, :3] = [np.nan, np.inf, -np.inf]
    variable.assign(kernel)
    with pytest.raises(RuntimeError, match=r"weight 'Conv/kernel' holds 3 NaN or infinite value\(s\); nothing was "
                       r"written to 'out'"):
        check_finite_weights(model, "out")


# -- detection folders (COCO annotations) ------------------------------------------------------


def _coco_folder(path: Path, count: int = 16, size: int = 32) -> Path:
    images, targets = synthetic_detection(count, size, seed=0)
    write_coco_folder(path, images, targets, DETECTION_CLASSES)
    return path


def _edit_annotations(folder: Path, edit) -> None:  # noqa: ANN001
    path = folder / "annotations.json"
    coco = json.loads(path.read_text())
    edit(coco)
    path.write_text(json.dumps(coco))


def _set_bbox_of_image_15(bbox):  # noqa: ANN001, ANN202
    def edit(coco: dict) -> None:
        next(a for a in coco["annotations"] if a["image_id"] == 15)["bbox"] = bbox

    return edit


def _first_id_of_image_15(folder: Path) -> int:
    coco = json.loads((folder / "annotations.json").read_text())
    return next(a["id"] for a in coco["annotations"] if a["image_id"] == 15)


@pytest.mark.core
@pytest.mark.parametrize(
    ("bbox", "problem"),
    [
        ([float("nan"), 10, 20, 20], "holds NaN or infinity"),
        ([1, 1, float("inf"), 4], "holds NaN or infinity"),
        ([], "must be \\[x, y, width, height\\], four numbers; got \\[\\]"),
        ([1, 2, 3], "four numbers; got \\[1, 2, 3\\]"),
        ([1, "2", 3, 4], "four numbers"),
        ([20, 5, -10, 8], "has width -10 and height 8; both must be positive"),
        ([5, 5, 0, 8], "has width 0 and height 8"),
        ([10, 10, 30, 5], "box x 10..40, y 10..15 lies outside the 32x32 image"),
        ([-5, 0, 10, 10], "box x -5..5, y 0..10 lies outside the 32x32 image"),
    ],
)
def test_bad_boxes_are_refused_naming_the_file_and_annotation(tmp_path, bbox, problem):
    folder = _coco_folder(tmp_path / "coco")
    annotation = _first_id_of_image_15(folder)
    _edit_annotations(folder, _set_bbox_of_image_15(bbox))
    with pytest.raises(ValueError, match=problem) as error:
        read_coco_folder(folder, 32)
    assert str(error.value).startswith(f"{folder / 'annotations.json'}: annotation {annotation} (image 00015.png)")


@pytest.mark.core
def test_a_box_overhanging_by_rounding_is_clipped(tmp_path):
    folder = _coco_folder(tmp_path / "coco")
    _edit_annotations(folder, _set_bbox_of_image_15([-0.4, 2, 32.6, 10]))
    _, targets, _ = read_coco_folder(folder, 64)
    np.testing.assert_allclose(targets["boxes"][15, 0], [0, 4, 64, 24])


@pytest.mark.core
def test_bad_annotation_lists_are_refused(tmp_path):
    folder = _coco_folder(tmp_path / "coco")
    annotations = folder / "annotations.json"
    _edit_annotations(folder, lambda coco: coco["annotations"].__setitem__(0, {**coco["annotations"][0],
                                                                                 "category_id": 9}))
    with pytest.raises(ValueError, match=r"annotation 1 \(image 00000.png\) has category_id 9, which 'categories' "
                       r"does not list \(ids \[1, 2, 3\]\)"):
        read_coco_folder(folder, 32)
    _edit_annotations(folder, lambda coco: coco["annotations"].__setitem__(0, {**coco["annotations"][0],
                                                                                 "image_id": 99}))
    with pytest.raises(ValueError, match="annotation 1 names image id 99, which 'images' does not list"):
        read_coco_folder(folder, 32)
    _edit_annotations(folder, lambda coco: coco["images"].append(coco["images"][0]))
    with pytest.raises(ValueError, match=r"image id\(s\) \[0\] are listed more than once"):
        read_coco_folder(folder, 32)
    _edit_annotations(folder, lambda coco: coco.__setitem__("annotations", []))
    with pytest.raises(ValueError, match="holds no annotations") as error:
        read_coco_folder(folder, 32)
    assert str(error.value).startswith(f"{annotations} holds no annotations")


@pytest.mark.core
def test_unreadable_detection_images_are_skipped_with_their_boxes(tmp_path):
    folder = _coco_folder(tmp_path / "coco", count=4)
    (folder / "00001.png").write_bytes(b"")
    (folder / "00002.png").write_bytes((folder / "00002.png").read_bytes()[:60])
    with pytest.warns(image_files.SkippedImagesWarning) as caught:
        images, targets, _ = read_coco_folder(folder, 32)
    lines = str(caught[0].message).splitlines()
    assert lines[0] == f"Skipped 2 image file(s) of {folder} (training goes on without them):"
    assert str(folder / "00001.png") in lines[1] and "box(es) dropped" in lines[1]
    assert str(folder / "00002.png") in lines[2]
    reference, reference_targets = synthetic_detection(4, 32, seed=0)
    assert images.shape == (2, 32, 32, 3) and targets["boxes"].shape[0] == 2
    np.testing.assert_array_equal(targets["labels"], reference_targets["labels"][[0, 3]])


# -- image folders ------------------------------------------------------------------------------


def _odd_images_folder(path: Path) -> dict[str, Path]:
    """Two classes of good 40x40 images plus one file of each odd kind."""
    for name in ("circle", "square"):
        (path / name).mkdir(parents=True)
        for index in range(4):
            render_image(name, index, 40).save(path / name / f"{index:04d}.png")
    odd = {
        "corrupt": path / "circle" / "corrupt.png",
        "zero_byte": path / "circle" / "zero.jpg",
        "truncated": path / "square" / "truncated.png",
        "one_pixel": path / "square" / "pixel.png",
        "cmyk": path / "circle" / "cmyk.jpg",
        "sixteen_bit": path / "square" / "sixteen.png",
    }
    odd["corrupt"].write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    odd["zero_byte"].write_bytes(b"")
    odd["truncated"].write_bytes((path / "square" / "0000.png").read_bytes()[:200])
    Image.new("RGB", (1, 1), (10, 20, 30)).save(odd["one_pixel"])
    Image.new("CMYK", (40, 40), (0, 255, 255, 0)).save(odd["cmyk"], quality=95)  # red
    Image.fromarray(np.full((40, 40), 65535 // 3, "uint16")).save(odd["sixteen_bit"])  # 16-bit grey 85
    return odd


@pytest.mark.core
def test_odd_image_files_policy(tmp_path):
    """Corrupt, zero-byte, truncated and 1x1 files are skipped, each named on
    a line; CMYK and 16-bit files are read correctly and trained on."""
    from mobilenetv3.training.recipe import _read_class_folders

    folder = tmp_path / "data"
    odd = _odd_images_folder(folder)
    np.testing.assert_allclose(image_files.read_rgb(odd["cmyk"])[20, 20], [255, 0, 0], atol=3)
    assert image_files.read_rgb(odd["sixteen_bit"])[0, 0].tolist() == [85, 85, 85]
    with pytest.warns(image_files.SkippedImagesWarning) as caught:
        pixels, labels = _read_class_folders(folder, ["circle", "square"], (32, 32))
    lines = str(caught[0].message).splitlines()
    assert lines[0] == f"Skipped 4 image file(s) of {folder} (training goes on without them):"
    for kind in ("corrupt", "zero_byte", "truncated", "one_pixel"):
        assert sum(str(odd[kind]) in line for line in lines[1:]) == 1, kind
    assert "is 1x1 pixels, under 8 on a side" in str(caught[0].message)
    assert f"  Cannot read image {odd['zero_byte']}: the file is empty (0 bytes)." in lines
    assert pixels.shape == (10, 32, 32, 3) and labels.tolist() == [0] * 5 + [1] * 5
    assert {85} == set(np.unique(pixels[labels == 1][-1]))  # the 16-bit file, sorted last in its class


@pytest.mark.core
def test_skip_list_is_bounded():
    with pytest.warns(image_files.SkippedImagesWarning) as caught:
        image_files.warn_skipped([f"Cannot read image {i}.png: bad" for i in range(25)], "data")
    lines = str(caught[0].message).splitlines()
    assert len(lines) == 22 and lines[-1] == "  ... and 5 more"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        image_files.warn_skipped([], "data")


# -- the `mobilenetv3 train` command --------------------------------------------------------------


def _train(*args: object) -> subprocess.CompletedProcess:
    script = Path(sys.executable).with_name("mobilenetv3")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "mobilenetv3"]
    return subprocess.run(
        [*command, "train", *map(str, args), "--preset", "mobilenet_v3_small", "--no-weights", "--image-size", "32",
         "--batch-size", "8", "--quiet"],
        capture_output=True, text=True, timeout=600, env={**os.environ, "KERAS_BACKEND": BACKEND},
    )


def _error_lines(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("mobilenetv3 train:")]


@pytest.mark.slow
@TF_ONLY
@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_set_bbox_of_image_15([float("nan"), 10, 20, 20]), r"annotation \d+ \(image 00015.png\): 'bbox' \[nan, 10, "
         r"20, 20\] holds NaN or infinity\.$"),
        # heavy: the same CLI path (read_coco_folder's ValueError as one line) as nan-box, and `[]`'s message is
        # checked in CI by test_bad_boxes_are_refused_naming_the_file_and_annotation; 14 s
        pytest.param(_set_bbox_of_image_15([]), r"annotation \d+ \(image 00015.png\): 'bbox' must be \[x, y, width, "
                     r"height\]", marks=pytest.mark.heavy),
        (lambda coco: coco.__setitem__("annotations", []), "holds no annotations"),
    ],
    ids=["nan-box", "empty-box", "no-annotations"],
)
def test_train_detect_refuses_bad_annotations_and_writes_nothing(tmp_path, edit, message):
    """A NaN box made `train --task detect` exit 0 with a NaN preset; `[]`
    said "not enough values to unpack"; no annotations printed AP -1."""
    folder = _coco_folder(tmp_path / "coco")
    _edit_annotations(folder, edit)
    result = _train(folder, "--task", "detect", "--epochs", "1", "--out", tmp_path / "model")
    assert result.returncode == 2, result.stderr[-2000:]
    lines = _error_lines(result)
    assert len(lines) == 1, result.stderr[-2000:]
    assert lines[0].startswith(f"mobilenetv3 train: error: {folder / 'annotations.json'}")
    assert re.search(message, lines[0]), lines[0]
    assert not (tmp_path / "model").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["coco"]


@pytest.mark.slow
@TF_ONLY
def test_train_detect_never_writes_diverged_weights(tmp_path):
    folder = _coco_folder(tmp_path / "coco")
    result = _train(folder, "--task", "detect", "--epochs", "1", "--learning-rate", "1e38", "--out", tmp_path / "model")
    assert result.returncode == 2, result.stderr[-2000:]
    lines = _error_lines(result)
    assert len(lines) == 1 and lines[0].startswith("mobilenetv3 train: error: Training diverged: weight "), lines
    assert f"nothing was written to '{tmp_path / 'model'}'" in lines[0]
    assert not (tmp_path / "model").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["coco"]


@pytest.mark.slow
@TF_ONLY
def test_train_skips_unreadable_images_naming_each_and_trains_on_the_rest(tmp_path):
    folder = tmp_path / "data"
    odd = _odd_images_folder(folder)
    result = _train(folder, "--head-epochs", "1", "--fine-tune-epochs", "0", "--out", tmp_path / "model")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "wrote classifier preset" in result.stdout
    lines = result.stderr.splitlines()
    first = lines.index(f"mobilenetv3 train: warning: Skipped 4 image file(s) of {folder} (training goes on "
                        "without them):")
    skipped = lines[first + 1 : first + 5]
    for kind in ("corrupt", "zero_byte", "truncated", "one_pixel"):
        assert sum(str(odd[kind]) in line for line in skipped) == 1, (kind, skipped)
    assert not any(str(odd[kind]) in result.stderr for kind in ("cmyk", "sixteen_bit"))
    assert (tmp_path / "model" / "model.weights.h5").is_file()
