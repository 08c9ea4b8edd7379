"""Batch prediction (`predict` / `detect` / `segment --output`) through the
installed console script: shards cover the set once, CSV and JSONL rows hold
what the Keras model computes (boxes converted by Keras' own converter), a
torn last line is repaired, a `kill -9` mid-job resumes with every file
exactly once, unreadable files get error rows, and ONNX Runtime agrees with
Keras. Tiny 48x48 models, TensorFlow only."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest
from console_script import SCRIPT, run_script  # noqa: E402
from PIL import Image

import mobilenetv3
from mobilenetv3.cli import main as cli_main
from mobilenetv3.serving import batch_predict

SIZE = 48
CLASSES = ["ant", "bee", "cat"]
TF_ONLY = pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="the console script runs TensorFlow")
pytestmark = TF_ONLY


def _script(*argv: object, cwd: Path, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    return run_script(*argv, cwd=cwd, expect=0 if check else None, timeout=timeout)


def _backbone() -> mobilenetv3.MobileNetV3Backbone:
    return mobilenetv3.MobileNetV3SmallBackbone(input_shape=(SIZE, SIZE, 3), include_rescaling=True, alpha=0.35)


def _write_images(folder: Path, count: int, seed: int = 0, size: tuple[int, int] = (SIZE, SIZE)) -> list[Path]:
    """`count` smooth JPEGs (blobs: noise gives near-uniform scores)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        blobs = Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)).resize(size, Image.BILINEAR)
        path = folder / f"img_{i:04d}.jpg"
        blobs.save(path, quality=90)
        paths.append(path)
    return paths


def _write_corrupt(folder: Path) -> list[Path]:
    good = folder / "img_0000.jpg"
    corrupt = [folder / "broken.jpg", folder / "truncated.jpg", folder / "zz_empty.png"]
    corrupt[0].write_bytes(b"this is not an image")
    corrupt[1].write_bytes(good.read_bytes()[:200])
    corrupt[2].write_bytes(b"")
    return corrupt


def _rows(path: Path) -> list[dict]:
    if path.suffix == ".csv":
        with open(path, newline="") as handle:
            return list(csv.DictReader(handle))
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    if not SCRIPT.is_file():
        pytest.skip(f"the console script is not installed beside {sys.executable}")
    return tmp_path_factory.mktemp("batch")


@pytest.fixture(scope="module")
def classifier(work: Path):
    keras.utils.set_random_seed(1)
    model = mobilenetv3.MobileNetV3ImageClassifier(_backbone(), len(CLASSES), activation="softmax")
    model.class_names = list(CLASSES)
    model.save_to_preset(work / "classifier")
    return model


@pytest.fixture(scope="module")
def small_set(work: Path) -> dict:
    """21 images in two folders (one nested), one corrupt file, a list file."""
    images = _write_images(work / "small", 15, seed=2) + _write_images(work / "small" / "nested", 4, seed=3)
    listed = _write_images(work / "listed", 2, seed=4)
    names = [str(p.relative_to(work)) for p in listed] + [str(images[0])]  # the last one also in small/
    (work / "list.txt").write_text("# a comment\n\n" + "".join(f"{name}\n" for name in names))
    broken = work / "small" / "nested" / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    return {"files": sorted(os.path.normpath(p) for p in [*images, *listed, broken]), "broken": str(broken)}


def _keras_probabilities(model, paths: list[str]) -> np.ndarray:
    from mobilenetv3.presets import preprocessing

    policy = preprocessing.preprocessing_for_model(model)
    return np.asarray(model.predict(preprocessing.load_images(paths, policy), verbose=0))


@pytest.mark.slow
def test_shards_cover_the_set_once_csv_and_jsonl_rows_hold_the_models_scores(work, classifier, small_set,
                                                                             monkeypatch):
    common = ["predict", "--preset", "classifier", "small", "--files-from", "list.txt", "--top", "2",
              "--batch-size", "4", "--workers", "2"]
    runs = [_script(*common, "--shard", "1/2", "--output", "half1.csv", cwd=work),
            _script(*common, "--shard", "2/2", "--output", "half2.jsonl", cwd=work)]
    halves = [_rows(work / "half1.csv"), _rows(work / "half2.jsonl")]
    paths = [[row["path"] for row in rows] for rows in halves]
    assert sorted(paths[0] + paths[1]) == [os.path.relpath(p, work) for p in small_set["files"]]
    assert not set(paths[0]) & set(paths[1])
    assert abs(len(paths[0]) - len(paths[1])) <= 1
    broken = os.path.relpath(small_set["broken"], work)
    errors = [row for rows in halves for row in rows if row.get("error")]
    assert [row["path"] for row in errors] == [broken]
    assert sum(f"{broken}: skipped:" in run.stderr for run in runs) == 1  # reported on stderr too
    # the rows hold what the Keras model gives on the preset's preparation
    good = [row for rows in halves for row in rows if not row.get("error")]
    expected = _keras_probabilities(classifier, [str(work / row["path"]) for row in good])
    for row, probabilities in zip(good, expected):
        order = np.argsort(-probabilities)[:2]
        if "labels" in row:
            labels, scores = row["labels"], row["scores"]
        else:
            labels, scores = [row["label_1"], row["label_2"]], [float(row["score_1"]), float(row["score_2"])]
            assert [int(row["class_1"]), int(row["class_2"])] == order.tolist()
        assert labels == [CLASSES[i] for i in order]
        np.testing.assert_allclose(scores, probabilities[order], atol=1e-5)

    # a torn last CSV line (killed mid-write) is cut off and its image predicted again, once
    # (the same command in this process: one TensorFlow start less)
    csv_path = work / "half1.csv"
    whole = csv_path.read_bytes()
    csv_path.write_bytes(whole[:-25])
    monkeypatch.chdir(work)
    assert cli_main([*common, "--shard", "1/2", "--output", "half1.csv"]) == 0
    assert csv_path.read_bytes() == whole


