"""Full disks (issue #25): preset writes and exports into a real tiny tmpfs.

Each write fails with one `DiskFullError` line naming the path being written
and the full disk; the previous copy stays as it was and nothing is left
behind (no staging folder, no half-written file); the interpreter exits
cleanly afterwards (HDF5 used to segfault when its half-written file was
collected). The tmpfs is mounted for each test (needs root; skipped with the
reason where it cannot be mounted) and unmounted afterwards.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import keras
import pytest

import mobilenetv3
from mobilenetv3.core import utils

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="mounts a tmpfs (Linux)")
TINY = "256k"  # a 32x32 MobileNetV3-Small backbone is ~4 MB of weights
SUBPROCESS_TIMEOUT = 300
JAX_ENV = {"CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "3"}


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 256 KiB tmpfs, unmounted afterwards."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TINY}", "tmpfs", str(mount)],
                            capture_output=True, text=True)
    if result.returncode:
        pytest.skip(f"cannot mount a {TINY} tmpfs (needs root): {result.stderr.strip() or result.returncode}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.fixture(scope="module")
def backbone() -> keras.Model:
    return mobilenetv3.MobileNetV3SmallBackbone(input_shape=(32, 32, 3))


def _previous_copy(folder: Path, name: str) -> Path:
    """A small stand-in for an earlier export at `folder/name` (a file, or
    a folder when `name` has no suffix)."""
    path = folder / name
    if path.suffix:
        path.write_text("previous")
    else:
        path.mkdir()
        (path / "config.json").write_text("previous")
    return path


def _assert_previous_intact(path: Path) -> None:
    assert (path if path.is_file() else path / "config.json").read_text() == "previous"
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name], "something was left behind"


def _assert_one_line(error: BaseException, path: Path, disk: Path) -> None:
    message = f"{type(error).__name__}: {error}"
    assert "\n" not in message and "No space left on device" in message, message[:2000]
    assert str(path) in message and str(disk) in message, message
    assert type(error).__name__ == "DiskFullError" and isinstance(error, OSError), message


def test_save_to_preset_on_a_full_disk_names_it_and_exits_cleanly(tiny_disk: Path) -> None:
    # A subprocess: before the fix the interpreter segfaulted (rc 139) once
    # the error's traceback (holding the half-written HDF5 file) was dropped.
    target = _previous_copy(tiny_disk, "preset")
    script = (
        "import sys, mobilenetv3\n"
        "backbone = mobilenetv3.MobileNetV3SmallBackbone(input_shape=(32, 32, 3))\n"
        "try:\n"
        "    backbone.save_to_preset(sys.argv[1])\n"
        "except BaseException as error:\n"
        "    print(type(error).__name__ + ':', error)\n"
    )
    result = subprocess.run([sys.executable, "-c", script, str(target)], capture_output=True, text=True,
                            timeout=SUBPROCESS_TIMEOUT, env={**os.environ, **JAX_ENV})
    assert result.returncode == 0, f"rc {result.returncode}: {result.stderr[-2000:]}"
    assert "dealloc" not in result.stderr, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("DiskFullError: No space left on device writing"), result.stdout
    assert str(target) in lines[0] and str(tiny_disk) in lines[0]
    _assert_previous_intact(target)


EXPORTS = [("onnx", "model.onnx"), ("tflite", "model.tflite"), ("saved_model", "saved"), ("openvino", "model.xml")]


@pytest.mark.parametrize("format,name", EXPORTS)
def test_export_to_a_full_disk_names_it(tiny_disk: Path, backbone: keras.Model, format: str, name: str) -> None:
    from mobilenetv3.export import EXPORTERS, export_model

    if EXPORTERS[format].needs_tensorflow and keras.backend.backend() != "tensorflow":
        pytest.skip(f"{format} export needs the TensorFlow backend")
    target = _previous_copy(tiny_disk, name)
    with pytest.raises(OSError) as info:
        export_model(backbone, target, format)
    # OpenVINO's IR is two files: the .bin (written first) is the one named
    _assert_one_line(info.value, target.with_suffix(".bin") if format == "openvino" else target, tiny_disk)
    _assert_previous_intact(target)


@pytest.mark.parametrize("format,name", [("tflite", "model.tflite"), ("saved_model", "saved")])
def test_export_with_a_full_tmpdir_names_it(tmp_path: Path, tiny_disk: Path, backbone: keras.Model,
                                            monkeypatch: pytest.MonkeyPatch, format: str, name: str) -> None:
    from mobilenetv3.export import export_model

    if keras.backend.backend() != "tensorflow":
        pytest.skip(f"{format} export needs the TensorFlow backend")
    monkeypatch.setattr(tempfile, "tempdir", str(tiny_disk))
    out = tmp_path / "out"
    out.mkdir()
    try:
        export_model(backbone, out / name, format)
    except OSError as error:
        _assert_one_line(error, tiny_disk / utils.SCRATCH_DIR, tiny_disk)
        assert "TMPDIR" in str(error)
        assert list(out.iterdir()) == [] and list(tiny_disk.iterdir()) == []
    else:  # a format that does not stage in TMPDIR has nothing to fail on
        assert (out / name).exists()


def test_export_cli_to_a_full_disk_prints_one_line(tmp_path: Path, tiny_disk: Path, backbone: keras.Model) -> None:
    preset = tmp_path / "preset"
    backbone.save_to_preset(str(preset))
    target = tiny_disk / "model.onnx"
    result = subprocess.run(
        [sys.executable, "-m", "mobilenetv3", "export", str(preset), str(target), "--format", "onnx"],
        capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT, env={**os.environ, **JAX_ENV},
    )
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr[-3000:]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert lines[0].startswith("mobilenetv3 export: error: No space left on device writing")
    assert str(target) in lines[0]
    assert list(tiny_disk.iterdir()) == []


def test_train_with_out_on_a_full_disk_keeps_the_weights_and_says_where(tmp_path: Path, tiny_disk: Path) -> None:
    # Before: h5py `__dealloc__` errors, then a segfault (rc 139), and the
    # trained classifier was lost. Now: exit 2, one line naming the full disk
    # and the folder under TMPDIR that holds the classifier.
    from mobilenetv3.datasets import make_classification_folder

    data = make_classification_folder(tmp_path / "data", classes=("circle", "square"), per_class=6, size=32)
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    out = tiny_disk / "model"
    result = subprocess.run(
        [sys.executable, "-m", "mobilenetv3", "train", str(data), "--out", str(out), "--preset", "mobilenet_v3_small",
         "--no-weights", "--image-size", "32", "--batch-size", "4", "--head-epochs", "1", "--fine-tune-epochs", "0",
         "--validation-split", "0.34", "--quiet"],
        capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT, env={**os.environ, **JAX_ENV, "TMPDIR": str(temporary)},
    )
    assert result.returncode == 2, f"rc {result.returncode}: {result.stderr[-3000:]}"
    assert "Traceback" not in result.stderr and "dealloc" not in result.stderr, result.stderr[-3000:]
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith(f"mobilenetv3 train: error: No space left on device writing {str(out)!r}"), line
    rescued = next(temporary.glob("mobilenetv3-unsaved-*/model"))
    assert f"written to {str(rescued)!r} instead" in line
    assert list(tiny_disk.iterdir()) == []
    model = mobilenetv3.MobileNetV3ImageClassifier.from_preset(str(rescued))
    assert model.num_classes == 2
