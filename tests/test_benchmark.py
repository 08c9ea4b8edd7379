"""Smoke test: the benchmark's quick path runs one case end to end (no timing assertions)."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from mobilenetv3 import benchmark
from mobilenetv3.cli import main

pytest.importorskip("onnxruntime")


def test_quick_benchmark_writes_table_json_and_chart(tmp_path):
    cases = ["mobilenetv3-onnxruntime", "mobilenetv3-folded-tensorflow"]
    code = main(["benchmark", "--quick", "--models", "small", "--cases", *cases,
                 "--out", str(tmp_path / "out"), "--exports-dir", str(tmp_path / "exports")])
    assert code == 0
    rows = json.loads((tmp_path / "out" / "results.json").read_text())
    assert sorted((r["case"], r["model"]) for r in rows) == sorted((case, "small") for case in cases)
    for row in rows:
        assert "skipped" not in row, row
        assert row["batch1_ms"] > 0 and row["batch"] == 4
    assert "| small | mobilenetv3-onnxruntime |" in (tmp_path / "out" / "results.md").read_text()
    assert (tmp_path / "out" / "results.png").stat().st_size > 0
    assert (tmp_path / "exports" / "small.onnx").is_file()


def test_unknown_case_and_model_are_refused():
    with pytest.raises(ValueError, match="unknown benchmark cases"):
        benchmark.run_benchmark(cases=["nope"], quick=True)
    with pytest.raises(ValueError, match="`models`"):
        benchmark.run_benchmark(models=["medium"], quick=True)


def test_cli_export_writes_onnx_and_refuses_bad_flags(tmp_path, capsys):
    import onnx

    assert main(["export", "mobilenet_v3_small", str(tmp_path / "m.onnx"), "--format", "onnx"]) == 0
    ops = {node.op_type for node in onnx.load(str(tmp_path / "m.onnx")).graph.node}
    assert "HardSwish" in ops and "BatchNormalization" not in ops
    assert main(["export", "mobilenet_v3_small", str(tmp_path / "q.onnx"), "--format", "onnx", "--int8"]) == 2
    assert "--calibration" in capsys.readouterr().err
    assert main(["export", "mobilenet_v3_small", str(tmp_path / "s"), "--format", "saved_model", "--int8",
                 "--calibration", str(tmp_path)]) == 2
    assert main(["export", "mobilenet_v3_small", str(tmp_path / "f.onnx"), "--format", "onnx", "--full-integer"]) == 2
    assert "--full-integer applies to --format tflite with --int8" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TFLite export needs TensorFlow")
@pytest.mark.parametrize("full_integer", [False, True])
def test_cli_export_tflite_int8_keeps_hard_swish_float_unless_full_integer(tmp_path, full_integer):
    from ai_edge_litert.interpreter import Interpreter
    from PIL import Image

    folder = tmp_path / "calibration"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for index in range(3):
        Image.fromarray(rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)).save(folder / f"{index}.png")
    out = tmp_path / "q.tflite"
    flags = ["--full-integer"] if full_integer else []
    assert main(["export", "mobilenet_v3_small", str(out), "--format", "tflite", "--int8",
                 "--calibration", str(folder), "--input-size", "96", *flags]) == 0
    interpreter = Interpreter(str(out))
    tensors = {t["index"]: t["dtype"] for t in interpreter.get_tensor_details()}
    kinds = {tensors[op["outputs"][0]] for op in interpreter._get_ops_details() if op["op_name"] == "HARD_SWISH"}
    assert kinds == {np.int8 if full_integer else np.float32}
