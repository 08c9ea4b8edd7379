"""TF-slim and MediaPipe `.tflite` MobileNetV3 graphs.

TFLite graphs carry their weights as constant tensors with BatchNorm already
folded in: every conv has a kernel and a bias, no BN statistics. `read`
walks the graph's convolutions in execution order (with the TFLite runtime,
no delegates), names each after its output tensor (`MobilenetV3/<layer>/...`
in the TF-slim uint8 release, `predict/MobilenetV3/<layer>/...` in the
MediaPipe embedder), dequantizes uint8/int8 weights (`(q - zero_point) *
scale`, per tensor or per channel) and transposes them to Keras layouts.

A folded BN becomes an identity Keras BatchNormalization that adds the
folded bias: gamma = 1, beta = bias, moving mean = 0 and moving variance =
1 - epsilon, so that `(x - 0) / sqrt(var + eps) * 1 + bias` is exactly
`x + bias` (1 - eps + eps rounds to exactly 1.0 in float32).

The architecture comes from the graph: 11 or 15 blocks (Small/Large), no SE
and 3x3 kernels (minimalistic), the channels (width). TF-slim conventions
apply: TF "SAME" padding, inputs in [-1, 1] (`preprocessing="symmetric"`,
our models take 0..255 pixels). A graph with `Logits` (TF-slim: 1001
classes, index 0 = background) becomes a classifier with the paper head; a
graph without (the MediaPipe image embedder) becomes a backbone, and
`mobilenetv3.presets.loader.build_embedder` gives the embedder's pooled `Conv_2` + hard-swish feature.

Example:

```python
from mobilenetv3.presets import loader
from mobilenetv3.weights import tflite

classifier = loader.build_model(tflite.read("v3-small_224_1.0_uint8.tflite"))
embedder = loader.build_embedder(tflite.read("mobilenet_v3_small_075_224_embedder.tflite"))
embedder(pixels_0_to_255).shape  # (batch, 1024)
```

Agreement with the integer runtime: the model is the float network the
uint8 graph encodes (dequantized weights, float activations). Run op by op
in float, the graph gives our probabilities to 1e-4, so the mapping,
padding, hard-swish, SE gate (`relu6(x + 3) / 6`), pooling, residual adds
and softmax are exact. The TFLite runtime instead requantizes every tensor
to 8 bits, and in the TF-slim MobileNetV3-Small release that requantization
is chaotic: a 1-step difference in a few values grows to ~20% of the
activations' RMS within two blocks. Even a float emulation that
fake-quantizes every tensor with the graph's own scales and zero points
(each op then matches the runtime from the runtime's inputs, to the bit
except at rounding ties) drifts from it end to end, and the runtime's own reference and XNNPACK
kernels differ by up to 0.2 in a class probability. So expect the same
classes, not the same confidences: on the four test images the top-1
agrees except on a dragonfly photo, where the runtime says damselfly 0.52
/ dragonfly 0.30 and this model dragonfly 0.37 / damselfly 0.21 (the
reference kernels say 0.32 / 0.25). The float MediaPipe embedder matches
its runtime to float32 precision.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import numpy as np

from mobilenetv3.core.architectures import block_prefix
from mobilenetv3.weights import Checkpoint
from mobilenetv3.weights.architecture_inference import BlockFacts, infer_architecture

BN_EPSILON = 1e-3
_FLATBUFFER_ID = b"TFL3"
_CONV_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D")
_LAYER_RE = re.compile(
    r"MobilenetV3/(Conv(?:_\d)?|Logits/Conv2d_1c_1x1|expanded_conv(?:_(\d+))?/"
    r"(expand|depthwise|project|squeeze_excite/Conv(?:_1)?))/"
)
_HARD_SIGMOID_OFFSET = 3.0


@dataclasses.dataclass
class _Conv:
    """One convolution of the graph: its layer, float kernel and bias."""

    layer: str
    block: int | None
    role: str
    kernel: np.ndarray
    bias: np.ndarray


def detect(path: str) -> bool:
    """Whether `path` is a TFLite flatbuffer of a TF-slim-style MobileNetV3."""
    try:
        data = Path(path).read_bytes() if Path(path).is_file() else b""
    except OSError:
        return False
    return data[4:8] == _FLATBUFFER_ID and b"MobilenetV3/" in data


def read(path: str) -> Checkpoint:
    """Read a MobileNetV3 `.tflite` graph into canonical tensors.

    Args:
        path: a TF-slim release `.tflite` (float or uint8) or a MediaPipe
            MobileNetV3 image embedder.

    Returns:
        A `Checkpoint`: a classifier (paper head, e.g. 1001 classes) when the
        graph has logits, else a backbone whose `Conv_2` tensors
        `loader.build_embedder` uses.

    Raises:
        ValueError: the file is not a readable TFLite graph, or not a
            MobileNetV3 with TF-slim layer names.
    """
    convs = _graph_convs(str(path))
    blocks = _blocks(convs, path)
    architecture = infer_architecture(
        [
            BlockFacts(
                kernel_size=int(layers["depthwise"].kernel.shape[0]),
                has_se="squeeze_excite/Conv" in layers,
                out_channels=int(layers["project"].kernel.shape[-1]),
            )
            for layers in blocks
        ],
        str(path),
    )
    tensors = _canonical_tensors(convs, blocks)
    logits = tensors.get("Logits/kernel")
    head_conv = tensors.get("Conv_2/kernel")
    return Checkpoint(
        tensors=tensors,
        backbone_config={
            **architecture.backbone_config(),
            "padding": "same",
            "bn_epsilon": BN_EPSILON,
            "preprocessing": "symmetric",
        },
        num_classes=int(logits.shape[-1]) if logits is not None else None,
        head="paper" if logits is not None else None,
        head_filters=int(head_conv.shape[-1]) if head_conv is not None else None,
        head_activation="relu" if architecture.minimalistic else "hard_swish",
        source=f"TFLite graph {path}",
    )


# -- the graph ---------------------------------------------------------------


def _interpreter(path: str) -> Any:
    try:
        from ai_edge_litert import interpreter as runtime
    except ImportError:
        try:
            import tensorflow as tf
        except ImportError:
            raise ValueError(
                "Reading .tflite files needs the TFLite runtime (pip install ai-edge-litert)."
            ) from None
        runtime = tf.lite
        resolver = tf.lite.experimental.OpResolverType
    else:
        resolver = runtime.OpResolverType
    try:
        return runtime.Interpreter(
            model_path=path,
            experimental_op_resolver_type=resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        )
    except (ValueError, RuntimeError) as error:
        raise ValueError(f"{path} is not a readable TFLite model (truncated or corrupted?): {error}") from None


def _graph_convs(path: str) -> list[_Conv]:
    """Every convolution of the graph, in execution order, in float."""
    interpreter = _interpreter(path)
    details = {d["index"]: d for d in interpreter.get_tensor_details()}
    ops = interpreter._get_ops_details()
    consumers: dict[int, list[str]] = {}
    for op in ops:
        for index in op["inputs"]:
            consumers.setdefault(int(index), []).append(op["op_name"])
    convs = []
    for op in ops:
        if op["op_name"] not in _CONV_OPS:
            continue
        output = int(op["outputs"][0])
        match = _LAYER_RE.search(details[output]["name"].split(";")[0])
        if match is None:
            raise ValueError(
                f"{path}: convolution output {details[output]['name'][:80]!r} has no TF-slim "
                "MobilenetV3/<layer> name; only TF-slim and MediaPipe MobileNetV3 graphs are read."
            )
        kernel = _constant(interpreter, details, int(op["inputs"][1]))
        bias = _constant(interpreter, details, int(op["inputs"][2])) if len(op["inputs"]) > 2 and op["inputs"][2] >= 0 else None
        convs.append(_to_keras_layout(match, op["op_name"], kernel, bias))
        if match.group(3) == "squeeze_excite/Conv_1" and "ADD" not in consumers.get(output, []):
            # The converter folded hard-sigmoid's "+ 3" into this bias.
            convs[-1].bias = convs[-1].bias - _HARD_SIGMOID_OFFSET
    return convs


def _constant(interpreter: Any, details: dict, index: int) -> np.ndarray:
    """A constant tensor, dequantized to float32."""
    detail = details[index]
    value = interpreter.get_tensor(index)
    if np.issubdtype(value.dtype, np.floating):
        return value.astype(np.float32)
    quantization = detail["quantization_parameters"]
    scales, zero_points = quantization["scales"], quantization["zero_points"]
    if len(scales) == 0:
        raise ValueError(f"Tensor {detail['name']!r} is {value.dtype} without quantization parameters.")
    shape = [1] * value.ndim
    if len(scales) > 1:
        shape[quantization["quantized_dimension"]] = len(scales)
    scale = np.reshape(scales, shape).astype(np.float64)
    zero_point = np.reshape(zero_points, shape).astype(np.float64)
    return ((value.astype(np.float64) - zero_point) * scale).astype(np.float32)


def _to_keras_layout(match: re.Match, op_name: str, kernel: np.ndarray, bias: np.ndarray | None) -> _Conv:
    if op_name == "DEPTHWISE_CONV_2D":
        keras_kernel = kernel[0][..., None]  # (1, k, k, C) -> (k, k, C, 1)
    else:
        keras_kernel = kernel.transpose(1, 2, 3, 0)  # (O, k, k, I) -> (k, k, I, O)
    if bias is None:
        bias = np.zeros(keras_kernel.shape[-2] if op_name == "DEPTHWISE_CONV_2D" else keras_kernel.shape[-1], np.float32)
    block = None
    if match.group(1).startswith("expanded_conv"):
        block = int(match.group(2) or 0)
    return _Conv(match.group(1), block, match.group(3) or match.group(1), keras_kernel, bias)


def _blocks(convs: list[_Conv], path: str) -> list[dict[str, _Conv]]:
    """Per block index, its convolutions by role."""
    blocks: dict[int, dict[str, _Conv]] = {}
    seen: set[str] = set()
    for conv in convs:
        if conv.layer in seen:
            raise ValueError(f"{path}: layer {conv.layer} appears twice; not a single MobileNetV3.")
        seen.add(conv.layer)
        if conv.block is not None:
            blocks.setdefault(conv.block, {})[conv.role] = conv
    if sorted(blocks) != list(range(len(blocks))) or not blocks:
        raise ValueError(f"{path}: expanded_conv blocks {sorted(blocks)} are not numbered 0..N-1.")
    ordered = [blocks[i] for i in range(len(blocks))]
    for index, layers in enumerate(ordered):
        missing = {"depthwise", "project"} - set(layers)
        if missing:
            raise ValueError(f"{path}: block {index} lacks {sorted(missing)} convolutions.")
    for layer in ("Conv", "Conv_1"):
        if layer not in seen:
            raise ValueError(f"{path}: no {layer} convolution; not a MobileNetV3 graph.")
    return ordered


# -- canonical tensors -------------------------------------------------------


def _canonical_tensors(convs: list[_Conv], blocks: list[dict[str, _Conv]]) -> dict[str, np.ndarray]:
    by_layer = {conv.layer: conv for conv in convs}
    tensors: dict[str, np.ndarray] = {}
    _folded(tensors, by_layer["Conv"], "Conv")
    for index, layers in enumerate(blocks):
        prefix = block_prefix(index)
        for role in ("expand", "depthwise", "project"):
            if role in layers:
                _folded(tensors, layers[role], prefix + role)
        if "squeeze_excite/Conv" in layers:
            _plain(tensors, layers["squeeze_excite/Conv"], f"{prefix}squeeze_excite/squeeze_conv")
            _plain(tensors, layers["squeeze_excite/Conv_1"], f"{prefix}squeeze_excite/excite_conv")
    _folded(tensors, by_layer["Conv_1"], "Conv_1")
    if "Conv_2" in by_layer:
        _plain(tensors, by_layer["Conv_2"], "Conv_2")
    if "Logits/Conv2d_1c_1x1" in by_layer:
        _plain(tensors, by_layer["Logits/Conv2d_1c_1x1"], "Logits")
    return tensors


def _plain(tensors: dict, conv: _Conv, name: str) -> None:
    tensors[f"{name}/kernel"] = conv.kernel
    tensors[f"{name}/bias"] = conv.bias


def _folded(tensors: dict, conv: _Conv, name: str) -> None:
    """A conv with folded BN: the kernel, and an identity BN adding the bias."""
    tensors[f"{name}/kernel"] = conv.kernel
    channels = conv.bias.shape[0]
    norm = f"{name}_BatchNorm"
    tensors[f"{norm}/gamma"] = np.ones(channels, np.float32)
    tensors[f"{norm}/beta"] = conv.bias
    tensors[f"{norm}/moving_mean"] = np.zeros(channels, np.float32)
    tensors[f"{norm}/moving_variance"] = np.full(channels, 1.0 - BN_EPSILON, np.float32)


__all__ = ["detect", "read"]
