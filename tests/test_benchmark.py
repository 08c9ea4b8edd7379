"""The peer-comparison harness (benchmarks/harness.py; conftest puts that
folder on sys.path): its quick path runs one case end to end through
`python benchmarks/benchmark.py` (no timing assertions), case selection,
the report tables, worker environments and rounds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import harness as benchmark
import pytest

ROOT = Path(__file__).resolve().parents[1]
pytest.importorskip("onnxruntime")


def test_quick_benchmark_writes_table_json_and_chart(tmp_path):
    """The script run by path from another folder: its workers find the harness there too."""
    cases = ["mobilenetv3-onnxruntime", "mobilenetv3-folded-tensorflow"]
    command = [sys.executable, str(ROOT / "benchmarks" / "benchmark.py"), "--quick", "--models", "small",
               "--cases", *cases, "--out", str(tmp_path / "out"), "--exports-dir", str(tmp_path / "exports")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "| small | mobilenetv3-onnxruntime |" in done.stdout and "Machine: " in done.stdout
    rows = json.loads((tmp_path / "out" / "results.json").read_text())
    assert sorted((r["case"], r["model"]) for r in rows) == sorted((case, "small") for case in cases)
    for row in rows:
        assert "skipped" not in row, row
        assert row["batch1_ms"] > 0 and row["batch"] == 4
        assert row["roofline_b1"] > 0 and row["limit_img_s"][0] > 0
    assert "| small | mobilenetv3-onnxruntime |" in (tmp_path / "out" / "results.md").read_text()
    assert (tmp_path / "out" / "results.png").stat().st_size > 0
    assert (tmp_path / "exports" / "small.onnx").is_file()


def test_unknown_case_and_model_are_refused(capsys):
    import benchmark as script

    assert script.main(["--cases", "nope", "--quick"]) == 2
    assert "benchmark.py: error: unknown benchmark cases ['nope']" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown benchmark cases"):
        benchmark.run_benchmark(cases=["nope"], quick=True)
    with pytest.raises(ValueError, match="`models`"):
        benchmark.run_benchmark(models=["medium"], quick=True)


def test_case_globs_select_and_unknown_patterns_fail():
    names = [c.name for c in benchmark.select_cases(["*openvino*", "timm-eager"])]
    assert names == [c.name for c in benchmark.CASES if "openvino" in c.name or c.name == "timm-eager"]
    assert "torchvision-onnx-openvino-int8" in names and "keras.applications-openvino" in names
    assert len(benchmark.select_cases(None)) == len(benchmark.CASES)
    with pytest.raises(ValueError, match=r"unknown benchmark cases \['\*nope\*'\]"):
        benchmark.select_cases(["*nope*"])


def _row(case, b1, bn):
    return {"case": case, "model": "small", "build_s": 0.1, "batch1_ms": 1000 / b1, "batch1_img_s": b1,
            "batch": 32, "batch_img_s": bn, "peak_rss_delta_mib": 1.0}


def test_roofline_fraction_and_peer_ratios_in_table_and_summary():
    rows = [_row("mobilenetv3-onnxruntime", 300.0, 400.0), _row("torchvision-eager", 100.0, 500.0),
            _row("timm-eager", 150.0, 200.0), {"case": "keras-cv-0.9-tensorflow", "model": "small", "skipped": "x"}]
    limits = {"rates": {"gemm_flops": 3e11, "bandwidth": 1e11, "dram_bandwidth": 1e10},
              "bounds": {"small": {"1": 1 / 1000, "32": 1 / 2000}}}
    benchmark._add_roofline(rows, limits)
    assert rows[0]["roofline_b1"] == pytest.approx(0.3) and rows[0]["roofline_bN"] == pytest.approx(0.2)
    assert rows[0]["limit_img_s"] == [1000.0, 2000.0] and "roofline_b1" not in rows[3]
    table = benchmark.markdown_table(rows)
    # ours against the fastest peer per column: timm at batch 1 (150), torchvision at batch 32 (500)
    assert "| small | mobilenetv3-onnxruntime | 3.33 | 300 | 400 (32) | - / - | 2.00x / 0.80x | 0.30 / 0.20 |" in table
    text = benchmark.summary(rows)
    assert "fastest ours mobilenetv3-onnxruntime 300 img/s vs fastest peer timm-eager 150 img/s (2.00x)" in text
    assert "torchvision-eager 500 img/s (0.80x)" in text and "1000 img/s at batch 1, 2000 img/s at batch 32" in text


def test_workers_keep_freed_memory_unless_told_or_already_set(monkeypatch):
    """Every worker gets glibc's keep-freed-memory tunables; `--system-malloc` leaves them out, and a
    value the user exported wins."""
    for name in benchmark.ALLOCATOR_ENV:
        monkeypatch.delenv(name, raising=False)
    env = benchmark.worker_env("torch")
    assert env["KERAS_BACKEND"] == "torch"
    assert {k: env[k] for k in benchmark.ALLOCATOR_ENV} == benchmark.ALLOCATOR_ENV
    assert not set(benchmark.ALLOCATOR_ENV) & set(benchmark.worker_env("torch", system_malloc=True))
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "131072")
    assert benchmark.worker_env("jax")["MALLOC_MMAP_THRESHOLD_"] == "131072"
    assert "glibc malloc defaults" in benchmark.machine_note(system_malloc=True)
    assert "MALLOC_TRIM_THRESHOLD_=" in benchmark.machine_note()


def test_best_of_rounds_keeps_each_cases_fastest_round_and_every_rounds_figures():
    runs = [
        {"case": "a", "model": "small", "batch1_img_s": 90.0, "batch1_ms": 11.1, "batch": 32, "batch_img_s": 300.0,
         "build_s": 1.0},
        {"case": "b", "model": "small", "skipped": "not installed"},
        {"case": "t", "model": "train", "batch": 32, "train_img_s": 80.0, "step_ms": 400.0},
        {"case": "a", "model": "small", "batch1_img_s": 100.0, "batch1_ms": 10.0, "batch": 32, "batch_img_s": 280.0,
         "build_s": 2.0},
        {"case": "b", "model": "small", "skipped": "not installed"},
        {"case": "t", "model": "train", "batch": 32, "train_img_s": 64.0, "step_ms": 500.0},
    ]
    a, b, t = benchmark.best_of_rounds(runs)
    assert (a["batch1_img_s"], a["batch1_ms"], a["batch_img_s"], a["build_s"]) == (100.0, 10.0, 300.0, 1.0)
    assert a["rounds_img_s"] == [[90.0, 300.0], [100.0, 280.0]]
    assert b == {"case": "b", "model": "small", "skipped": "not installed"}
    assert (t["train_img_s"], t["step_ms"], t["rounds_img_s"]) == (80.0, 400.0, [[80.0], [64.0]])
    with pytest.raises(ValueError, match="rounds"):
        benchmark.run_benchmark(models=["small"], cases=["mobilenetv3-onnxruntime"], rounds=0)
