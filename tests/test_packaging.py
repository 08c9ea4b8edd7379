"""The package as a user installs it: `python -m build` gives an sdist and a
wheel that pass `twine check`; the wheel carries the package data and the
licence, and installed on its own (`pip install --no-deps --target T`) its
console script runs `info` and `predict` from a folder outside the checkout,
importing the installed copy, not this one."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
CLASS_NAMES = ["circle", "square", "triangle"]


def _run(argv: list[str], cwd: Path, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    result = subprocess.run(argv, capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(argv)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An sdist and a wheel built from a copy of the checkout (no network: `--no-isolation`)."""
    pytest.importorskip("build")
    pytest.importorskip("twine")
    work = tmp_path_factory.mktemp("packaging")
    source = work / "source"  # a copy, so that the build leaves nothing in the checkout
    shutil.copytree(ROOT / "mobilenetv3", source / "mobilenetv3", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    _run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(work / "dist"), str(source)], cwd=work)
    return work / "dist"


def test_build_gives_an_sdist_and_a_wheel_that_pass_twine_check(dist: Path) -> None:
    files = sorted(p.name for p in dist.iterdir())
    assert [name.rsplit("-", 1)[-1] if name.endswith(".whl") else name for name in files] == [
        "any.whl", "mobilenetv3-0.1.0.tar.gz"], files
    result = _run([sys.executable, "-m", "twine", "check", "--strict", *map(str, dist.iterdir())], cwd=dist)
    assert result.stdout.count("PASSED") == 2, result.stdout
    (wheel,) = dist.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {p.relative_to(ROOT).as_posix() for p in (ROOT / "mobilenetv3" / "data").iterdir()}
    assert shipped and shipped <= names, shipped - names
    assert "mobilenetv3/py.typed" in names
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names), names
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert "License-Expression: Apache-2.0" in metadata


def test_installed_wheel_runs_info_and_predict_outside_the_checkout(dist: Path, tmp_path: Path) -> None:
    import keras
    import numpy as np
    from PIL import Image

    import mobilenetv3

    (wheel,) = dist.glob("*.whl")
    target = tmp_path / "site"
    _run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--target", str(target), str(wheel)],
         cwd=tmp_path)
    script = target / "bin" / "mobilenetv3"
    assert script.is_file()

    # A tiny classifier preset folder (random weights: the package ships none) and a photo.
    keras.utils.set_random_seed(0)
    backbone = mobilenetv3.MobileNetV3SmallBackbone(alpha=0.35, input_shape=(64, 64, 3))
    mobilenetv3.MobileNetV3ImageClassifier(backbone, num_classes=3, head="dense").save_to_preset(tmp_path / "tiny")
    (tmp_path / "tiny" / "labels.txt").write_text("".join(f"{name}\n" for name in CLASS_NAMES))
    pixels = np.random.default_rng(0).integers(0, 255, (90, 120, 3), dtype="uint8")
    Image.fromarray(pixels).save(tmp_path / "photo.jpg")

    user = tmp_path / "user"  # a folder outside the checkout, as a user's shell would be
    user.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(PYTHONPATH=str(target), KERAS_BACKEND="tensorflow")
    info = _run([str(script), "info", str(tmp_path / "tiny")], cwd=user, env=env)
    assert "classifier" in info.stdout.lower(), info.stdout
    # `python -m mobilenetv3` in the same environment: which copy it imports, then `predict`.
    code = ("import sys, mobilenetv3; print('FILE', mobilenetv3.__file__); "
            "from mobilenetv3.cli import main; sys.exit(main(sys.argv[1:]))")
    predict = _run([sys.executable, "-c", code, "predict", "--preset", str(tmp_path / "tiny"), str(tmp_path / "photo.jpg")],
                   cwd=user, env=env)
    imported = Path(predict.stdout.split("FILE ", 1)[1].splitlines()[0]).resolve()
    assert imported.is_relative_to(target.resolve()), imported
    assert not imported.is_relative_to(ROOT), imported
    # The default --top 5 prints each of the 3 classes once.
    assert "photo.jpg" in predict.stdout and all(name in predict.stdout for name in CLASS_NAMES), predict.stdout
    assert "Traceback" not in predict.stderr + info.stderr
