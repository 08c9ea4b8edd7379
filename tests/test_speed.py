"""The installed `mobilenetv3 benchmark --preset ...`: the user's model timed
on Keras and on its exports (`mobilenetv3.export.speed`). Structure only, no
timing assertions; the peer comparison's flags point to the checkout script."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import mobilenetv3
from mobilenetv3 import cli
from mobilenetv3.export import speed

SCRIPT = Path(sys.executable).with_name("mobilenetv3")


@pytest.mark.slow
def test_console_script_times_keras_and_onnxruntime(tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    if not SCRIPT.is_file():
        pytest.skip(f"the console script is not installed beside {sys.executable}")
    backbone = mobilenetv3.MobileNetV3SmallBackbone(input_shape=(64, 64, 3))
    mobilenetv3.MobileNetV3ImageClassifier(backbone, 3).save_to_preset(tmp_path / "tiny")
    command = [str(SCRIPT), "benchmark", "--preset", str(tmp_path / "tiny"), "--runtimes", "keras", "onnxruntime",
               "--runs", "3", "--batch", "2"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path,
                            env={**os.environ, "KERAS_BACKEND": "tensorflow"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr
    out = result.stdout
    assert "exporting to onnx (NCHW, 64x64)" in out and "timing keras" in out  # progress lines
    assert re.search(r"^Machine: .+, \d+ cores; load average \(1/5/15 min\): [\d.]+, ", out, re.M), out
    assert "| runtime | input | batch 1 latency (ms) | batch 1 img/s | batch N img/s (N) | vs keras (b1 / bN) |" in out
    assert re.search(r"^\| keras \| NHWC 64x64 \| [\d.]+ \| \d+ \| \d+ \(2\) \| 1\.00x / 1\.00x \|", out, re.M), out
    assert re.search(r"^\| onnxruntime \| NCHW 64x64 \| [\d.]+ \| \d+ \| \d+ \(2\) \| [\d.]+x / [\d.]+x \|", out,
                     re.M), out


@pytest.mark.parametrize("flags", [["--models", "small"], ["--cases", "timm-eager"], ["--rounds", "3"],
                                   ["--system-malloc"], ["--out", "results"], ["--calibration", "images"]])
def test_peer_comparison_flags_point_to_the_checkout_script(flags, capsys):
    assert cli.main(["benchmark", "--preset", "mobilenet_v3_small", *flags]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"mobilenetv3 benchmark: error: {flags[0]} belongs to the peer comparison")
    assert f"`python benchmarks/benchmark.py {flags[0]} ...` from a source checkout" in line


def test_missing_preset_and_bad_counts_are_one_line_errors(capsys):
    assert cli.main(["benchmark"]) == 2
    assert "--preset is required" in capsys.readouterr().err
    assert cli.main(["benchmark", "--preset", "p", "--runs", "0"]) == 2
    assert "--runs must be at least 1; got 0." in capsys.readouterr().err
    with pytest.raises(ValueError, match="`runtimes` must be drawn from"):
        speed.unavailable_reason("tensorrt")
    assert speed.unavailable_reason("keras") is None and "keras" in speed.available_runtimes()


def test_table_gives_ratios_against_the_keras_row_and_skipped_reasons():
    def row(runtime, b1, bn):
        return {"runtime": runtime, "layout": "NHWC", "image_size": 224, "startup_s": 1.5, "batch1_ms": 1000 / b1,
                "batch1_img_s": b1, "batch": 32, "batch_img_s": bn}

    rows = [row("keras", 50.0, 100.0), row("litert", 200.0, 150.0),
            {"runtime": "openvino", "layout": "NCHW", "image_size": 224, "skipped": "export failed: x"}]
    lines = speed.speed_table(rows).splitlines()
    assert lines[2] == "| keras | NHWC 224x224 | 20.00 | 50 | 100 (32) | 1.00x / 1.00x | 1.50 |"
    assert lines[3] == "| litert | NHWC 224x224 | 5.00 | 200 | 150 (32) | 4.00x / 1.50x | 1.50 |"
    assert lines[4] == "| openvino | NCHW 224x224 | skipped: export failed: x | | | | |"
    assert "| - / - |" in speed.speed_table(rows[1:2])  # no Keras row: no ratio


def test_input_size_is_the_fixed_one_else_the_presets():
    assert speed.input_size(mobilenetv3.MobileNetV3SmallBackbone(input_shape=(96, 96, 3))) == 96
    assert speed.input_size(mobilenetv3.MobileNetV3SmallBackbone()) == 224  # dynamic input: the preset's size
