"""`evaluate` and its metrics, against oracles that are not ours.

- The metrics on the same predictions: top-1 / top-5 equal
  `timm.utils.accuracy` (torch tensors); the 12 COCO numbers equal a
  pycocotools run built here the way torchvision's reference
  `coco_eval.py` builds it (ground truth from the targets, `loadRes` of
  xywh boxes with category ids); mIoU equals a confusion-free computation
  from the definition (ignored pixels out, classes with zero union out of
  the mean); the Cityscapes 34 -> 19 table equals torchvision's
  `Cityscapes.classes`.
- The command as users run it: one `mobilenetv3 evaluate` subprocess per
  task on tiny preset folders and generated datasets in each layout; the
  JSON report's numbers equal the oracle's on the raw predictions the same
  run wrote (`--predictions`), and the Python function's.
- onnxruntime gives the classifier's top-1 that Keras gives.
- Real weights (`../shared/fixtures`): on an ImageNet-style folder of the
  fixture photos, `evaluate`'s per-image top-1 is `predict`'s.
- Bad input exits 2 naming the folder, class or mask.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from console_script import SCRIPT, run_script  # noqa: E402
from PIL import Image

from mobilenetv3.serving import datasets, metrics

CLASSES = ["circle", "square", "triangle"]


# -- metrics against their oracles (no model) -----------------------------------------------------------


@pytest.mark.parametrize("num_classes", [10, 1001])
def test_topk_accuracy_equals_timm(num_classes: int) -> None:
    torch = pytest.importorskip("torch")
    timm_utils = pytest.importorskip("timm.utils")
    rng = np.random.default_rng(num_classes)
    logits = rng.normal(0, 1, (300, num_classes)).astype("float32")
    targets = rng.integers(0, num_classes, 300)
    logits[np.arange(0, 300, 3), targets[::3]] += 4.0  # about a third right at top-1, more at top-5
    accuracy = metrics.TopKAccuracy(num_classes)
    for start in range(0, 300, 64):  # streamed in uneven batches
        accuracy.update(logits[start:start + 64], targets[start:start + 64])
    result = accuracy.result()
    top1, top5 = timm_utils.accuracy(torch.from_numpy(logits), torch.from_numpy(targets), topk=(1, 5))
    assert result["top1"] == pytest.approx(float(top1), rel=1e-6)  # timm counts in float32
    assert result["top5"] == pytest.approx(float(top5), rel=1e-6)
    assert 20 < result["top1"] < result["top5"] < 100
    for name, entry in result["per_class"].items():
        rows = targets == int(name)
        assert entry["images"] == rows.sum()
        assert entry["accuracy"] == pytest.approx(100 * np.mean(logits[rows].argmax(1) == int(name)))


def _reference_coco_eval(gt_images: list[dict], gt_boxes: dict, results: list[dict]) -> np.ndarray:
    """torchvision's reference evaluation: `convert_to_coco_api` (ground truth
    from the targets: xywh boxes, area = w * h, iscrowd 0, ids from 1), then
    `COCO.loadRes(results)` and `COCOeval(..., "bbox")`."""
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    dataset = {"images": gt_images, "annotations": [], "categories": []}
    categories = set()
    for image_id, entries in gt_boxes.items():
        for category, (x1, y1, x2, y2) in entries:
            w, h = x2 - x1, y2 - y1
            dataset["annotations"].append({"id": len(dataset["annotations"]) + 1, "image_id": image_id,
                                           "category_id": category, "bbox": [x1, y1, w, h], "area": w * h,
                                           "iscrowd": 0})
            categories.add(category)
    dataset["categories"] = [{"id": c} for c in sorted(categories)]
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = dataset
        coco.createIndex()
        evaluation = COCOeval(coco, COCO.loadRes(coco, results), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return np.asarray(evaluation.stats)


def _write_coco(folder: Path, num_images: int = 12, size: int = 96, seed: int = 0,
                category_ids: tuple[int, ...] = (11, 5, 7)) -> tuple[Path, dict]:
    """Generated shapes in COCO's layout; the categories' ids are not their
    label order, so only a mapping by name scores right. Returns the
    annotation file and `{image id: [(category id, xyxy)]}`."""
    from mobilenetv3.datasets.detection import synthetic_detection

    images, targets = synthetic_detection(num_images, size, seed=seed)
    folder.mkdir(parents=True)
    coco: dict = {"images": [], "annotations": [],
                  "categories": [{"id": i, "name": n} for i, n in zip(category_ids, CLASSES)]}
    truth: dict = {}
    for index, image in enumerate(images):
        image_id = 100 + index
        Image.fromarray(image.astype("uint8")).save(folder / f"{index:03d}.png")
        coco["images"].append({"id": image_id, "file_name": f"{index:03d}.png", "height": size, "width": size})
        truth[image_id] = []
        for box, label in zip(targets["boxes"][index], targets["labels"][index]):
            if label > 0:
                x1, y1, x2, y2 = (float(v) for v in box)
                category = category_ids[label - 1]
                truth[image_id].append((category, (x1, y1, x2, y2)))
                coco["annotations"].append({"id": len(coco["annotations"]) + 1, "image_id": image_id,
                                            "category_id": category, "bbox": [x1, y1, x2 - x1, y2 - y1],
                                            "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
    path = folder / "annotations.json"
    path.write_text(json.dumps(coco))
    return path, truth


def test_coco_numbers_equal_reference_cocoeval(tmp_path: Path) -> None:
    pytest.importorskip("pycocotools")
    _, truth = _write_coco(tmp_path / "coco", num_images=16)
    dataset = datasets.open_dataset(tmp_path / "coco")
    assert dataset.task == "detector" and len(dataset.items) == 16
    rng = np.random.default_rng(0)
    results = []
    for image_id, entries in truth.items():  # jittered true boxes, some with the wrong class, plus false ones
        for category, (x1, y1, x2, y2) in entries:
            jitter = rng.normal(0, 2.0, 4)
            wrong = rng.random() < 0.2
            results.append({"image_id": image_id, "category_id": 5 if wrong else category,
                            "bbox": [x1 + jitter[0], y1 + jitter[1], x2 - x1 + jitter[2], y2 - y1 + jitter[3]],
                            "score": float(rng.uniform(0.3, 1.0))})
        for _ in range(3):
            x, y = rng.uniform(0, 70, 2)
            results.append({"image_id": image_id, "category_id": int(rng.choice([11, 5, 7])),
                            "bbox": [x, y, 20.0, 20.0], "score": float(rng.uniform(0, 0.6))})
    ours = metrics.coco_metrics(dataset.coco, results)
    reference = _reference_coco_eval(dataset.coco["images"], truth, results)
    np.testing.assert_allclose([ours[k] for k in metrics.COCO_STATS], reference, rtol=0, atol=1e-12)
    assert 0.2 < ours["AP"] < 1 and ours["AP50"] > ours["AP"]


def test_coco_category_mapping_rules() -> None:
    categories = [{"id": 11, "name": "circle"}, {"id": 5, "name": "Square"}, {"id": 7, "name": "triangle"}]
    # by name, whatever the ids (what `train --task detect` saves: background first)
    assert datasets.coco_categories(categories, 4, ["background", "circle", "square", "triangle"]) == {
        1: 11, 2: 5, 3: 7}
    # a converted torchvision SSDLite: its 91 names put each COCO category at its own id
    from mobilenetv3.core import decode

    coco = [{"id": 1, "name": "person"}, {"id": 90, "name": "toothbrush"}, {"id": 18, "name": "dog"}]
    assert datasets.coco_categories(coco, 91, list(decode.coco_category_names())) == {1: 1, 90: 90, 18: 18}
    assert datasets.coco_categories(coco, 91, None) == {1: 1, 90: 90, 18: 18}
    # no names: labels 1..K in category-id order
    assert datasets.coco_categories(categories, 4, None) == {1: 5, 2: 7, 3: 11}
    with pytest.raises(ValueError, match="Cannot map the model's 7 labels to the 3 COCO categories"):
        datasets.coco_categories(categories, 7, None)


def _definition_miou(pairs: list[tuple[np.ndarray, np.ndarray]], num_classes: int,
                     ignore: int = 255) -> tuple[float, float, dict]:
    """mIoU from the definition: IoU_c = |T_c and P_c| / |T_c or P_c| over
    pixels whose target is not `ignore`; classes with an empty union are
    left out of the mean (torchvision's reference takes a NaN-mean)."""
    truth = np.concatenate([t.ravel() for t, _ in pairs])
    predicted = np.concatenate([p.ravel() for _, p in pairs])
    valid = truth != ignore
    truth, predicted = truth[valid], predicted[valid]
    ious = {}
    for c in range(num_classes):
        union = np.count_nonzero((truth == c) | (predicted == c))
        if union:
            ious[c] = np.count_nonzero((truth == c) & (predicted == c)) / union
    return 100 * float(np.mean(list(ious.values()))), 100 * float(np.mean(truth == predicted)), ious


def test_confusion_matrix_miou_equals_definition() -> None:
    rng = np.random.default_rng(0)
    pairs = []
    for shape in [(30, 40), (17, 23), (64, 9)]:  # streamed, masks of any size
        truth = rng.integers(0, 3, shape)  # classes 0..2 in the targets
        truth[rng.random(shape) < 0.1] = 255  # ignored pixels, predicted anything
        predicted = np.where(rng.random(shape) < 0.6, np.where(truth == 255, 0, truth), rng.integers(0, 4, shape))
        pairs.append((truth, predicted))  # class 3: predicted only (IoU 0); classes 4, 5: nowhere (no IoU)
    matrix = metrics.ConfusionMatrix(6, ignore_index=255)
    for truth, predicted in pairs:
        matrix.update(truth, predicted)
    result = matrix.result()
    miou, pixel_accuracy, ious = _definition_miou(pairs, 6)
    assert result["miou"] == pytest.approx(miou, abs=1e-9)
    assert result["pixel_accuracy"] == pytest.approx(pixel_accuracy, abs=1e-9)
    assert sorted(ious) == [0, 1, 2, 3] and ious[3] == 0
    assert result["per_class_iou"]["3"] == 0.0 and result["per_class_iou"]["4"] is None
    assert [result["per_class_iou"][str(c)] for c in range(4)] == pytest.approx([100 * ious[c] for c in range(4)])
    with pytest.raises(ValueError, match="holds values \\[7\\]"):
        matrix.update(np.array([[7]]), np.array([[0]]), source="Mask x.png")


def test_cityscapes_train_ids_equal_published_table() -> None:
    torchvision_datasets = pytest.importorskip("torchvision.datasets")
    published = {c.id: c.train_id for c in torchvision_datasets.Cityscapes.classes if 0 <= c.id}
    assert {i: t for i, t in published.items() if t not in (255, -1)} == datasets.CITYSCAPES_TRAIN_IDS
    names = [c.name for c in sorted(torchvision_datasets.Cityscapes.classes, key=lambda c: c.train_id)
             if 0 <= c.train_id < 255]
    assert tuple(names) == datasets.CITYSCAPES_CLASSES


def test_classification_labels_wordnet_names_indices_and_unknown(tmp_path: Path) -> None:
    from mobilenetv3.core import decode

    classes = decode.imagenet_classes()
    for folder in (classes[0][0], classes[285][1], "7"):
        (tmp_path / "val" / folder).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(tmp_path / "val" / folder / "a.png")
    dataset = datasets.open_dataset(tmp_path / "val")
    assert dataset.format == "folder"
    labels = {Path(p).parent.name: t for p, t in datasets.classification_labels(dataset, 1000)}
    assert labels == {"n01440764": 0, "Egyptian cat": 285, "7": 7}
    slim = {Path(p).parent.name: t for p, t in datasets.classification_labels(dataset, 1001)}
    assert slim == {"n01440764": 1, "Egyptian cat": 286, "7": 7}  # TF-slim: output 0 is background
    mapped = datasets.classification_labels(dataset, 3, CLASSES, {"n01440764": "square", "Egyptian cat": 2,
                                                                   "7": "circle"})
    assert {Path(p).parent.name: t for p, t in mapped} == {"n01440764": 1, "Egyptian cat": 2, "7": 0}
    listing = tmp_path / "list.txt"
    listing.write_text("val/n01440764/a.png 0\nval/7/a.png\tEgyptian cat\n")
    assert [t for _, t in datasets.classification_labels(datasets.open_dataset(listing), 1000)] == [0, 285]
    with pytest.raises(ValueError, match=r"3 class folder\(s\) name no class .*\['7', 'Egyptian cat', 'n01440764'\]"
                                         r".*Valid labels include \['circle'"):
        datasets.classification_labels(dataset, 3, CLASSES)


# -- the command, end to end ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not SCRIPT.is_file():
        pytest.skip(f"the console script is not installed beside {sys.executable}")
    return tmp_path_factory.mktemp("evaluate")


def _backbone(**kwargs):
    import mobilenetv3

    return mobilenetv3.MobileNetV3SmallBackbone(alpha=0.35, include_rescaling=True, **kwargs)


def _randomize_head(model, images: np.ndarray, seed: int = 1) -> None:
    """Random head kernels (zero biases), scaled so that the scores on
    `images` spread by about 1: a fresh network's scores differ by 1e-6
    from class to class, near-ties no runtime is expected to keep."""
    rng = np.random.default_rng(seed)
    backbone = {id(w) for w in model.backbone.weights}
    head = [w for w in model.weights if id(w) not in backbone and w.path.endswith(("kernel", "bias"))]
    for weight in head:
        scale = 0.5 if weight.path.endswith("kernel") else 0.0
        weight.assign(rng.normal(0, 1, weight.shape).astype("float32") * scale)
    kernels = [w for w in head if w.path.endswith("kernel")]
    for _ in range(6):
        scores = np.asarray(model.predict(images, verbose=0))
        spread = float(np.std(scores - scores.mean(axis=0)))  # from image to image
        if 0.5 < spread < 5:
            break
        for kernel in kernels:
            kernel.assign(np.asarray(kernel) * (1 / spread) ** (1 / len(kernels)))
    scores = np.asarray(model.predict(images, verbose=0))
    bias = [w for w in head if w.path.endswith("bias")][-1]
    bias.assign(-scores.reshape(-1, scores.shape[-1]).mean(axis=0))  # every class wins somewhere


@pytest.fixture(scope="module")
def classifier(work: Path):
    from mobilenetv3 import MobileNetV3ImageClassifier

    model = MobileNetV3ImageClassifier(_backbone(input_shape=(32, 32, 3)), 3)
    data = work / "shapes"
    rng = np.random.default_rng(0)
    for label, name in enumerate(CLASSES):
        (data / name).mkdir(parents=True)
        for index in range(4):
            tint = np.roll([200, 60, 20], label + index)
            pixels = np.clip(rng.normal(tint, 40, (40, 56, 3)), 0, 255).astype("uint8")
            Image.fromarray(pixels).save(data / name / f"{index}.png")
    tints = [np.roll([200, 60, 20], k) for k in range(3)]
    _randomize_head(model, np.stack([np.clip(rng.normal(t, 40, (32, 32, 3)), 0, 255) for t in tints * 3]))
    model.class_names = list(CLASSES)
    model.save_to_preset(work / "classifier")
    (data / "circle" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return model, data


@pytest.mark.slow
def test_classifier_command_report_equals_timm_and_python(classifier, work: Path) -> None:
    torch = pytest.importorskip("torch")
    timm_utils = pytest.importorskip("timm.utils")
    from mobilenetv3.serving.evaluate import evaluate

    model, data = classifier
    out = run_script("evaluate", "--preset", "classifier", str(data), "--report", "classifier.json",
                     "--predictions", "classifier.jsonl", "--batch-size", "5", cwd=work)
    report = json.loads((work / "classifier.json").read_text())
    assert "top1" in out.stdout and "1 unreadable" in out.stdout
    assert report["dataset"]["images"] == 13 and report["dataset"]["unreadable"] == 1
    assert report["unreadable_images"][0]["path"].endswith("corrupt.png")
    rows = [json.loads(line) for line in (work / "classifier.jsonl").read_text().splitlines()]
    assert len(rows) == 12 and {r["target"] for r in rows} == {0, 1, 2}
    probabilities = torch.tensor([r["probabilities"] for r in rows])
    top1, top3 = timm_utils.accuracy(probabilities, torch.tensor([r["target"] for r in rows]), topk=(1, 3))
    assert report["metrics"]["top1"] == pytest.approx(float(top1), rel=1e-6)  # timm counts in float32
    assert report["metrics"]["top3"] == pytest.approx(float(top3), rel=1e-6) == 100.0
    assert set(report["metrics"]["per_class"]) == set(CLASSES)
    python = evaluate(model, data, batch_size=5, progress=False, log=lambda line: None)
    assert python["metrics"]["top1"] == report["metrics"]["top1"]
    assert python["metrics"]["per_class"] == report["metrics"]["per_class"]
    assert len({int(np.argmax(r["probabilities"])) for r in rows}) > 1  # not one class for every image
    # the same images as a 'path label' list (names and indices) give the same numbers
    listing = work / "shapes.txt"
    listing.write_text("".join(f"{r['path']}\t{CLASSES[r['target']] if i % 2 else r['target']}\n"
                               for i, r in enumerate(rows)))
    from_list = evaluate(model, listing, batch_size=4, progress=False)
    assert from_list["dataset"]["format"] == "list" and from_list["metrics"]["top1"] == report["metrics"]["top1"]


@pytest.mark.slow
def test_classifier_on_onnxruntime_gives_keras_top1(classifier, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    from mobilenetv3.serving.evaluate import evaluate

    model, data = classifier
    on_keras = evaluate(model, data, predictions=tmp_path / "keras.jsonl", progress=False)
    on_onnx = evaluate(model, data, runtime="onnxruntime", predictions=tmp_path / "onnx.jsonl", progress=False)
    assert on_onnx["runtime"] == "onnxruntime" and on_onnx["metrics"]["top1"] == on_keras["metrics"]["top1"]
    keras_rows = [json.loads(line) for line in (tmp_path / "keras.jsonl").read_text().splitlines()]
    onnx_rows = [json.loads(line) for line in (tmp_path / "onnx.jsonl").read_text().splitlines()]
    assert [np.argmax(r["probabilities"]) for r in onnx_rows] == [np.argmax(r["probabilities"]) for r in keras_rows]
    np.testing.assert_allclose([r["probabilities"] for r in onnx_rows], [r["probabilities"] for r in keras_rows],
                               atol=1e-4)


@pytest.mark.slow
def test_detector_command_report_equals_cocoeval_on_its_predictions(work: Path) -> None:
    pytest.importorskip("pycocotools")
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from mobilenetv3 import MobileNetV3ObjectDetector

    model = MobileNetV3ObjectDetector(_backbone(reduced_tail=True), num_classes=4, image_size=64)
    model.class_names = ["background", *CLASSES]
    model.save_to_preset(work / "detector")
    annotations, _ = _write_coco(work / "coco", num_images=6, size=80)
    run_script("evaluate", "--preset", "detector", str(work / "coco"), "--report", "detector.json",
               "--predictions", "detections.json", cwd=work)
    report = json.loads((work / "detector.json").read_text())
    results = json.loads((work / "detections.json").read_text())
    assert results and {r["category_id"] for r in results} <= {11, 5, 7}
    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO(str(annotations))
        evaluation = COCOeval(truth, truth.loadRes(str(work / "detections.json")), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    np.testing.assert_allclose([report["metrics"][k] for k in metrics.COCO_STATS], evaluation.stats, atol=1e-12)
    assert report["task"] == "detector" and report["dataset"]["evaluated"] == 6
    assert report["settings"]["score_threshold"] == 0.001 and report["settings"]["max_detections"] == 300


def _palette_mask(values: np.ndarray, path: Path) -> None:
    image = Image.fromarray(values.astype("uint8"), mode="P")
    image.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0] + [224, 224, 192] * 252)
    image.save(path)


@pytest.mark.slow
def test_segmenter_command_report_equals_definition_on_its_masks(work: Path) -> None:
    from mobilenetv3 import MobileNetV3ImageSegmenter
    from mobilenetv3.serving.evaluate import evaluate

    model = MobileNetV3ImageSegmenter(_backbone(input_shape=(64, 64, 3)), num_classes=4)
    _randomize_head(model, np.random.default_rng(3).uniform(0, 255, (2, 64, 64, 3)).astype("float32"))
    model.save_to_preset(work / "segmenter")
    voc, rng = work / "voc", np.random.default_rng(0)
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (voc / sub).mkdir(parents=True)
    for index, (height, width) in enumerate([(48, 64), (70, 50), (64, 64), (33, 90)]):
        Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype="uint8")).save(
            voc / "JPEGImages" / f"im{index}.jpg")
        mask = rng.integers(0, 3, (height, width))
        mask[:, :2] = 255  # VOC's border: ignored
        _palette_mask(mask, voc / "SegmentationClass" / f"im{index}.png")
    (voc / "ImageSets/Segmentation/val.txt").write_text("im0\nim1\nim3\n")  # im2 is not in the split
    run_script("evaluate", "--preset", "segmenter", str(voc), "--report", "segmenter.json",
               "--predictions", "masks", cwd=work)
    report = json.loads((work / "segmenter.json").read_text())
    assert report["dataset"]["images"] == 3
    pairs = [(np.asarray(Image.open(voc / "SegmentationClass" / f"{n}.png")).astype("int64"),
              np.asarray(Image.open(work / "masks" / f"{n}.png")).astype("int64")) for n in ("im0", "im1", "im3")]
    miou, pixel_accuracy, ious = _definition_miou(pairs, 4)
    assert report["metrics"]["miou"] == pytest.approx(miou, abs=1e-9)
    assert report["metrics"]["pixel_accuracy"] == pytest.approx(pixel_accuracy, abs=1e-9)
    assert len({int(v) for _, p in pairs for v in np.unique(p)}) > 1  # the model predicts more than one class
    python = evaluate(model, voc, progress=False)
    assert python["metrics"]["miou"] == pytest.approx(report["metrics"]["miou"], abs=1e-9)
    # a mask value the model has no class for ends the run naming the mask; nothing half-written
    with pytest.raises(ValueError, match=r"Mask '.*im0.png' holds values \[9\]"):
        evaluate(model, voc, class_map={0: 9, 1: 1}, report=work / "bad.json", predictions=work / "bad_masks",
                 progress=False)
    assert not (work / "bad.json").exists() and not (work / "bad_masks").exists()

    # Cityscapes' layout: label ids through the published table, ids without a train id ignored
    city = work / "cityscapes"
    (city / "leftImg8bit/val/aachen").mkdir(parents=True)
    (city / "gtFine/val/aachen").mkdir(parents=True)
    pairs = []
    for index in range(2):
        Image.fromarray(rng.integers(0, 255, (40, 80, 3), dtype="uint8")).save(
            city / f"leftImg8bit/val/aachen/a_{index}_leftImg8bit.png")
        label_ids = rng.choice([0, 4, 7, 8, 11, 12], (40, 80))  # road 0, sidewalk 1, building 2, wall 3
        Image.fromarray(label_ids.astype("uint8")).save(city / f"gtFine/val/aachen/a_{index}_gtFine_labelIds.png")
        train_ids = np.vectorize(lambda i: datasets.CITYSCAPES_TRAIN_IDS.get(int(i), 255))(label_ids)
        pairs.append(train_ids)
    found = evaluate(model, city, predictions=work / "city_masks", progress=False)
    predicted = [np.asarray(Image.open(work / "city_masks" / f"a_{i}_leftImg8bit.png")).astype("int64")
                 for i in range(2)]
    miou, _, _ = _definition_miou(list(zip(pairs, predicted)), 4)
    assert found["dataset"]["format"] == "cityscapes" and found["metrics"]["miou"] == pytest.approx(miou, abs=1e-9)


