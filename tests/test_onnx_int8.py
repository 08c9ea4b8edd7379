"""onnxruntime int8: hard-sigmoid / hard-swish as saturating int8 adds."""

from __future__ import annotations

import collections

import keras
import numpy as np
import pytest
from helpers import trained_looking

import mobilenetv3
from mobilenetv3.export import export_onnx, quantize_onnx

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")




def _session(path, optimized=None):
    options = ort.SessionOptions()
    if optimized is not None:
        options.optimized_model_filepath = str(optimized)
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _ops(path) -> collections.Counter:
    return collections.Counter(node.op_type for node in onnx.load(str(path)).graph.node)


def test_int8_hard_sigmoid_runs_as_qlinear_add_and_tracks_the_float_island(tmp_path):
    keras.utils.set_random_seed(0)
    model = trained_looking(mobilenetv3.MobileNetV3SmallBackbone(include_rescaling=True))
    rng = np.random.default_rng(0)
    calibration = rng.uniform(0, 255, (8, 96, 96, 3)).astype("float32")
    images = rng.uniform(0, 255, (4, 96, 96, 3)).astype("float32")
    export_onnx(model, tmp_path / "f.onnx", input_size=96)
    quantize_onnx(tmp_path / "f.onnx", tmp_path / "island.onnx", calibration, hard_sigmoid_add=False)
    quantize_onnx(tmp_path / "f.onnx", tmp_path / "add.onnx", calibration)
    float_ops = _ops(tmp_path / "f.onnx")
    count = float_ops["HardSwish"] + float_ops["HardSigmoid"]  # hard-swish and squeeze-excite gates
    assert count > 20 and _ops(tmp_path / "island.onnx")["HardSigmoid"] == count
    assert "HardSigmoid" not in _ops(tmp_path / "add.onnx")
    outputs = {}
    for name in ("f", "island", "add"):
        session = _session(tmp_path / f"{name}.onnx", optimized=tmp_path / f"{name}_optimized.onnx")
        outputs[name] = session.run(None, {"images": images})[0]
    fused = _ops(tmp_path / "add_optimized.onnx")
    assert fused["QLinearAdd"] >= count and "HardSigmoid" not in fused  # every hard-sigmoid is an int8 add
    scale = np.abs(outputs["f"]).max()
    assert scale > 0.5
    island_error = np.abs(outputs["island"] - outputs["f"]).max()
    add_error = np.abs(outputs["add"] - outputs["f"]).max()
    assert add_error < 0.1 * scale and add_error < 2 * island_error + 1e-3


def _reference_session(path):
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # QDQ in float: the graph's meaning
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def test_int8_weights_are_uint8_so_the_int8_kernels_compute_the_graph_on_every_cpu(tmp_path):
    # onnxruntime's u8 x i8 kernels saturate on x86 CPUs without VNNI: with int8
    # weights the kernels were 0.185 of the output range off the graph on an
    # AVX2-only AMD EPYC, with uint8 weights 0.008.
    keras.utils.set_random_seed(0)
    model = trained_looking(mobilenetv3.MobileNetV3SmallBackbone(input_shape=(64, 64, 3), include_rescaling=True))
    rng = np.random.default_rng(0)
    calibration = rng.uniform(0, 255, (8, 64, 64, 3)).astype("float32")
    images = rng.uniform(0, 255, (4, 64, 64, 3)).astype("float32")
    export_onnx(model, tmp_path / "f.onnx", input_size=64)
    quantize_onnx(tmp_path / "f.onnx", tmp_path / "int8.onnx", calibration)
    graph = onnx.load(str(tmp_path / "int8.onnx")).graph
    types = collections.Counter(onnx.helper.tensor_dtype_to_np_dtype(i.data_type).name for i in graph.initializer)
    assert types["int8"] == 0 and types["uint8"] > 50, types
    optimized = _session(tmp_path / "int8.onnx", optimized=tmp_path / "optimized.onnx")
    assert _ops(tmp_path / "optimized.onnx")["QLinearConv"] > 30
    got = optimized.run(None, {"images": images})[0]
    want = _reference_session(tmp_path / "int8.onnx").run(None, {"images": images})[0]
    error = np.abs(got - want).max() / (want.max() - want.min())
    assert error < 0.05, error
