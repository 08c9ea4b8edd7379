"""Smoke test: the benchmark's SSDLite group (`--models detector`) runs our
raw ONNX export and torchvision's raw network end to end (no timing
assertions)."""

from __future__ import annotations

import harness as benchmark  # benchmarks/harness.py (conftest puts it on sys.path)
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("torchvision")


@pytest.mark.slow
def test_quick_detector_rows(tmp_path):
    cases = ["ssdlite-mobilenetv3-onnxruntime-raw", "ssdlite-torchvision-eager-raw"]
    rows = benchmark.run_benchmark(models=["detector"], cases=cases, quick=True, exports_dir=tmp_path,
                                   log=lambda line: None)
    assert [(r["case"], r["model"]) for r in rows] == [(case, "detector") for case in cases]
    for row in rows:
        assert "skipped" not in row, row
        assert row["batch1_ms"] > 0 and row["batch"] == benchmark.Settings.quick().detector_batch
    assert (tmp_path / "ssdlite.onnx").is_file() and (tmp_path / "ssdlite.onnx.anchors.npy").is_file()
    assert "| detector | ssdlite-torchvision-eager-raw |" in benchmark.markdown_table(rows)


def test_detector_cases_apply_to_the_detector_group_only():
    detector_cases = [c for c in benchmark.CASES if c.models == (benchmark.DETECTOR,)]
    assert {c.name for c in detector_cases} == {c.name for c in benchmark.DETECTOR_CASES}
    assert benchmark._exports_needed(list(benchmark.CASES), ["small"]) == tuple(benchmark.EXPORT_KINDS)
    assert set(benchmark._exports_needed(list(benchmark.CASES), ["detector"])) == set(benchmark.DETECTOR_EXPORT_KINDS)
    assert benchmark.Settings().detector_batch == 8 and benchmark.DETECTOR_SIZE == 320