@pytest.mark.slow
def test_bad_input_exits_2_naming_it(classifier, work: Path) -> None:
    empty = work / "empty"
    empty.mkdir()
    cases = [
        (["missing_folder"], "missing_folder"),
        ([str(empty)], "has no class subfolders"),
    ]
    unknown = work / "unknown_class"
    shutil.copytree(classifier[1], unknown)
    (unknown / "hexagon").mkdir()
    Image.new("RGB", (9, 9)).save(unknown / "hexagon" / "a.png")
    cases.append(([str(unknown)], "['hexagon']"))
    voc = work / "bad_voc"
    for sub in ("JPEGImages", "SegmentationClass"):
        (voc / sub).mkdir(parents=True)
    Image.new("RGB", (30, 20)).save(voc / "JPEGImages" / "a.jpg")
    _palette_mask(np.zeros((20, 31)), voc / "SegmentationClass" / "a.png")
    cases.append(([str(voc)], "a.png' is 31x20 but its image"))
    for argv, expected in cases:
        result = run_script("evaluate", "--preset", "classifier", *argv, cwd=work, expect=2, timeout=120)
        assert result.stderr.startswith("mobilenetv3 evaluate: error: "), result.stderr
        assert expected in result.stderr, result.stderr
    result = run_script("evaluate", "--preset", "classifier", str(classifier[1]), "--runtime", "tensorrt",
                        cwd=work, expect=2)
    assert "invalid choice: 'tensorrt'" in result.stderr


