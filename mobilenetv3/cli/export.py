"""`mobilenetv3 export PRESET_OR_DIR OUT --format onnx|tflite|saved_model|openvino|web`."""

from __future__ import annotations

import argparse
import os
from typing import Any

from mobilenetv3.cli import add_weights_args, weights_kwargs
from mobilenetv3.export.formats import EXPORTERS

# The slow exports, for the progress line (TFLite's converter: 49 s for Small on a 2-core CPU, measured).
_DURATION = {"tflite": " (TensorFlow's converter takes about a minute)",
             "executorch": " (ExecuTorch's lowering takes 20-60 s)"}


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "export",
        help="export a preset or preset folder to ONNX, TFLite (MediaPipe-ready), SavedModel, OpenVINO IR, "
        "a browser page or an ExecuTorch program",
        description="Export a model (any preset name, preset folder, handle or weights file) for deployment. "
        "--int8 quantizes to int8, calibrated on the images in --calibration (TFLite keeps hard-swish "
        "in float, where LiteRT runs it fastest, unless --full-integer).",
    )
    parser.add_argument("preset", metavar="PRESET_OR_DIR",
                        help="a registered preset name (backbone or task), a preset folder, a kaggle:// or hf:// "
                        "handle, a weights file, or a .keras file holding a quantization-aware model (exported "
                        "as int8 with its own ranges: tflite, onnx or openvino, without --int8)")
    parser.add_argument("out", metavar="OUT", help="the file (onnx, tflite, openvino .xml, executorch .pte) or folder (saved_model, web) to write")
    parser.add_argument("--format", required=True, choices=list(EXPORTERS), help="output format")
    parser.add_argument("--int8", action="store_true",
                        help="int8 post-training quantization (onnx, tflite, openvino, executorch)")
    parser.add_argument("--bf16", action="store_true", help="openvino: record bf16 inference in the IR")
    parser.add_argument("--io-dtype", choices=["float32", "int8", "uint8"], default=None,
                        help="tflite, a quantization-aware model: the file's input and output type (default float32; "
                        "uint8 for MediaPipe's quantized input, which takes the raw pixels; int8 files get no "
                        "MediaPipe metadata)")
    parser.add_argument("--full-integer", action="store_true",
                        help="tflite --int8: every op in int8, hard-swish too (for integer-only accelerators)")
    parser.add_argument("--calibration", metavar="DIR", help="folder of images to calibrate int8 on")
    parser.add_argument("--calibration-limit", type=int, default=200, metavar="N",
                        help="use at most N calibration images (default 200)")
    parser.add_argument("--input-size", type=int, default=None, metavar="N",
                        help="fix the input to N x N pixels (default: the model's fixed size; for a model of "
                        "any input size, the image size its preset records, except segmenters, which stay "
                        "resizable unless --int8)")
    parser.add_argument("--channels-first", action="store_true",
                        help="onnx, openvino, executorch: take NCHW input (no transposes)")
    parser.add_argument("--postprocess", action="store_true",
                        help="detector: end the graph in box decoding and per-class NMS; onnx: outputs boxes, "
                        "confidence, labels, num_detections; tflite: LiteRT's TFLite_Detection_PostProcess op "
                        "(locations, classes, scores, num_detections; MediaPipe ObjectDetector-ready); default: the "
                        "raw network plus OUT.anchors.npy")
    parser.add_argument("--web-runtime", metavar="DIR",
                        help="web: the installed onnxruntime-web package to copy (default: $MOBILENETV3_WEB_RUNTIME, "
                        "else ~/.cache/mobilenetv3/web, else npm ci of the pinned version into it)")
    add_weights_args(parser)
    parser.set_defaults(func=run)


