"""The benchmark's training group (`--models train`): one SGD step of
MobileNetV3-Small, ours vs keras.applications per backend and torchvision
eager. Smoke test of the quick path (no timing assertions) and the table."""

from __future__ import annotations

import harness as benchmark  # benchmarks/harness.py (conftest puts it on sys.path)
import pytest


@pytest.mark.slow
def test_quick_training_rows(tmp_path):
    # 31 s (2026-11-26, shared 2-core box): two subprocesses, each building and compiling a training step at 224x224, batch 4
    pytest.importorskip("torchvision")
    cases = ["mobilenetv3-train-tensorflow", "torchvision-eager-train"]
    rows = benchmark.run_benchmark(models=["train"], cases=cases, quick=True, exports_dir=tmp_path,
                                   log=lambda line: None)
    assert [(r["case"], r["model"]) for r in rows] == [(case, "train") for case in cases]
    for row in rows:
        assert "skipped" not in row, row
        assert row["step_ms"] > 0 and row["batch"] == benchmark.Settings.quick().train_batch
    table = benchmark.markdown_table(rows)
    assert "| mobilenetv3-train-tensorflow | tensorflow |" in table and "batch 1 latency" not in table


def _row(case, backend, img_s):
    return {"case": case, "model": "train", "backend": backend, "build_s": 1.0, "batch": 32,
            "step_ms": 32000 / img_s, "train_img_s": img_s, "peak_rss_delta_mib": 100.0}


def test_training_table_ratios_per_backend_and_to_torchvision():
    rows = [_row("mobilenetv3-train-tensorflow", "tensorflow", 56.0),
            _row("keras.applications-train-tensorflow", "tensorflow", 50.0),
            _row("mobilenetv3-train-jax", "jax", 40.0),
            {"case": "keras.applications-train-jax", "model": "train", "skipped": "timed out"},
            _row("torchvision-eager-train", "torch", 80.0)]
    table = benchmark.markdown_table(rows)
    assert "| mobilenetv3-train-tensorflow | tensorflow | 571 (32) | 56.0 | 1.12x | 0.70x |" in table
    assert "| mobilenetv3-train-jax | jax | 800 (32) | 40.0 | - | 0.50x |" in table  # its baseline was skipped
    assert "| keras.applications-train-jax | | skipped: timed out |" in table
    text = benchmark.summary(rows)
    assert "train, training step: fastest ours mobilenetv3-train-tensorflow 56 img/s vs fastest peer " \
           "torchvision-eager-train 80 img/s (0.70x)" in text
    benchmark._add_roofline(rows, {"rates": {}, "bounds": {"small": {"1": 1.0, "32": 1.0}}})
    assert "roofline_b1" not in rows[0]
    assert {c.name for c in benchmark.CASES if c.models == ("train",)} == {c.name for c in benchmark.TRAIN_CASES}
    assert len(benchmark.TRAIN_CASES) == 7 and benchmark.Settings().train_batch == 32