@pytest.mark.slow
def test_onnxruntime_gives_keras_top1(work, classifier, small_set):
    pytest.importorskip("onnxruntime")
    _script("predict", "--preset", "classifier", "small", "--runtime", "onnxruntime", "--output", "ort.jsonl",
            cwd=work)
    rows = _rows(work / "ort.jsonl")
    assert [row["path"] for row in rows] == [os.path.relpath(p, work) for p in small_set["files"] if "listed" not in p]
    good = [row for row in rows if "error" not in row]
    assert len(good) == len(rows) - 1
    expected = _keras_probabilities(classifier, [str(work / row["path"]) for row in good])
    for row, probabilities in zip(good, expected):
        assert row["classes"][0] == int(np.argmax(probabilities))
        np.testing.assert_allclose(row["scores"], np.sort(probabilities)[::-1], atol=1e-4)


@pytest.mark.slow
def test_detect_writes_boxes_in_the_chosen_format(work):
    from mobilenetv3.serving.predictor import open_predictor

    keras.utils.set_random_seed(2)
    backbone = mobilenetv3.MobileNetV3SmallBackbone(include_rescaling=True, alpha=0.35)
    model = mobilenetv3.MobileNetV3ObjectDetector(backbone, num_classes=3, image_size=64, score_threshold=0.0,
                                                  max_detections=5, bounding_box_format="xyxy")
    model.save_to_preset(work / "detector")
    paths = _write_images(work / "det", 2, seed=5, size=(80, 60))
    _script("detect", "--preset", "detector", "det", "--output", "boxes.jsonl", "--bounding-box-format", "xywh",
            "--score-threshold", "0", "--max-detections", "5", cwd=work)
    rows = _rows(work / "boxes.jsonl")
    assert [row["path"] for row in rows] == [os.path.relpath(p, work) for p in paths]
    predictor = open_predictor(model, log=lambda line: None)
    for path, row in zip(paths, rows):
        image, (height, width) = predictor.prepare(str(path))
        assert (row["height"], row["width"]) == (height, width) == (60, 80)
        found = model.predict(image[None], verbose=0)
        count = int(found["num_detections"][0])
        assert count == len(row["boxes"]) > 0
        scale = np.array([width / image.shape[1], height / image.shape[0]] * 2, "float32")
        xyxy = np.asarray(found["boxes"][0, :count]) * scale
        xywh = keras.ops.convert_to_numpy(keras.utils.bounding_boxes.convert_format(
            xyxy, source="xyxy", target="xywh", height=height, width=width))
        np.testing.assert_allclose(row["boxes"], xywh, atol=2e-3)
        np.testing.assert_allclose(row["scores"], found["confidence"][0, :count], atol=1e-5)
        assert row["classes"] == [int(v) for v in found["labels"][0, :count]]


@pytest.mark.slow
def test_segment_writes_a_mask_per_image(work):
    keras.utils.set_random_seed(3)
    model = mobilenetv3.MobileNetV3ImageSegmenter(_backbone(), num_classes=3)
    model.save_to_preset(work / "segmenter")
    paths = _write_images(work / "seg", 2, seed=6)
    (work / "seg" / "bad.png").write_bytes(b"")
    _script("segment", "--preset", "segmenter", "seg/*.jpg", "seg/bad.png", "--output", "seg.csv",
            "--masks-dir", "masks", cwd=work)
    rows = _rows(work / "seg.csv")
    assert [row["path"] for row in rows] == ["seg/bad.png", *(os.path.relpath(p, work) for p in paths)]
    assert rows[0]["error"] and not rows[0]["mask"]
    scores = np.asarray(model.predict(np.stack([np.asarray(Image.open(p), "float32") for p in paths]), verbose=0))
    for row, score in zip(rows[1:], scores):
        mask = np.asarray(Image.open(work / row["mask"]))
        assert Path(row["mask"]).parts[0] == "masks" and mask.shape == (SIZE, SIZE)
        np.testing.assert_array_equal(mask, np.argmax(score, axis=-1))
        assert json.loads(row["pixel_counts"]) == np.bincount(mask.ravel(), minlength=3).tolist()