# -- real weights ---------------------------------------------------------------------------------------

# The fixture photos' labels: the official TF-slim runtime's top-1 on each (PROVENANCE.md).
FIXTURE_LABELS = {"cat.bmp": "Egyptian cat", "bird.bmp": "chickadee", "dragonfly.bmp": "damselfly",
                  "grace_hopper.bmp": "military uniform"}


@pytest.mark.slow
def test_real_weights_evaluate_agrees_with_predict(shared_fixtures: Path, tmp_path: Path, capsys) -> None:
    from mobilenetv3.cli import main
    from mobilenetv3.core import decode

    wnid = {name: w for w, name in decode.imagenet_classes()}
    folder = tmp_path / "val"
    for image, label in FIXTURE_LABELS.items():
        (folder / wnid[label]).mkdir(parents=True)
        shutil.copy(shared_fixtures / "images" / image, folder / wnid[label] / image)
    weights = shared_fixtures / "tflite" / "v3-small_224_1.0_uint8.tflite"
    run_script("evaluate", "--preset", str(weights), str(folder), "--report", "r.json", "--predictions", "p.jsonl",
               "--no-progress", cwd=tmp_path)
    capsys.readouterr()  # `predict`: the same command's `main` in this process (one TensorFlow start less)
    assert main(["predict", "--preset", str(weights),
                 *(str(folder / wnid[label] / image) for image, label in FIXTURE_LABELS.items()), "--top", "1"]) == 0
    printed = capsys.readouterr().out
    predicted = {}
    for line in printed.splitlines():
        if line.endswith(":"):
            current = Path(line[:-1]).name
        elif line.startswith("  1. "):
            predicted[current] = line.split("(")[-1].split(")")[0]  # its WordNet id
    rows = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    evaluated = {Path(r["path"]).name: decode.imagenet_classes()[int(np.argmax(r["probabilities"])) - 1][0]
                 for r in rows}  # 1001 outputs, background first
    assert evaluated == predicted
    report = json.loads((tmp_path / "r.json").read_text())
    expected = 100 * np.mean([predicted[image] == wnid[label] for image, label in FIXTURE_LABELS.items()])
    assert report["metrics"]["top1"] == pytest.approx(expected) and expected >= 75


