"""`mobilenetv3 evaluate`: measure a classifier, detector or segmenter on a
labelled dataset (ImageNet-style folder or file list, COCO, VOC or
Cityscapes), on Keras or on one of its exported runtimes.

Example:

```
mobilenetv3 evaluate --preset mobilenet_v3_large_imagenet_classifier imagenet/val --runtime onnxruntime \
    --report large.json
```
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from mobilenetv3.cli import add_weights_args, weights_kwargs

RUNTIME_NAMES = ("keras", "onnxruntime", "litert", "openvino")
TASK_NAMES = ("classifier", "detector", "segmenter")
# Rows of the per-class table printed (the report holds every class).
PRINTED_CLASSES = 10


def register(subparsers: Any) -> None:
    """Add the `evaluate` subcommand."""
    parser = subparsers.add_parser(
        "evaluate",
        help="measure a model on a labelled dataset (top-1/top-5, COCO AP, mIoU)",
        description=(
            "Evaluate a classifier (top-1 / top-5 / per-class accuracy on an ImageNet-style folder "
            "or a 'path label' list), a detector (the 12 COCO numbers by pycocotools on a COCO "
            "dataset) or a segmenter (mIoU / per-class IoU / pixel accuracy on VOC- or "
            "Cityscapes-style masks), with the preset's own preprocessing, on Keras or on the "
            "exported file a runtime runs. Unreadable images are counted and left out."
        ),
    )
    parser.add_argument("--preset", required=True,
                        help="preset name, preset folder, weights file or handle of the model to evaluate")
    parser.add_argument("data", metavar="DATA",
                        help="class folder, 'path label' list file, COCO image folder (with annotations.json "
                             "or --annotations), or VOC / Cityscapes root folder")
    parser.add_argument("--task", choices=TASK_NAMES, default=None, help="the task (default: told by DATA)")
    parser.add_argument("--runtime", choices=RUNTIME_NAMES, default="keras",
                        help="run the model on Keras (default) or on its export for this runtime")
    parser.add_argument("--annotations", metavar="JSON", default=None,
                        help="COCO instances JSON of a detection dataset (default DATA/annotations.json)")
    parser.add_argument("--split", default="val", help="VOC / Cityscapes split (default val)")
    parser.add_argument("--ignore-index", type=int, default=255,
                        help="segmentation mask value left out of the metrics (default 255)")
    parser.add_argument("--class-map", metavar="JSON", default=None,
                        help="a JSON object (inline or a file): classification {folder or label: class name or "
                             "index}; segmentation {mask value: class}, unlisted values ignored")
    parser.add_argument("--report", metavar="OUT.json", default=None, help="write the full JSON report here")
    parser.add_argument("--predictions", metavar="PATH", default=None,
                        help="write the raw predictions here: classifier JSON lines, detector COCO results JSON, "
                             "segmenter a folder of PNG masks")
    parser.add_argument("--batch-size", type=int, default=32, help="images per model call (default 32)")
    parser.add_argument("--workers", type=int, default=None, help="decoding threads (default: one per core, <= 8)")
    parser.add_argument("--limit", type=int, default=None, help="evaluate only the first N images")
    parser.add_argument("--no-progress", action="store_true", help="no progress line on stderr")
    add_weights_args(parser)
    parser.set_defaults(func=run, before_backend=check_arguments)


def check_arguments(args: argparse.Namespace) -> None:
    """The cheap checks, before the backend starts: numbers, paths, the
    dataset's layout and labels files (no image is decoded)."""
    from mobilenetv3.serving import datasets

    for name in ("batch_size", "workers", "limit"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be a positive integer; got {value}.")
    if not 0 <= args.ignore_index <= 255:
        raise ValueError(f"--ignore-index must be a mask value in 0..255; got {args.ignore_index}.")
    args.class_map_dict = _class_map(args.class_map)
    weights_kwargs(args)
    for flag, path in (("--report", args.report), ("--predictions", args.predictions)):
        if path is not None and Path(path).resolve() == Path(args.data).resolve():
            raise ValueError(f"{flag} {path!r} is the dataset itself.")
    dataset = datasets.open_dataset(args.data, args.task, annotations=args.annotations, split=args.split)
    dataset.items = dataset.items[:args.limit]
    if dataset.task == "segmenter":
        datasets.check_mask_sizes(dataset)
    if dataset.task == "detector":
        from mobilenetv3.serving.metrics import check_pycocotools

        check_pycocotools()
    if dataset.task == "classifier":
        classes = _folder_classes(args.preset)
        if classes is not None:
            datasets.classification_labels(dataset, *classes, args.class_map_dict)
    return None


def _folder_classes(preset: str) -> tuple[int, list[str] | None] | None:
    """A classifier preset folder's class count and names, read from its
    JSON files without Keras (None for anything else: the loader decides)."""
    folder = Path(preset)
    try:
        config = json.loads((folder / "config.json").read_text())
        num_classes = int(config["config"]["num_classes"])
        if "Classifier" not in config.get("class_name", ""):
            return None
        labels = folder / "labels.txt"
        names = [line for line in labels.read_text().splitlines() if line] if labels.is_file() else None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return num_classes, names if names is not None and len(names) == num_classes else None


def _class_map(value: str | None) -> dict | None:
    if value is None:
        return None
    text = value
    if not value.lstrip().startswith("{"):
        if not Path(value).is_file():
            raise ValueError(f"--class-map {value!r} is neither a JSON object nor a file.")
        text = Path(value).read_text()
    try:
        mapping = json.loads(text)
    except ValueError as error:
        raise ValueError(f"--class-map {value!r} is not valid JSON ({error}).") from None
    if not isinstance(mapping, dict):
        raise ValueError(f"--class-map must be a JSON object; got {type(mapping).__name__}.")
    return mapping


def run(args: argparse.Namespace) -> int:
    """Evaluate, print a short table, write the report."""
    from mobilenetv3.serving.evaluate import evaluate

    result = evaluate(
        args.preset, args.data, task=args.task, runtime=args.runtime, batch_size=args.batch_size,
        workers=args.workers, report=args.report, predictions=args.predictions, annotations=args.annotations,
        split=args.split, ignore_index=args.ignore_index, class_map=args.class_map_dict, limit=args.limit,
        load_kwargs=weights_kwargs(args), progress=not args.no_progress,
    )
    print(format_table(result))
    if args.report is not None:
        print(f"report: {args.report}")
    return 0


def format_table(result: dict) -> str:
    """The report's main numbers as a short text table."""
    data, metrics = result["dataset"], result["metrics"]
    lines = [f"{result['task']} on {data['source']} ({data['format']}), runtime {result['runtime']}: "
             f"{data['evaluated']} images evaluated, {data['unreadable']} unreadable, "
             f"{result['images_per_second']} images/s"]
    if result["task"] == "classifier":
        for key in [k for k in metrics if k.startswith("top")]:
            lines.append(f"  {key:<22} {metrics[key]:8.3f} %")
        worst = sorted(metrics["per_class"].items(), key=lambda item: item[1]["accuracy"])[:PRINTED_CLASSES]
        if len(metrics["per_class"]) > 1:
            lines.append(f"  lowest per-class top-1 ({len(worst)} of {len(metrics['per_class'])}):")
            lines += [f"    {name:<30} {v['accuracy']:7.2f} %  ({v['images']} images)" for name, v in worst]
    elif result["task"] == "detector":
        lines += [f"  {key:<22} {value:8.4f}" for key, value in metrics.items()]
    else:
        for key in ("miou", "pixel_accuracy", "mean_class_accuracy"):
            lines.append(f"  {key:<22} {metrics[key]:8.3f} %")
        ious = [(n, v) for n, v in metrics["per_class_iou"].items() if v is not None][:PRINTED_CLASSES * 2]
        lines += [f"    {name:<30} {value:7.2f} %" for name, value in ious]
    return "\n".join(lines)
