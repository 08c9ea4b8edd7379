"""MediaPipe Tasks metadata in a LiteRT (`.tflite`) file.

MediaPipe's `ImageClassifier`, `ImageSegmenter` and `ObjectDetector` read
from the file itself how to feed the model (the input normalization, the
color space) and how to name its outputs (the label file packed inside).
`add_metadata` writes that metadata with MediaPipe's own metadata writers
(`mediapipe.tasks.python.metadata.metadata_writers`: `image_classifier`,
`image_segmenter`, `object_detector`); `model_metadata` says what a task
model needs; `with_model_metadata` does both.

Route taken for the writers: mediapipe 0.10.30 and later (every version
that installs beside numpy 2 and our protobuf: checked 0.10.30, 0.10.35,
1.0.0, 1.1.1, 1.2.2, 1.2.3) ship the writers but not the one compiled module
their `metadata.py` imports, `mediapipe.tasks.cc.metadata.python.
_pywrap_metadata_version` (only 0.10.21, pinned to numpy<2 and
protobuf<5, has it; `tflite-support` 0.4.4 pins protobuf<4). That module
has one function, `GetMinimumMetadataParserVersion`: the lowest metadata
parser version that understands every field a metadata buffer uses. When
the module is missing, `_parser_version` computes the same thing in
Python (from MediaPipe's `metadata_version.cc`: which schema members each
version added) and is handed to MediaPipe's `metadata.py` under that
module's name while it is imported (`_import_writers`); everything else is
MediaPipe's code. Where the compiled module is present, it is used. The
port gives what the compiled module of mediapipe 0.10.21 gives for every
schema member added after 1.0.0 and for the files we write (checked;
`tests/test_mediapipe.py` keeps the per-member versions).

The metadata does not change the model: LiteRT runs the file as before and
ignores the metadata.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import sys
import types
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from mobilenetv3.core.utils import import_optional

TASKS = ("classifier", "segmenter", "detector")
SEGMENTER_ACTIVATIONS = ("none", "softmax", "sigmoid")
_VERSION_MODULE = "mediapipe.tasks.cc.metadata.python._pywrap_metadata_version"


def add_metadata(
    tflite_bytes: bytes,
    *,
    task: str,
    labels: Sequence[str] | None = None,
    mean: Sequence[float] | None = (0.0,),
    std: Sequence[float] | None = (1.0,),
    activation: str = "none",
) -> bytes:
    """The LiteRT flatbuffer `tflite_bytes` with MediaPipe Tasks metadata:
    input normalization, RGB color space, and `labels` packed as the
    output's label file (`labels.txt`).

    MediaPipe feeds a float input `(pixel - mean) / std`, `pixel` being the
    0..255 RGB value, after resizing the image to the input tensor's size
    (which must therefore be static). Our presets take raw 0..255 pixels and
    rescale inside the model: `mean=(0,)`, `std=(1,)` (the defaults). One
    value is used for every channel: MediaPipe applies channel 0's mean and
    std to all channels, so per-channel values must be equal. An int8 file
    with float input and output (what `export_tflite(int8=True)` writes)
    takes the same metadata. A uint8 input (a quantization-aware twin's
    export with `io_dtype="uint8"`) is fed the raw pixels, unnormalized:
    pass `mean=None, std=None` (no NormalizationOptions); MediaPipe takes
    no int8 input.

    What each `task` needs:

    - "classifier" (`vision.ImageClassifier`): one input `(1, H, W, 3)`,
      one output `(1, num_classes)` of scores. MediaPipe reports the output
      values as they are (no softmax): probabilities for a model built with
      `activation="softmax"`, logits otherwise (same ranking). `labels[i]`
      names output column i.
    - "segmenter" (`vision.ImageSegmenter`): one input `(1, H, W, 3)`, one
      output `(1, H', W', num_classes)`; the category mask is the per-pixel
      argmax; `activation` ("none", "softmax", "sigmoid") is what MediaPipe
      applies to the output for its confidence masks: "softmax" for a
      logits model, "none" for one that ends in softmax. `labels[i]` names
      class i.
    - "detector" (`vision.ObjectDetector`): a model ending in LiteRT's
      `TFLite_Detection_PostProcess`, its four outputs in this order:
      locations `(1, N, 4)` (ymin, xmin, ymax, xmax, normalized), classes
      `(1, N)`, scores `(1, N)`, count `(1,)`. `labels[i]` names the class
      index i of the `classes` output, which counts from the first class
      after the background (the op drops class 0): for a torchvision-style
      detector whose class 0 is the background, pass `class_names[1:]`.
      `activation` does not apply.

    Args:
        tflite_bytes: the `.tflite` flatbuffer (without metadata).
        task: "classifier", "segmenter" or "detector".
        labels: class names in output order (none: MediaPipe reports class
            indices only; required for "detector"). A name must be a
            non-empty line (no line break).
        mean: the normalization mean, one value or three equal ones, on the
            0..255 pixel scale; None (with `std=None`) for a uint8 input.
        std: the normalization std, likewise (positive).
        activation: "segmenter" only, see above.

    Returns:
        The flatbuffer with the metadata (a zip of the label file appended,
        as MediaPipe's writers pack associated files).

    Example:

    ```python
    # not run: needs a classifier's .tflite
    from mobilenetv3.export.litert_metadata import add_metadata
    data = open("classifier.tflite", "rb").read()
    with open("classifier_mediapipe.tflite", "wb") as f:
        f.write(add_metadata(data, task="classifier", labels=["cat", "dog", "bird"]))
    ```
    """
    task = _check_choice("task", task, TASKS)
    activation = _check_choice("activation", activation, SEGMENTER_ACTIVATIONS)
    if activation != "none" and task != "segmenter":
        raise ValueError(f"`activation` applies to task='segmenter' only; got {activation!r} for {task!r}.")
    mean, std = ([], []) if mean is None and std is None else _check_normalization(mean, std)
    labels = _check_labels(labels, required=task == "detector")
    if not isinstance(tflite_bytes, (bytes, bytearray)) or bytes(tflite_bytes[4:8]) != b"TFL3":
        raise ValueError("`tflite_bytes` must be a LiteRT flatbuffer (file identifier 'TFL3').")
    writers = _import_writers()
    buffer = bytearray(tflite_bytes)
    if writers.metadata.get_metadata_buffer(buffer) is not None:
        raise ValueError("`tflite_bytes` already has metadata; add it to the file without (as converted).")
    label_item = writers.metadata_writer.Labels().add(list(labels)) if labels else None
    if task == "classifier":
        writer = writers.image_classifier.MetadataWriter.create(buffer, mean, std, label_item)
    elif task == "segmenter":
        segmenter = writers.image_segmenter
        writer = segmenter.MetadataWriter.create(buffer, mean, std, label_item,
                                                 segmenter.Activation[activation.upper()])
    else:
        writer = writers.object_detector.MetadataWriter.create_for_models_with_nms(buffer, mean, std, label_item)
    try:
        model_with_metadata, _ = writer.populate()
    finally:
        # The writer's temporary folder (of the label file) goes now, and the
        # writer with it: importing mediapipe keeps the importing stack's
        # frames alive, this one included, and the writer's __del__ fails
        # if it first runs at interpreter exit.
        writer.writer._temp_folder.cleanup()
        del writer
    return bytes(model_with_metadata)


def model_metadata(model: Any) -> dict[str, Any] | None:
    """The `add_metadata` keywords for a task model's exported file, or None
    for a model MediaPipe Tasks has no task for (a bare backbone).

    - `task`: the model's `kind` (a quantization-aware twin's: its float
      model's, e.g. "classifier").
    - `labels`: the model's `class_names` (a preset folder's `labels.txt`)
      when it has one per class; else, for a 1000-class classifier, the
      ImageNet names (1001: "background" first, TF-slim's layout), as
      `mobilenetv3 predict` prints them; else None (MediaPipe then reports
      class indices). A detector's labels drop class 0, the background (see
      `add_metadata`); without names they are its class ids "1", "2", ...
    - `mean`, `std`: what makes MediaPipe feed what the model takes: raw
      0..255 pixels (0 and 1) for a backbone with `include_rescaling=True`
      (every preset), else its `preprocessing` mode's mean and std times 255.
    - `activation` (segmenter): "softmax" for a logits model, "none" for one
      ending in softmax or sigmoid.

    Example:

    ```python
    # not run: needs a built classifier
    model_metadata(classifier)  # {'task': 'classifier', 'labels': [...], 'mean': [0.0], 'std': [1.0]}
    ```
    """
    from mobilenetv3.core import decode
    from mobilenetv3.core.normalization import PREPROCESSING_MEAN, PREPROCESSING_STD
    from mobilenetv3.presets.loader import task_kind

    task = task_kind(model)
    if task not in TASKS:
        return None
    backbone = getattr(model, "backbone", model)  # a twin records its float backbone's scaling
    if backbone.include_rescaling:
        mean, std = [0.0], [1.0]
    else:
        mode = backbone.preprocessing
        mean = [255.0 * m for m in PREPROCESSING_MEAN[mode]]
        std = [255.0 * s for s in PREPROCESSING_STD[mode]]
    num_classes = model.num_classes
    labels = getattr(model, "class_names", None)
    if labels is None or len(labels) != num_classes:
        labels = None
        if num_classes in (decode.NUM_CLASSES, decode.NUM_CLASSES + 1) and task == "classifier":
            labels = [name for _, name in decode.imagenet_classes()]
            labels = [decode.BACKGROUND[1]] * (num_classes - decode.NUM_CLASSES) + labels
    values: dict[str, Any] = {"task": task, "labels": labels, "mean": mean, "std": std}
    if task == "detector":
        values["labels"] = list(labels[1:]) if labels else [str(i) for i in range(1, num_classes)]
    if task == "segmenter":
        values["activation"] = "softmax" if model.outputs_logits() else "none"
    return values


def with_model_metadata(tflite_bytes: bytes, model: Any) -> bytes:
    """`tflite_bytes` (the export of `model`) with the MediaPipe metadata
    `model_metadata(model)` gives; unchanged for a bare backbone.

    A uint8 input (a twin's `io_dtype="uint8"` export) gets no
    normalization: MediaPipe feeds it the raw pixels, so the input's scale
    and zero point must map a pixel to what the model takes (scale 1, zero
    point 0 for raw 0..255 pixels: a twin whose input range is 0..255).

    Raises ValueError when MediaPipe cannot run the file as it is: an input
    of no fixed size (export it with `input_size`), per-channel
    normalization MediaPipe does not apply (a backbone with
    `include_rescaling=False` and `preprocessing="imagenet"`), an int8
    input, or a uint8 input on another grid.

    Example:

    ```python
    # not run: needs a built classifier
    from mobilenetv3.export.tflite_export import convert_tflite
    data = with_model_metadata(convert_tflite(classifier, input_size=224), classifier)
    ```
    """
    values = model_metadata(model)
    if values is None:
        return tflite_bytes
    height, width = _input_size(tflite_bytes)
    if height is None or width is None:
        raise ValueError(
            f"MediaPipe metadata needs a fixed input size; this {type(model).__name__} was exported with a "
            "resizable input. Pass `input_size` (e.g. the preset's image size)."
        )
    if _input_type(tflite_bytes)[0] != "FLOAT32":
        _check_quantized_input(tflite_bytes, values["mean"], values["std"])
        values = {**values, "mean": None, "std": None}
    return add_metadata(tflite_bytes, **values)


def _check_quantized_input(tflite_bytes: bytes, mean: list[float], std: list[float]) -> None:
    """A quantized input MediaPipe can feed: uint8, on the grid whose
    integer values are the pixels the model takes (`(pixel - mean) / std`)."""
    dtype, scale, zero_point = _input_type(tflite_bytes)
    if dtype != "UINT8":
        raise ValueError(f"MediaPipe feeds uint8 or float32 images; this file's input is {dtype.lower()}. Export it "
                         "with `io_dtype='uint8'` or 'float32' for MediaPipe.")
    if len(set(mean)) > 1 or len(set(std)) > 1 or abs(scale * std[0] - 1) > 1e-3 or abs(zero_point - mean[0]) > 0.5:
        raise ValueError(f"MediaPipe feeds a uint8 input the raw pixels; this file's input has scale {scale:g} and "
                         f"zero point {zero_point}, where the model's pixels need scale {1 / std[0]:g} and zero point "
                         f"{mean[0]:g} (a twin whose input range is not 0..255). Export with `io_dtype='float32'`.")


def write_tflite(
    model: Any,
    path: str | os.PathLike,
    *,
    input_size: int | tuple[int, int] | None = None,
    int8: bool = False,
    calibration: Any = None,
    float_ops: Any = None,
    io_dtype: str = "float32",
) -> Path:
    """`export_tflite` with MediaPipe Tasks metadata: what
    `mobilenetv3 export --format tflite` and `export_model(..., "tflite")`
    write.

    A classifier or segmenter gets the metadata of `model_metadata` (so
    MediaPipe's `ImageClassifier` / `ImageSegmenter` load the file with
    default options); a bare backbone and a detector's raw network get
    none (the detector's end-to-end file carries its own). A segmenter
    exported with a resizable input gets none either (MediaPipe needs a
    fixed size: pass `input_size`), nor does any file when `mediapipe` is
    not installed (`pip install "mobilenetv3[mediapipe]"`); both warn. A
    quantization-aware twin of a classifier or segmenter gets its float
    model's metadata; with `io_dtype="int8"` none (MediaPipe takes no int8
    input; warns), with "uint8" no normalization (see `with_model_metadata`).

    Example:

    ```python
    # not run: needs a classifier
    write_tflite(classifier, "classifier.tflite", input_size=224)
    ```
    """
    import warnings

    from mobilenetv3.core.utils import atomic_path
    from mobilenetv3.export.tflite_export import DEFAULT_FLOAT_OPS, convert_tflite
    from mobilenetv3.presets.loader import task_kind

    flatbuffer = convert_tflite(model, input_size, int8, calibration,
                                DEFAULT_FLOAT_OPS if float_ops is None else float_ops, io_dtype)
    if task_kind(model) in ("classifier", "segmenter"):
        if not has_fixed_input_size(flatbuffer):
            warnings.warn(f"{path}: written without MediaPipe metadata: its input is resizable, and MediaPipe "
                          "needs a fixed size; pass `input_size` (`--input-size N`) for a MediaPipe-ready file.", stacklevel=2)
        elif importlib.util.find_spec("mediapipe") is None:
            warnings.warn(f"{path}: written without MediaPipe metadata, which needs the `mediapipe` package: "
                          'pip install "mobilenetv3[mediapipe]"', stacklevel=2)
        else:
            try:
                flatbuffer = with_model_metadata(flatbuffer, model)
            except ImportError as error:  # a mediapipe whose writers do not import
                warnings.warn(f"{path}: written without MediaPipe metadata: the installed mediapipe's metadata "
                              f"writers do not import ({error}).", stacklevel=2)
            except ValueError as error:
                if io_dtype == "float32":
                    raise
                warnings.warn(f"{path}: written without MediaPipe metadata: {error}", stacklevel=2)
    with atomic_path(path) as staging:
        staging.write_bytes(flatbuffer)
    return Path(path)


def open_mediapipe(path: str | os.PathLike, task: str = "classifier") -> Callable[[Any], Any]:
    """`predict(image)` of a `.tflite` file with MediaPipe metadata through
    MediaPipe Tasks itself, end to end (its resize, normalization,
    inference and post-processing, on the CPU), for one uint8 RGB image
    `(height, width, 3)`: a classifier's scores in class order `(num_classes,)`,
    a segmenter's category mask `(height, width)` (uint8), a detector's
    MediaPipe `DetectionResult`. Close it with `predict.close()`.

    For timing MediaPipe against the bare file: `open_litert` runs the
    same `.tflite` on LiteRT alone (float input already resized and in the
    model's range).

    Example:

    ```python
    # not run: needs an exported classifier
    import time
    predict = open_mediapipe("classifier.tflite")
    image = np.zeros((224, 224, 3), np.uint8)
    predict(image)  # warm-up
    start = time.perf_counter(); predict(image); print(time.perf_counter() - start)
    predict.close()
    ```
    """
    import numpy as np

    task = _check_choice("task", task, TASKS)
    mp = import_optional("mediapipe", "mediapipe", "Running a file in MediaPipe Tasks")
    from mediapipe.tasks.python import vision
    from mediapipe.tasks.python.core.base_options import BaseOptions

    base = BaseOptions(model_asset_path=str(path))
    if task == "classifier":
        runner = vision.ImageClassifier.create_from_options(vision.ImageClassifierOptions(base_options=base))
    elif task == "segmenter":
        runner = vision.ImageSegmenter.create_from_options(vision.ImageSegmenterOptions(
            base_options=base, output_category_mask=True, output_confidence_masks=False))
    else:
        runner = vision.ObjectDetector.create_from_options(vision.ObjectDetectorOptions(base_options=base))

    def predict(image: Any) -> Any:
        pixels = np.asarray(image)
        if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[-1] != 3:
            raise ValueError(f"`image` must be uint8 RGB (height, width, 3); got {pixels.dtype} {pixels.shape}.")
        frame = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(pixels))
        if task == "classifier":
            categories = runner.classify(frame).classifications[0].categories
            scores = np.zeros(len(categories), np.float32)
            scores[[c.index for c in categories]] = [c.score for c in categories]
            return scores
        if task == "segmenter":
            mask = runner.segment(frame).category_mask.numpy_view()
            return np.array(mask).reshape(mask.shape[:2])
        return runner.detect(frame)

    predict.close = runner.close  # type: ignore[attr-defined]
    return predict


def has_fixed_input_size(tflite_bytes: bytes) -> bool:
    """Whether the flatbuffer's first input has a fixed height and width."""
    return None not in _input_size(tflite_bytes)


def _input_tensor(tflite_bytes: bytes) -> Any:
    from tensorflow.lite.python import schema_py_generated as schema

    subgraph = schema.Model.GetRootAsModel(bytearray(tflite_bytes), 0).Subgraphs(0)
    return subgraph.Tensors(subgraph.Inputs(0))


def _input_type(tflite_bytes: bytes) -> tuple[str, float, int]:
    """The first input's type ("FLOAT32", "UINT8", "INT8", ...), scale and zero point (1 and 0 when float)."""
    from tensorflow.lite.python import schema_py_generated as schema

    tensor = _input_tensor(tflite_bytes)
    names = {value: name for name, value in vars(schema.TensorType).items() if not name.startswith("_")}
    quantization = tensor.Quantization()
    if quantization is None or not quantization.ScaleLength():
        return names[tensor.Type()], 1.0, 0
    return names[tensor.Type()], float(quantization.Scale(0)), int(quantization.ZeroPoint(0))


def _input_size(tflite_bytes: bytes) -> tuple[int | None, int | None]:
    tensor = _input_tensor(tflite_bytes)
    shape = [int(v) for v in tensor.ShapeAsNumpy()]
    signature = [int(v) for v in tensor.ShapeSignatureAsNumpy()] if tensor.ShapeSignatureLength() else shape
    return tuple(None if s < 0 else v for v, s in zip(shape[1:3], signature[1:3]))  # type: ignore[return-value]


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {list(choices)}; got {value!r}.")
    return value


def _check_normalization(mean: Any, std: Any) -> tuple[list[float], list[float]]:
    values = []
    for name, given in (("mean", mean), ("std", std)):
        try:
            numbers = [float(v) for v in (given if isinstance(given, (list, tuple)) else [given])]
        except (TypeError, ValueError):
            numbers = []
        if len(numbers) not in (1, 3) or (name == "std" and min(numbers) <= 0):
            raise ValueError(f"`{name}` must be one or three numbers{' > 0' if name == 'std' else ''}; "
                             f"got {given!r}.")
        if max(numbers) != min(numbers):
            raise ValueError(
                f"`{name}` must be the same for every channel: MediaPipe normalizes all channels with "
                f"channel 0's value; got {given!r}. Build the backbone with `include_rescaling=True` "
                "(raw 0..255 input, mean 0 and std 1)."
            )
        values.append(numbers[:1])
    return values[0], values[1]


def _check_labels(labels: Any, required: bool) -> list[str] | None:
    if labels is None and not required:
        return None
    if isinstance(labels, str) or not isinstance(labels, Sequence) or not labels:
        raise ValueError(f"`labels` must be a non-empty list of class names; got {labels!r}.")
    bad = [name for name in labels if not isinstance(name, str) or not name.strip() or "\n" in name or "\r" in name]
    if bad:
        raise ValueError(f"`labels` must be non-empty one-line strings (they become lines of labels.txt); "
                         f"got {bad[:3]!r}.")
    return list(labels)


class _Writers(types.SimpleNamespace):
    image_classifier: Any
    image_segmenter: Any
    object_detector: Any
    metadata_writer: Any
    metadata: Any


def _import_writers() -> _Writers:
    """MediaPipe's metadata writers, importable even where the wheel lacks
    `_pywrap_metadata_version` (see the module docstring)."""
    import_optional("mediapipe", "mediapipe", "Writing MediaPipe metadata")
    with _parser_version_module():
        metadata = importlib.import_module("mediapipe.tasks.python.metadata.metadata")
    package = "mediapipe.tasks.python.metadata.metadata_writers"
    return _Writers(metadata=metadata, **{
        name: importlib.import_module(f"{package}.{name}")
        for name in ("image_classifier", "image_segmenter", "object_detector", "metadata_writer")
    })


@contextlib.contextmanager
def _parser_version_module() -> Iterator[None]:
    """While MediaPipe's `metadata.py` is imported, provide
    `_pywrap_metadata_version` if the wheel has none: `metadata.py` keeps
    the reference, and `sys.modules` is left as it was."""
    try:
        importlib.import_module(_VERSION_MODULE)
        yield
        return
    except ImportError:
        pass
    package = _VERSION_MODULE.rsplit(".", 1)[0]
    module = types.ModuleType(_VERSION_MODULE, "GetMinimumMetadataParserVersion, computed in Python.")
    module.GetMinimumMetadataParserVersion = _parser_version  # type: ignore[attr-defined]
    parent = types.ModuleType(package)
    parent.__path__ = []  # type: ignore[attr-defined]
    parent._pywrap_metadata_version = module  # type: ignore[attr-defined]
    added = {name: mod for name, mod in ((package, parent), (_VERSION_MODULE, module)) if name not in sys.modules}
    sys.modules.update(added)
    try:
        yield
    finally:
        for name in added:
            sys.modules.pop(name, None)


# The metadata schema members added after version 1.0.0 and the parser
# version that added each (MediaPipe's mediapipe/tasks/cc/metadata/
# metadata_version.cc, `GetMemberVersion`).
_VOCABULARY, _SUBGRAPH_PROCESS_UNITS, _TOKENIZERS = (1, 0, 1), (1, 1, 0), (1, 1, 0)
_TENSOR_GROUPS, _REGEX_TOKENIZER, _AUDIO_PROPERTIES = (1, 2, 0), (1, 2, 1), (1, 3, 0)
_SCANN_INDEX_FILE, _FILE_VERSION, _CUSTOM_METADATA = (1, 4, 0), (1, 4, 1), (1, 5, 0)


def _parser_version(metadata_buffer: bytes) -> str:
    """The minimum metadata parser version that understands every field of
    `metadata_buffer` (a `ModelMetadata` flatbuffer), as MediaPipe's
    `GetMinimumMetadataParserVersion` computes it: "1.0.0" raised to the
    version that added each newer member the buffer uses."""
    from mediapipe.tasks.metadata import metadata_schema_py_generated as fb

    if not fb.ModelMetadata.ModelMetadataBufferHasIdentifier(metadata_buffer, 0):
        raise ValueError("The model metadata is not a valid FlatBuffer buffer.")
    root = fb.ModelMetadataT.InitFromObj(fb.ModelMetadata.GetRootAs(metadata_buffer, 0))
    found = [(1, 0, 0)]

    def files(items: Any) -> None:
        for item in items or ():
            found.extend([_VOCABULARY] * (item.type == fb.AssociatedFileType.VOCABULARY)
                         + [_SCANN_INDEX_FILE] * (item.type == fb.AssociatedFileType.SCANN_INDEX_FILE)
                         + [_FILE_VERSION] * (item.version is not None))

    def units(items: Any) -> None:
        options = fb.ProcessUnitOptions
        for item in items or ():
            found.extend([_TOKENIZERS] * (item.optionsType in (options.BertTokenizerOptions,
                                                               options.SentencePieceTokenizerOptions))
                         + [_REGEX_TOKENIZER] * (item.optionsType == options.RegexTokenizerOptions))

    for subgraph in root.subgraphMetadata or ():
        for tensor in (subgraph.inputTensorMetadata or []) + (subgraph.outputTensorMetadata or []):
            files(tensor.associatedFiles)
            units(tensor.processUnits)
            if tensor.content is not None and tensor.content.contentPropertiesType == \
                    fb.ContentProperties.AudioProperties:
                found.append(_AUDIO_PROPERTIES)
        files(subgraph.associatedFiles)
        for process_units in (subgraph.inputProcessUnits, subgraph.outputProcessUnits):
            if process_units is not None:
                found.append(_SUBGRAPH_PROCESS_UNITS)
                units(process_units)
        if subgraph.inputTensorGroups is not None or subgraph.outputTensorGroups is not None:
            found.append(_TENSOR_GROUPS)
        if subgraph.customMetadata is not None:
            found.append(_CUSTOM_METADATA)
    files(root.associatedFiles)
    return ".".join(str(v) for v in max(found))
