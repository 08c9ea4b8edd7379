"""`mobilenetv3 info [PRESET]`: a table of presets."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from mobilenetv3 import presets


def preset_rows(names: list[str]) -> list[dict[str, str]]:
    """One row per preset (backbone or task): the whole model's parameters
    (a task's head included), MACs at 224 and shapes of its backbone,
    weights source."""
    from mobilenetv3.nets.macs import count_macs
    from mobilenetv3.presets import loader

    rows = []
    for name in names:
        preset = presets.find(name)
        whole = loader.load_model(name, load_weights=False, input_shape=(224, 224, 3))
        model = getattr(whole, "backbone", whole)
        levels = model.feature_extractor().output
        rows.append(
            {
                "preset": name,
                "task": preset.task,
                "params": f"{whole.count_params():,}",
                "MACs@224": f"{count_macs(model) / 1e6:.1f}M",
                "output@224": "x".join(str(d) for d in model.output_shape[1:]),
                "pyramid (stride/channels)": " ".join(
                    f"{lvl}:/{224 // t.shape[1]}x{t.shape[3]}" for lvl, t in levels.items()
                ),
                "weights": preset.weights.description if preset.weights else "none (random init)",
            }
        )
    return rows


def format_table(rows: list[dict[str, str]]) -> str:
    """A Markdown table of `rows` (all rows share keys)."""
    keys = list(rows[0])
    widths = {k: max(len(k), *(len(r[k]) for r in rows)) for k in keys}
    line = lambda cells: "| " + " | ".join(c.ljust(widths[k]) for k, c in zip(keys, cells)) + " |"  # noqa: E731
    out = [line(keys), "|" + "|".join("-" * (widths[k] + 2) for k in keys) + "|"]
    out += [line([r[k] for k in keys]) for r in rows]
    return "\n".join(out)


def folder_rows(path: str) -> list[dict[str, str]]:
    """A preset folder as (field, value) rows: model, parameters and the
    origin of its weights (source, file, tag, timm preprocessing)."""
    from mobilenetv3.presets import folders

    folders.read_folder(path)  # a clear error when it is no preset folder
    metadata = folders.read_metadata(path)
    rows = {"folder": path}
    spec = json.loads((Path(path) / folders.CONFIG_FILE).read_text())
    rows["model"] = str(spec.get("registered_name", spec.get("class_name")))
    if "parameter_count" in metadata:
        rows["parameters"] = f"{metadata['parameter_count']:,}"
    for key, value in metadata.get("origin", {}).items():
        rows[f"origin.{key}"] = str(value)
    if "origin" not in metadata:
        rows["origin"] = "not recorded (not made by `mobilenetv3 convert`)"
    return [{"field": k, "value": v} for k, v in rows.items()]


def run(args: argparse.Namespace) -> int:
    if args.preset and Path(args.preset).is_dir():
        print(format_table(folder_rows(args.preset)))
        return 0
    if args.preset and args.preset not in presets.all_presets():
        if os.sep in args.preset or args.preset.startswith("."):
            raise ValueError(f"No such folder: {args.preset}.")
        presets.find(args.preset)  # the error lists every registered preset
    names = [args.preset] if args.preset else list(presets.all_presets())
    print(format_table(preset_rows(names)))
    if args.preset:
        preset = presets.find(args.preset)
        print(f"\n{preset.description}\nPreprocessing: {preset.preprocessing_notes}")
        if preset.weights:
            print(f"Weights: {preset.weights.url} (md5 {preset.weights.md5})")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "info", help="table of presets: backbones and tasks (parameters, MACs, shapes, weights)"
    )
    parser.add_argument("preset", nargs="?",
                        help="one preset name (backbone or task) or preset folder to describe (default: all)")
    parser.set_defaults(func=run)