def test_runtime_choices_are_the_runtimes_table() -> None:
    from mobilenetv3.cli import build_parser
    from mobilenetv3.export.runtimes import RUNTIMES

    parser = build_parser()._subparsers._group_actions[0].choices["evaluate"]
    (action,) = [a for a in parser._actions if a.dest == "runtime"]
    assert list(action.choices) == list(RUNTIMES)


_NO_PYCOCOTOOLS = """
import sys


class NotInstalled:  # makes pycocotools unimportable, as if not installed
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "pycocotools":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)


sys.meta_path.insert(0, NotInstalled())
sys.argv = ["mobilenetv3"]
import mobilenetv3.cli as cli

assert cli.main(["evaluate", "--preset", "any_detector", sys.argv_data]) == 2
assert not [m for m in ("keras", "tensorflow", "jax", "torch") if m in sys.modules]
"""


def test_detection_without_pycocotools_names_the_extra_before_keras(tmp_path: Path) -> None:
    _write_coco(tmp_path / "coco", num_images=1, size=32)
    code = _NO_PYCOCOTOOLS.replace("sys.argv_data", repr(str(tmp_path / "coco")))
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(root)})
    assert result.returncode == 0, result.stderr
    assert 'needs the `pycocotools` package, which is not installed: pip install "mobilenetv3[dev]"' in result.stderr


