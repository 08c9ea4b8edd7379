"""`.tflite` graphs: converted models against the real TFLite runtime.

Fixtures (../shared/fixtures, see PROVENANCE.md): the official TF-slim
MobileNetV3-Small 1.0 uint8 release and the MediaPipe MobileNetV3-Small 0.75
float embedder. The oracle is the TFLite runtime running those files.
"""

from __future__ import annotations

import re
from pathlib import Path

import keras
import numpy as np
import pytest

from mobilenetv3.presets import loader
from mobilenetv3.weights import tflite

litert = pytest.importorskip("ai_edge_litert.interpreter")
Image = pytest.importorskip("PIL.Image")

UINT8_MODEL = "tflite/v3-small_224_1.0_uint8.tflite"
EMBEDDER = "tflite/mobilenet_v3_small_075_224_embedder.tflite"
IMAGES = ["cat", "bird", "dragonfly", "grace_hopper"]
# PROVENANCE.md: the TFLite runtime's top-1 on the uint8 graph.
RUNTIME_TOP1 = {
    "cat": "Egyptian cat",
    "bird": "chickadee",
    "dragonfly": "damselfly",
    "grace_hopper": "military uniform",
}


def _pixels(fixtures: Path, name: str) -> np.ndarray:
    """uint8 RGB (224, 224, 3), bilinear resize, no crop."""
    image = Image.open(fixtures / "images" / f"{name}.bmp").convert("RGB")
    return np.asarray(image.resize((224, 224), Image.BILINEAR))


def _labels(fixtures: Path) -> list[str]:
    return (fixtures / "images" / "imagenet_labels.txt").read_text().splitlines()


def _run(path: Path, inputs: np.ndarray, preserve: bool = False) -> tuple[np.ndarray, object]:
    interpreter = litert.Interpreter(model_path=str(path), experimental_preserve_all_tensors=preserve)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], inputs[None])
    interpreter.invoke()
    output = interpreter.get_output_details()[0]
    value = interpreter.get_tensor(output["index"])[0].astype(np.float32)
    scale, zero_point = output["quantization"]
    return ((value - zero_point) * scale if scale else value), interpreter


@pytest.fixture(scope="module")
def uint8_classifier(shared_fixtures: Path) -> keras.Model:
    return loader.build_model(tflite.read(str(shared_fixtures / UINT8_MODEL)))


def test_reads_the_tf_slim_release_architecture(shared_fixtures: Path) -> None:
    path = shared_fixtures / UINT8_MODEL
    assert tflite.detect(str(path))
    checkpoint = tflite.read(str(path))
    config = checkpoint.backbone_config
    assert len(config["stackwise_filters"]) == 11 and config["alpha"] == 1.0
    assert (config["padding"], config["preprocessing"]) == ("same", "symmetric")
    assert (checkpoint.num_classes, checkpoint.head_filters) == (1001, 1024)


def test_uint8_release_classifies_like_the_runtime(shared_fixtures: Path, uint8_classifier: keras.Model) -> None:
    """Same top-1 as the runtime on cat, bird and grace_hopper; on dragonfly
    the same top-2 pair in the other order; top-5 sets share >= 3 classes.

    Why not dragonfly's top-1 (runtime: damselfly 0.52 / dragonfly 0.30;
    ours: dragonfly 0.37 / damselfly 0.21): the integer graph is chaotic
    under its own 8-bit requantization, and this call sits inside that
    noise. Measured (see the `tflite` module docstring):

    - not a mapping or preprocessing error: a float re-implementation of
      the graph op by op gives our probabilities to 1e-4; the runtime's
      (q - 128) / 127 input instead of x / 127.5 - 1 moves them by 0.003;
      the graph's hard-swish, SE gate (relu6(x + 3) / 6), pooling, adds and
      softmax (beta 1) are what we compute;
    - fake-quantizing every tensor with the graph's own scale and zero
      point reproduces each runtime op exactly from the runtime's inputs
      (conv, depthwise, add, mul, pool; hard-swish off by 1 only at
      x.5 ties), yet run end to end it diverges from the runtime from block
      3 on (11% of tensor values differ at block 3, 75% at block 4) and
      puts dragonfly and damselfly level; jittering only the rounding ties
      (+-0.002 step) makes damselfly win 53% of runs (logit gap sd 0.38);
    - the runtime disagrees with itself: its reference kernels
      (no XNNPACK) give damselfly 0.32 / dragonfly 0.25, up to 0.20 away
      from the default kernels' probabilities.

    Matching that top-1 would need a bit-exact copy of XNNPACK's integer
    kernels, not a float model. The float model itself is stable (0.01
    pixel of input noise moves logits by < 2e-3).
    """
    labels = _labels(shared_fixtures)
    for name in IMAGES:
        pixels = _pixels(shared_fixtures, name)
        runtime, _ = _run(shared_fixtures / UINT8_MODEL, pixels)
        assert labels[int(np.argmax(runtime))] == RUNTIME_TOP1[name]
        logits = keras.ops.convert_to_numpy(uint8_classifier(pixels[None].astype("float32")))[0]
        ours_top5, runtime_top5 = np.argsort(-logits)[:5], np.argsort(-runtime)[:5]
        if name == "dragonfly":
            assert set(ours_top5[:2]) == set(runtime_top5[:2]), [labels[i] for i in ours_top5[:2]]
        else:
            assert ours_top5[0] == runtime_top5[0], (name, labels[ours_top5[0]])
        assert len(set(ours_top5) & set(runtime_top5)) >= 3, name
        probabilities = np.exp(logits - logits.max())
        probabilities /= probabilities.sum()
        # Measured: 0.17, 0.18, 0.31, 0.25 (the runtime's two kernel sets: up to 0.20).
        assert np.abs(probabilities - runtime).max() <= 0.35, name