@pytest.mark.parametrize("argv, message", [
    (["predict", "--preset", "p", "a.jpg", "--output", "rows.txt"], "--output 'rows.txt': the suffix"),
    (["predict", "--preset", "p", "a.jpg", "--output", "r.jsonl", "--shard", "0/2"], "--shard must be i/n"),
    (["predict", "--preset", "p", "a.jpg", "--output", "r.jsonl", "--shard", "3/2"], "--shard must be i/n"),
    (["predict", "--preset", "p", "a.jpg", "--shard", "1/2"], "--shard applies to the batch mode only"),
    (["predict", "--preset", "p", "a.jpg", "--output", "r.csv", "--batch-size", "0"], "--batch-size"),
    (["predict", "--preset", "p", "nothing*.jpg", "--output", "r.csv"], "matches no image files"),
    (["predict", "--preset", "p", "--output", "r.csv", "--files-from", "missing.txt"], "--files-from"),
    (["detect", "--preset", "p", "a.jpg", "--output", "r.csv", "--bounding-box-format", "xy"],
     "--bounding-box-format must be one of"),
    (["segment", "--preset", "p", "a.jpg", "--output", "r.csv"], "--masks-dir is required"),
])
def test_bad_arguments_are_refused_before_the_model_loads(tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    Image.new("RGB", (8, 8)).save(tmp_path / "a.jpg")
    assert cli_main(argv) == 2
    error = capsys.readouterr().err
    assert message in error and error.startswith(f"mobilenetv3 {argv[0]}: error:"), error


def test_collect_files_sorts_dedups_and_shards(tmp_path):
    _write_images(tmp_path / "a" / "b", 3)
    files = batch_predict.collect_files([str(tmp_path / "a"), str(tmp_path / "a" / "b" / "*.jpg"),
                                         str(tmp_path / "a" / "b" / "img_0001.jpg")])
    assert files == sorted(str(tmp_path / "a" / "b" / f"img_{i:04d}.jpg") for i in range(3))
    for n in (1, 2, 3, 5):
        shards = [batch_predict.shard_files(files, (i, n)) for i in range(1, n + 1)]
        assert sorted(sum(shards, [])) == files


def test_resume_refuses_a_foreign_file_and_drops_a_torn_line(tmp_path):
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"path": "a.jpg", "error": "x"}\n{"path": "b.jp')
    assert batch_predict.read_done(rows) == {"a.jpg"}
    assert rows.read_text() == '{"path": "a.jpg", "error": "x"}\n'
    rows.write_text("hello\n")
    with pytest.raises(ValueError, match="line 1 is not a prediction row"):
        batch_predict.read_done(rows)
    table = tmp_path / "rows.csv"
    table.write_text("path,label_1\n")
    with pytest.raises(ValueError, match="holds other columns"):
        batch_predict.read_done(table, batch_predict.csv_columns("classifier", 1))
    table.write_text("no newline at all")
    assert batch_predict.read_done(table) == set() and table.read_text() == ""


@pytest.mark.slow
def test_kill_9_then_resume_writes_every_file_exactly_once(work, classifier, monkeypatch):
    folder = work / "thousand"
    _write_images(folder, 997, seed=7)
    corrupt = _write_corrupt(folder)
    files = sorted(str(p.relative_to(work)) for p in folder.iterdir())
    assert len(files) == 1000
    argv = ["predict", "--preset", "classifier", "thousand", "--output", "resumed.jsonl", "--batch-size", "4"]
    env = {**os.environ, "KERAS_BACKEND": "tensorflow"}
    job = subprocess.Popen([str(SCRIPT), *argv], cwd=work, env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    output = work / "resumed.jsonl"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and job.poll() is None:
        if output.is_file() and output.read_bytes().count(b"\n") >= 40:
            break
        time.sleep(0.02)
    job.send_signal(signal.SIGKILL)
    job.wait()
    written = output.read_bytes().count(b"\n")
    assert 40 <= written < 1000, written  # killed mid-job
    with open(output, "a") as handle:  # as if killed mid-line
        handle.write('{"path": "thousand/img_09')
    resumed = _script(*argv[:-1], "32", cwd=work)  # another batch size resumes the same
    assert f"{written} already in resumed.jsonl" in resumed.stdout
    monkeypatch.chdir(work)  # the uninterrupted run: the same command in this process (one TensorFlow start less)
    assert cli_main(["predict", "--preset", "classifier", "thousand", "--output", "whole.csv", "--batch-size", "32"]) == 0
    rows, reference = _rows(output), _rows(work / "whole.csv")
    assert sorted(row["path"] for row in rows) == files  # every file once: none missing, none twice
    assert sorted(row["path"] for row in rows if "error" in row) == sorted(str(p.relative_to(work)) for p in corrupt)
    by_path = {row["path"]: row for row in reference}
    for row in rows:
        other = by_path[row["path"]]
        if "error" in row:
            assert other["error"]
            continue
        assert row["labels"] == [other[f"label_{k}"] for k in range(1, 4)]
        np.testing.assert_allclose(row["scores"], [float(other[f"score_{k}"]) for k in range(1, 4)], atol=1e-5)
