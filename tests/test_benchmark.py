"""Smoke test: the benchmark's quick path runs one case end to end (no timing assertions)."""

from __future__ import annotations

import json

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
