"""`mobilenetv3 export PRESET_OR_DIR OUT --format onnx|tflite|saved_model|openvino`."""

from __future__ import annotations

import argparse
import os
import tempfile
from typing import Any

FORMATS = ("onnx", "tflite", "saved_model", "openvino")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "export",
        help="export a preset or preset folder to ONNX, TFLite, SavedModel or OpenVINO IR",
        description="Export a model (registry preset name or preset folder) for deployment. "
        "--int8 quantizes to int8, calibrated on the images in --calibration (TFLite keeps hard-swish "
        "in float, where LiteRT runs it fastest, unless --full-integer).",
    )
    parser.add_argument("preset", metavar="PRESET_OR_DIR", help="a preset name or a preset folder")
    parser.add_argument("out", metavar="OUT", help="the file (onnx, tflite, openvino .xml) or folder (saved_model) to write")
    parser.add_argument("--format", required=True, choices=FORMATS, help="output format")
    parser.add_argument("--int8", action="store_true",
                        help="int8 post-training quantization (onnx, tflite, openvino)")
    parser.add_argument("--bf16", action="store_true", help="openvino: record bf16 inference in the IR")
    parser.add_argument("--full-integer", action="store_true",
                        help="tflite --int8: every op in int8, hard-swish too (for integer-only accelerators)")
    parser.add_argument("--calibration", metavar="DIR", help="folder of images to calibrate int8 on")
    parser.add_argument("--calibration-limit", type=int, default=200, metavar="N",
                        help="use at most N calibration images (default 200)")
    parser.add_argument("--input-size", type=int, default=None, metavar="N",
                        help="fix the input to N x N pixels (default: the model's; 224 for int8)")
    parser.add_argument("--channels-first", action="store_true",
                        help="onnx, openvino: take NCHW input (no transposes)")
    parser.set_defaults(func=run)


def load_model(preset: str) -> Any:
    """A preset folder or registry name as the right model class."""
    from mobilenetv3 import MobileNetV3Backbone, MobileNetV3ImageClassifier, preset_io
    from mobilenetv3 import presets as registry

    if os.path.isdir(preset):
        return preset_io.load_folder(preset, None)
    task = registry.get(preset).task
    if task == "classifier":
        return MobileNetV3ImageClassifier.from_preset(preset)
    if task == "segmenter":
        from mobilenetv3.tasks.segmenter import MobileNetV3ImageSegmenter

        return MobileNetV3ImageSegmenter.from_preset(preset)
    return MobileNetV3Backbone.from_preset(preset)


def _check_args(args: argparse.Namespace) -> None:
    if args.int8 and args.format == "saved_model":
        raise ValueError("--int8 applies to --format onnx or tflite, not saved_model.")
    if args.int8 and not args.calibration:
        raise ValueError("--int8 needs --calibration DIR, a folder of representative images.")
    if args.calibration and not args.int8:
        raise ValueError("--calibration is only used with --int8.")
    if args.full_integer and not (args.int8 and args.format == "tflite"):
        raise ValueError("--full-integer applies to --format tflite with --int8 only.")
    if args.channels_first and args.format not in ("onnx", "openvino"):
        raise ValueError("--channels-first applies to --format onnx or openvino only.")
    if args.bf16 and (args.format != "openvino" or args.int8):
        raise ValueError("--bf16 applies to --format openvino without --int8 only.")
    if args.input_size is not None and args.input_size < 32:
        raise ValueError(f"--input-size must be at least 32; got {args.input_size}.")
    if args.calibration_limit < 1:
        raise ValueError(f"--calibration-limit must be at least 1; got {args.calibration_limit}.")


def run(args: argparse.Namespace) -> int:
    from mobilenetv3 import export

    _check_args(args)
    size = args.input_size or (224 if args.int8 else None)
    calibration = None
    if args.int8:
        calibration = export.load_images(args.calibration, (size, size), args.calibration_limit)
    model = load_model(args.preset)
    if args.format == "openvino":
        _export_openvino(args, model, size, calibration)
    elif args.format == "saved_model":
        export.export_saved_model(model, args.out, input_size=(size, size) if size else None)
    elif args.format == "tflite":
        float_ops = () if args.full_integer else export.DEFAULT_FLOAT_OPS
        export.export_tflite(model, args.out, input_size=size, int8=args.int8, calibration=calibration,
                             float_ops=float_ops)
    elif args.int8:
        with tempfile.TemporaryDirectory(prefix="mobilenetv3_export_") as folder:
            float_path = os.path.join(folder, "float.onnx")
            export.export_onnx(model, float_path, channels_first=args.channels_first, input_size=size)
            export.quantize_onnx(float_path, args.out, calibration, channels_first=args.channels_first)
    else:
        export.export_onnx(model, args.out, channels_first=args.channels_first, input_size=size)
    kind = f"{args.format} int8" if args.int8 else f"{args.format} bf16" if args.bf16 else args.format
    print(f"wrote {kind} model to {args.out}")
    return 0


def _export_openvino(args: argparse.Namespace, model: Any, size: int | None, calibration: Any) -> None:
    """`--format openvino`: OpenVINO IR (xml + bin) in fp32, bf16 or int8."""
    from mobilenetv3.export import export_openvino

    precision = "int8" if args.int8 else "bf16" if args.bf16 else "fp32"
    export_openvino(model, args.out, precision=precision, calibration=calibration, input_size=size,
                    channels_first=args.channels_first)