def test_every_layer_matches_the_runtime_within_one_quantization_step(
    shared_fixtures: Path, uint8_classifier: keras.Model
) -> None:
    """Each conv of the graph, fed the runtime's own (dequantized) input,
    gives the runtime's output to within its 8-bit rounding: this checks
    every kernel, bias, layout, stride and padding the reader produced."""
    path = shared_fixtures / UINT8_MODEL
    _, interpreter = _run(path, _pixels(shared_fixtures, "grace_hopper"), preserve=True)
    details = {d["index"]: d for d in interpreter.get_tensor_details()}
    backbone = uint8_classifier.backbone
    checked = 0
    for op in interpreter._get_ops_details():
        if op["op_name"] not in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            continue
        source, target = int(op["inputs"][0]), int(op["outputs"][0])
        name = details[target]["name"]
        ours = _our_conv(uint8_classifier, backbone, name, _dequantized(interpreter, details, source))
        expected = _dequantized(interpreter, details, target)
        scale, zero_point = details[target]["quantization"]
        ours = np.clip(ours, (0 - zero_point) * scale, (255 - zero_point) * scale)
        assert np.abs(ours - expected).max() <= 0.51 * scale + 1e-5, name
        checked += 1
    assert checked == 1 + 10 + 11 * 2 + 9 * 2 + 1 + 2  # stem, expand, dw+project, SE, Conv_1, head


def _dequantized(interpreter: object, details: dict, index: int) -> np.ndarray:
    scale, zero_point = details[index]["quantization"]
    return (interpreter.get_tensor(index).astype(np.float32) - zero_point) * scale


def _our_conv(classifier: keras.Model, backbone: keras.Model, name: str, x: np.ndarray) -> np.ndarray:
    """Our layers for the runtime conv whose output tensor is `name`."""
    match = re.search(r"MobilenetV3/(.+)/([^/]+)$", name)
    layer, output = match.group(1), match.group(2)
    block = re.fullmatch(r"expanded_conv(?:_(\d+))?/(.+)", layer)
    if layer in ("Conv_2", "Logits/Conv2d_1c_1x1"):
        conv = classifier.get_layer("Logits" if layer.startswith("Logits") else "Conv_2")
        return _linear(conv, x)
    if block and block.group(2).startswith("squeeze_excite"):
        prefix = f"expanded_conv_{block.group(1)}_" if block.group(1) else "expanded_conv_"
        se = backbone.get_layer(prefix + "squeeze_excite")
        conv = se.excite_conv if block.group(2).endswith("Conv_1") else se.squeeze_conv
        y = _linear(conv, x)
    else:
        ours = layer if not block else (
            f"expanded_conv_{block.group(1)}_{block.group(2)}" if block.group(1) else f"expanded_conv_{block.group(2)}"
        )
        y = backbone.get_layer(f"{ours}_BatchNorm")(backbone.get_layer(ours)(x))
        y = keras.ops.convert_to_numpy(y)
    return np.maximum(y, 0) if output == "Relu" else y


def _linear(conv: keras.layers.Layer, x: np.ndarray) -> np.ndarray:
    y = keras.ops.conv(x, conv.kernel, padding="same") + conv.bias
    return keras.ops.convert_to_numpy(y)


def test_mediapipe_embedder_matches_the_runtime(shared_fixtures: Path) -> None:
    path = shared_fixtures / EMBEDDER
    assert tflite.detect(str(path))
    checkpoint = tflite.read(str(path))
    assert checkpoint.num_classes is None and checkpoint.head_filters == 1024
    assert checkpoint.backbone_config["alpha"] == 0.75
    embedder = loader.build_embedder(checkpoint)
    for name in ("cat", "dragonfly"):
        pixels = _pixels(shared_fixtures, name).astype(np.float32)
        runtime, _ = _run(path, pixels / 255.0)
        ours = keras.ops.convert_to_numpy(embedder(pixels[None]))[0]
        cosine = float(ours @ runtime / np.linalg.norm(ours) / np.linalg.norm(runtime))
        assert cosine >= 0.9999, (name, cosine)
        assert np.abs(ours - runtime).max() <= 5e-3 * np.abs(runtime).max(), name
    backbone = loader.build_model(checkpoint)
    assert backbone.output_shape[-1] == 432


def test_truncated_or_foreign_tflite_is_refused(tmp_path: Path, shared_fixtures: Path) -> None:
    data = (shared_fixtures / EMBEDDER).read_bytes()
    truncated = tmp_path / "cut.tflite"
    truncated.write_bytes(data[: len(data) // 3])
    with pytest.raises(ValueError, match="truncated or corrupted"):
        tflite.read(str(truncated))
    text = tmp_path / "notes.tflite"
    text.write_text("not a model")
    assert not tflite.detect(str(text))
    assert not tflite.detect(str(tmp_path / "missing.tflite"))