@pytest.mark.heavy
def test_real_weights_give_one_top1_on_every_runtime(shared_fixtures: Path, tmp_path: Path) -> None:
    """The measured file is the shipped one: Keras, onnxruntime and LiteRT
    (each running its own export) give the same top-1 per photo."""
    from mobilenetv3.core import decode
    from mobilenetv3.presets import loader
    from mobilenetv3.serving.evaluate import evaluate

    wnid = {name: w for w, name in decode.imagenet_classes()}
    folder = tmp_path / "val"
    for image, label in FIXTURE_LABELS.items():
        (folder / wnid[label]).mkdir(parents=True)
        shutil.copy(shared_fixtures / "images" / image, folder / wnid[label] / image)
    model = loader.load_model(str(shared_fixtures / "tflite" / "v3-small_224_1.0_uint8.tflite"),
                              loader.model_class("classifier"))
    top1 = {}
    for runtime in ("keras", "onnxruntime", "litert"):
        evaluate(model, folder, runtime=runtime, predictions=tmp_path / f"{runtime}.jsonl", progress=False)
        rows = [json.loads(line) for line in (tmp_path / f"{runtime}.jsonl").read_text().splitlines()]
        top1[runtime] = [int(np.argmax(r["probabilities"])) for r in rows]
    assert top1["onnxruntime"] == top1["keras"] == top1["litert"]