def _check_args(args: argparse.Namespace) -> None:
    from mobilenetv3.export.formats import formats_with

    if args.int8 and not EXPORTERS[args.format].int8:
        raise ValueError(f"--int8 applies to --format {' or '.join(formats_with('int8'))}, not {args.format}.")
    if args.int8 and not args.calibration:
        raise ValueError("--int8 needs --calibration DIR, a folder of representative images.")
    if args.calibration and not args.int8:
        raise ValueError("--calibration is only used with --int8.")
    if args.full_integer and not (args.int8 and EXPORTERS[args.format].full_integer):
        raise ValueError(f"--full-integer applies to --format {' or '.join(formats_with('full_integer'))} "
                         "with --int8 only.")
    if args.channels_first and not EXPORTERS[args.format].channels_first:
        raise ValueError(f"--channels-first applies to --format {' or '.join(formats_with('channels_first'))} only.")
    if args.bf16 and not (EXPORTERS[args.format].bf16 and not args.int8):
        raise ValueError(f"--bf16 applies to --format {' or '.join(formats_with('bf16'))} without --int8 only.")
    if args.postprocess and not EXPORTERS[args.format].postprocess:
        raise ValueError(f"--postprocess applies to --format {' or '.join(formats_with('postprocess'))} only.")
    if args.web_runtime is not None and args.format != "web":
        raise ValueError("--web-runtime applies to --format web only.")
    if args.io_dtype is not None and not EXPORTERS[args.format].io_dtype:
        raise ValueError(f"--io-dtype applies to --format {' or '.join(formats_with('io_dtype'))} only "
                         "(of a quantization-aware model).")
    if args.web_runtime is not None and not os.path.isdir(args.web_runtime):
        raise ValueError(f"--web-runtime {args.web_runtime!r} is not a folder (an installed onnxruntime-web).")
    if args.input_size is not None and args.input_size < 32:
        raise ValueError(f"--input-size must be at least 32; got {args.input_size}.")
    if args.calibration_limit < 1:
        raise ValueError(f"--calibration-limit must be at least 1; got {args.calibration_limit}.")
    if args.calibration is not None and not os.path.isdir(args.calibration):
        raise ValueError(f"--calibration {args.calibration!r} is not a folder of images.")


def _export_size(model: Any, args: argparse.Namespace, preset_size: int) -> tuple[int | None, str]:
    """The input size to export at and how it was chosen, for the progress line.

    A model of any input size (backbone `input_shape=(None, None, 3)`) is
    exported at the image size its preset records (`preprocessor.json`), so
    that the file's input is `[1, S, S, 3]` and not `[1, 1, 1, 3]` until
    resized; a segmenter stays resizable (it maps any image to a mask of its
    size) unless `--int8` needs a calibration size."""
    if args.input_size is not None:
        return args.input_size, f"input {args.input_size}x{args.input_size} (--input-size)"
    height, width = tuple(model.inputs[0].shape[1:3])
    if height is not None and width is not None:
        return (preset_size if args.int8 else None), f"input {height}x{width} (the model's)"
    if getattr(model, "kind", None) == "segmenter" and not args.int8 and args.format != "web":
        return None, "input resizable (any height and width; --input-size N fixes it)"
    return preset_size, f"input {preset_size}x{preset_size} (the preset's image size; --input-size N to change)"


def _load(args: argparse.Namespace, loader: Any) -> Any:
    """The model to export: a `.keras` file holding a quantization-aware twin
    (`QATModel`), or whatever the loader reads."""
    if str(args.preset).endswith(".keras") and os.path.isfile(args.preset):
        import keras

        from mobilenetv3.quantization import QATModel

        loader.import_model_classes()  # the classes a twin's float config names (a classifier's, ...)
        model = keras.saving.load_model(args.preset, compile=False)
        if not isinstance(model, QATModel):
            raise ValueError(f"{args.preset} holds a {type(model).__name__}; a .keras file exports when it holds a "
                             "QATModel (mobilenetv3.quantization.quantize_aware). Export a float model from its "
                             "preset folder or weights file.")
        return model
    return loader.load_model(args.preset, **weights_kwargs(args))


def run(args: argparse.Namespace) -> int:
    from mobilenetv3 import export
    from mobilenetv3.presets import loader
    from mobilenetv3.presets.preprocessing import preprocessing_for_model

    _check_args(args)
    model = _load(args, loader)
    policy = preprocessing_for_model(model)
    size, where = _export_size(model, args, policy.image_size)
    calibration = None
    if args.int8:  # prepared as the preset prepares its images
        calibration = export.load_calibration_images(args.calibration, (size, size), args.calibration_limit, policy)
    print(f"exporting to {args.format}{' int8' if args.int8 else ''}, {where}{_DURATION.get(args.format, '')}...",
          flush=True)
    export.export_model(model, args.out, args.format, input_size=size, int8=args.int8, calibration=calibration,
                        channels_first=args.channels_first, full_integer=args.full_integer, bf16=args.bf16,
                        postprocess=args.postprocess, web_runtime=args.web_runtime,
                        io_dtype=args.io_dtype or "float32")
    qat = type(model).__name__ == "QATModel"
    kind = f"{args.format} int8" if args.int8 or qat else f"{args.format} bf16" if args.bf16 else args.format
    print(f"wrote {kind} model to {args.out}")
    if args.format == "web":
        print(f"serve it (file:// does not run WebAssembly): cd {args.out} && python serve.py")
    return 0

