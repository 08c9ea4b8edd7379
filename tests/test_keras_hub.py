"""keras-hub integration: our backbone inside keras-hub's tasks and presets."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import ROOT

keras_hub = pytest.importorskip("keras_hub")

from mobilenetv3 import MobileNetV3Backbone  # noqa: E402
from mobilenetv3.keras_hub import MobileNetV3HubBackbone  # noqa: E402

RECIPE = re.compile(r"```python\n(# keras-hub recipe: (\w+)\n.*?)```", re.S)


def readme_recipes() -> dict[str, str]:
    """The keras-hub recipes of the docs' Tasks page (docs/tasks.md)."""
    return {name: code for code, name in RECIPE.findall((ROOT / "docs" / "tasks.md").read_text())}


def test_readme_has_the_three_recipes() -> None:
    assert sorted(readme_recipes()) == ["classifier", "detector", "segmenter"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["classifier", "segmenter", "detector"])
def test_readme_recipe_runs(name: str, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    exec(compile(readme_recipes()[name], f"README recipe {name}", "exec"), {})
    assert (tmp_path / f"hub_{name}" / "task.json").is_file()


@pytest.mark.slow
def test_is_a_keras_hub_feature_pyramid_backbone(tmp_path) -> None:
    backbone = MobileNetV3HubBackbone.from_preset("mobilenet_v3_small", load_weights=False)
    assert isinstance(backbone, keras_hub.models.FeaturePyramidBackbone)
    assert isinstance(backbone, MobileNetV3Backbone)
    assert backbone.image_shape == (None, None, 3)
    assert sorted(backbone.pyramid_outputs) == ["P1", "P2", "P3", "P4", "P5"]
    images = np.random.default_rng(0).uniform(0, 255, (1, 65, 97, 3)).astype("float32")
    expected = backbone.predict(images, verbose=0)

    backbone.save_to_preset(str(tmp_path), max_shard_size=1)
    restored = keras_hub.models.Backbone.from_preset(str(tmp_path))
    assert type(restored) is MobileNetV3HubBackbone
    assert restored.get_config() == backbone.get_config()
    np.testing.assert_array_equal(restored.predict(images, verbose=0), expected)
    # Our from_preset reads keras-hub's folder too, with overrides.
    resized = MobileNetV3HubBackbone.from_preset(str(tmp_path), input_shape=(65, 97, 3))
    assert resized.image_shape == (65, 97, 3)
    np.testing.assert_array_equal(resized.predict(images, verbose=0), expected)


@pytest.mark.slow
def test_core_does_not_import_keras_hub() -> None:
    code = "import sys, mobilenetv3, mobilenetv3.weights, mobilenetv3.presets.folders; print('keras_hub' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert result.stdout.strip() == "False"
