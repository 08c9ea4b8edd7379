"""Atomic writes under kill -9 and concurrent writers (issue #14, part A).

The writers are real processes (tests/atomic_worker.py, which loads only
`mobilenetv3.core.utils` and `download`, so it starts fast) killed with SIGKILL at
random points or run several at once; afterwards nothing but the complete
result may be left in the destination's folder.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mobilenetv3.core import utils
from mobilenetv3.weights import download

WORKER = Path(__file__).with_name("atomic_worker.py")
sys.path.insert(0, str(WORKER.parent))
import atomic_worker  # noqa: E402

pytestmark = pytest.mark.skipif(os.name != "posix", reason="SIGKILL and fork semantics are POSIX")


def _start(*args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(WORKER), *args], env={**os.environ, **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _tokens_of_dir(path: Path) -> set[bytes]:
    names = sorted(p.name for p in path.iterdir())
    assert names == [f"part{i}.bin" for i in range(atomic_worker.FILES)], names
    parts = [p.read_bytes() for p in sorted(path.iterdir())]
    assert all(len(p) == atomic_worker.FILE_BYTES for p in parts)
    return {p.rstrip(b"x") for p in parts}


def _assert_complete_dir(path: Path) -> None:
    assert path.is_dir() and not path.is_symlink()
    assert len(_tokens_of_dir(path)) == 1, "files from different writes mixed"


def _assert_complete_file(path: Path) -> None:
    data = path.read_bytes()
    size = atomic_worker.FILE_BYTES
    assert len(data) == atomic_worker.FILES * size
    assert len({data[i:i + size] for i in range(0, len(data), size)}) == 1


def _only(folder: Path, *names: str) -> None:
    assert sorted(p.name for p in folder.iterdir()) == sorted(names)


def _kill_repeatedly(mode: str, target: Path, kills: int) -> None:
    chooser = random.Random(14)
    for _ in range(kills):
        process = _start(mode, str(target), "1000000")
        time.sleep(chooser.uniform(0.05, 0.4))
        process.send_signal(signal.SIGKILL)
        process.wait()
        assert process.returncode == -signal.SIGKILL, process.stderr.read()


@pytest.mark.parametrize("mode", ["write-dir", "write-file"])
def test_killed_writers_leave_nothing_behind(tmp_path: Path, mode: str) -> None:
    target = tmp_path / "preset"
    _kill_repeatedly(mode, target, kills=12)
    # The kills leave at most the one staging folder, with dead writers' parts.
    assert {p.name for p in tmp_path.iterdir()} <= {"preset", utils.STAGING_DIR}
    write = atomic_worker.write_dir if mode == "write-dir" else atomic_worker.write_file
    write(str(target), "final")
    _only(tmp_path, "preset")
    (_assert_complete_dir if mode == "write-dir" else _assert_complete_file)(target)


def test_clean_staging_removes_dead_writers_only(tmp_path: Path) -> None:
    root = tmp_path / utils.STAGING_DIR
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    host = utils._host()
    (root / f"{dead.stdout.strip()}@{host}-preset-abc").mkdir(parents=True)
    alive = root / f"{os.getpid()}@{host}-preset-def"
    alive.mkdir()
    elsewhere = root / f"{dead.stdout.strip()}@otherhost-preset-ghi"  # another host or container
    elsewhere.mkdir()
    removed = utils.clean_staging(tmp_path)
    assert [p.name for p in removed if p.parent == root] == [f"{dead.stdout.strip()}@{host}-preset-abc"]
    assert alive.is_dir() and elsewhere.is_dir()
    old = time.time() - utils.STALE_AFTER_S - 10
    os.utime(elsewhere, (old, old))
    assert [p.name for p in utils.clean_staging(tmp_path) if p.parent == root] == [elsewhere.name]


def test_concurrent_writers_never_crash(tmp_path: Path) -> None:
    target = tmp_path / "preset"
    processes = [_start("write-dir", str(target), "25") for _ in range(4)]
    for process in processes:
        _, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
    _only(tmp_path, "preset")
    _assert_complete_dir(target)


def test_concurrent_fetch_over_corrupt_cache(tmp_path: Path) -> None:
    source = tmp_path / "weights.bin"
    source.write_bytes(os.urandom(1 << 20))
    md5 = hashlib.md5(source.read_bytes()).hexdigest()
    cache = tmp_path / "cache"
    for round_ in range(3):
        cache.mkdir(exist_ok=True)
        (cache / "weights.bin").write_bytes(b"corrupt" * (round_ + 1))
        processes = [_start("fetch", source.as_uri(), md5, str(cache)) for _ in range(4)]
        for process in processes:
            _, err = process.communicate(timeout=120)
            assert process.returncode == 0, err
        _only(cache, "weights.bin")
        assert (cache / "weights.bin").read_bytes() == source.read_bytes()


def test_atomic_path_onto_symlink_leaves_no_old(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (real / "a").write_text("old")
    link = tmp_path / "link_dir"
    link.symlink_to(real, target_is_directory=True)
    with utils.atomic_path(link, directory=True) as staging:
        staging.mkdir()
        (staging / "a").write_text("new")
    _only(tmp_path, "real", "link_dir")
    assert not link.is_symlink() and (link / "a").read_text() == "new"
    assert (real / "a").read_text() == "old"  # the link is replaced, not followed


def test_failed_write_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="boom"), utils.atomic_path(tmp_path / "out", directory=True) as staging:
        staging.mkdir()
        raise RuntimeError("boom")
    _only(tmp_path)


def test_scratch_dir_removed_and_stale_ones_cleaned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)
    stale = tmp_path / utils.SCRATCH_DIR / f"999999999@{utils._host()}-tflite-x"
    stale.mkdir(parents=True)
    with utils.scratch_dir("tflite") as folder:
        assert folder.parent == tmp_path / utils.SCRATCH_DIR and not stale.exists()
    _only(tmp_path)


@pytest.mark.parametrize("name", ["../../x", "/etc/passwd", "a/b", "..", ".", "", "a\\b"])
def test_fetch_refuses_names_that_are_not_plain(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv("MOBILENETV3_CACHE", str(tmp_path / "cache"))
    with pytest.raises(ValueError, match="`filename` must be a plain file name"):
        download.fetch((tmp_path / "x").as_uri(), filename=name)
    assert not (tmp_path / "x").exists()


def test_fetch_cache_entry_that_is_a_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOBILENETV3_CACHE", str(tmp_path))
    (tmp_path / "w.bin").mkdir()
    with pytest.raises(download.DownloadError, match="is a folder"):
        download.fetch("file:///nonexistent/w.bin")


@pytest.mark.slow
@pytest.mark.parametrize("kind,name,kills", [("preset", "preset", 2), ("saved_model", "saved", 2), ("tflite", "m.tflite", 2)])
def test_killed_real_writers_leave_nothing_after_cleanup(tmp_path, monkeypatch, kind, name, kills):
    """kill -9 during save_to_preset / export (real package, real processes)."""
    scratch = tmp_path / "tmpdir"
    scratch.mkdir()
    out = tmp_path / "out"
    chooser = random.Random(kills)
    for _ in range(kills):
        process = _start("keras", kind, str(out / name), env={"TMPDIR": str(scratch), "KERAS_BACKEND": "tensorflow"})
        assert process.stdout.readline().strip() == "ready", process.stderr.read()
        time.sleep(chooser.uniform(0.2, 3.0))
        process.send_signal(signal.SIGKILL)
        process.wait()
    monkeypatch.setattr("tempfile.tempdir", str(scratch))
    if kind == "preset":  # the next write cleans up and succeeds
        from mobilenetv3 import MobileNetV3Backbone, presets

        config = presets.get("mobilenet_v3_small").config
        MobileNetV3Backbone(**config, input_shape=(32, 32, 3)).save_to_preset(out / name)
        _only(out, name)
        assert MobileNetV3Backbone.from_preset(out / name).count_params() > 0
    utils.clean_staging(out)  # the documented cleanup
    assert not out.exists() or {p.name for p in out.iterdir()} <= {name}
    # TensorFlow's autograph leaves its own __autograph_generated_file*.py in $TMPDIR.
    assert not (scratch / utils.SCRATCH_DIR).exists()
    assert all(p.name.startswith("__autograph_generated_file") for p in scratch.iterdir())
