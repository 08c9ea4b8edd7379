"""Smoke test: the benchmark's quick path runs one case end to end (no timing assertions)."""

from __future__ import annotations

import json

import pytest

from mobilenetv3 import benchmark
from mobilenetv3.cli import main

pytest.importorskip("onnxruntime")


def test_quick_benchmark_writes_table_json_and_chart(tmp_path):
    code = main(["benchmark", "--quick", "--models", "small", "--cases", "mobilenetv3-onnxruntime",
                 "--out", str(tmp_path / "out"), "--exports-dir", str(tmp_path / "exports")])
    assert code == 0
    rows = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [(r["case"], r["model"]) for r in rows] == [("mobilenetv3-onnxruntime", "small")]
    assert "skipped" not in rows[0], rows[0]
    assert rows[0]["batch1_ms"] > 0 and rows[0]["batch"] == 4
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
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]
