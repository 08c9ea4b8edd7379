"""keras-hub integration: our backbone inside keras-hub's tasks and presets."""

from __future__ import annotations

import re
import subprocess
import sys

import keras
import numpy as np
import pytest

from tests.conftest import ROOT

keras_hub = pytest.importorskip("keras_hub")

from keras_hub.src.tests import test_case as hub_test_case  # noqa: E402

from mobilenetv3 import MobileNetV3Backbone  # noqa: E402
from mobilenetv3.keras_hub import MobileNetV3HubBackbone, MobileNetV3HubImageClassifier  # noqa: E402

TINY = dict(
    stackwise_expansion=[1, 4, 3, 6],
    stackwise_filters=[8, 16, 16, 24],
    stackwise_kernel_size=[3, 3, 5, 5],
    stackwise_stride=[2, 2, 2, 2],
    stackwise_se_ratio=[0.25, None, 0.25, 0.25],
    stackwise_activation=["relu", "relu", "hard_swish", "hard_swish"],
    include_rescaling=True,
)
TINY_OUTPUT = (2, 1, 1, 144)  # 32 / 32 = 1; make_divisible(24 * 6)
TINY_LEVELS = {"P1": (16, 16), "P2": (8, 8), "P3": (4, 4), "P4": (2, 2), "P5": (1, 1)}

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


@pytest.mark.core
def test_keras_hub_task_on_the_plain_backbone_is_refused_in_one_line(tmp_path) -> None:
    # What a keras-cv user tries first: keras-hub's task on our plain backbone.
    # keras-hub cannot load such a folder back (config.json must name a
    # keras-hub Backbone), so saving it is refused, pointing to the hub class.
    backbone = MobileNetV3Backbone(**TINY)
    classifier = keras_hub.models.ImageClassifier(backbone=backbone, num_classes=2)
    one_line = r"^`MobileNetV3Backbone` is not a keras-hub backbone: .*MobileNetV3HubBackbone[^\n]*$"
    with pytest.raises(TypeError, match=one_line):
        classifier.save_to_preset(str(tmp_path / "task"), max_shard_size=None)
    with pytest.raises(TypeError, match=one_line):
        backbone.save_to_preset(str(tmp_path / "backbone"), max_shard_size=1)
    assert not (tmp_path / "backbone").exists()
    with pytest.raises(TypeError, match="unknown keyword argument `shard_size`"):
        backbone.save_to_preset(str(tmp_path / "backbone"), shard_size=1)
    # The hint works: the same weights on the hub class, which keras-hub saves.
    hub = MobileNetV3HubBackbone.from_config(backbone.get_config())
    hub.set_weights(backbone.get_weights())
    MobileNetV3HubImageClassifier(backbone=hub, num_classes=2).save_to_preset(str(tmp_path / "hub"))
    restored = keras_hub.models.ImageClassifier.from_preset(str(tmp_path / "hub"))
    images = np.random.default_rng(0).uniform(0, 255, (1, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(restored.backbone.predict(images, verbose=0), backbone.predict(images, verbose=0))
    backbone.save_to_preset(str(tmp_path / "ours"))  # this package's own folder, as before
    assert (tmp_path / "ours" / "model.weights.h5").is_file()


# -- keras-hub's own test helpers, as keras-hub runs them on its models -------
#
# `keras_hub.src.tests.test_case.TestCase` is what keras-hub's own model tests
# subclass (`run_vision_backbone_test`, `run_backbone_test`, `run_task_test`,
# `run_preset_test`, `run_model_saving_test`). A tiny architecture (4 blocks,
# 32x32 images); every one passes on TensorFlow, JAX and PyTorch. The `core`
# ones (a few seconds each) run in CI on all three, the `slow` ones (20-40 s
# of JAX compiling) on TensorFlow.



class KerasHubHelpers(hub_test_case.TestCase):
    def setUp(self) -> None:
        super().setUp()
        # keras-hub's channels-first check sets the global data format and
        # restores it only when it passes: restore it whatever happens.
        self.addCleanup(keras.config.set_image_data_format, keras.config.image_data_format())
        keras.utils.set_random_seed(0)
        self.init_kwargs = {**TINY, "image_shape": (32, 32, 3)}
        # A backend tensor, as keras-hub's tests pass (Keras' `compute_output_spec`,
        # which the mixed-precision check calls, fails on a numpy array
        # through a `Rescaling` layer, on every backend: a Keras quirk).
        self.images = keras.ops.convert_to_tensor(np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)), "float32")

    def classifier_kwargs(self) -> dict:
        converter = keras_hub.layers.ImageConverter(image_size=(32, 32))
        return {
            "backbone": MobileNetV3HubBackbone(**self.init_kwargs),
            "num_classes": 2,
            "activation": "softmax",
            "preprocessor": keras_hub.models.ImageClassifierPreprocessor(image_converter=converter),
        }

    @pytest.mark.slow  # 20-30 s on JAX (compiles)
    def test_vision_backbone(self) -> None:
        # keras-hub's own MobileNet and DenseNet tests skip the channels-first
        # run too; `test_channels_first_is_refused_clearly` covers it.
        self.run_vision_backbone_test(
            cls=MobileNetV3HubBackbone,
            init_kwargs=self.init_kwargs,
            input_data=self.images,
            expected_output_shape=TINY_OUTPUT,
            expected_pyramid_output_keys=list(TINY_LEVELS),
            expected_pyramid_image_sizes=list(TINY_LEVELS.values()),
            run_data_format_check=False,
        )

    @pytest.mark.core
    def test_channels_first_is_refused_clearly(self) -> None:
        # The helper's channels-first run (what it does for ResNet): the
        # backbone is channels-last only and says so in one line.
        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            if not tf.config.list_physical_devices("GPU"):
                self.skipTest("keras-hub's helper runs no channels-first check on TensorFlow CPU")
        with pytest.raises(ValueError, match=r"^`MobileNetV3HubBackbone` takes channels-last images.*image_data_format"):
            self.run_vision_backbone_test(
                cls=MobileNetV3HubBackbone,
                init_kwargs=self.init_kwargs,
                input_data=self.images,
                expected_output_shape=TINY_OUTPUT,
                run_mixed_precision_check=False,
                run_quantization_check=False,
                run_data_format_check=True,
            )
        # The helper left the global format at channels-first (it restores
        # it only on success); the cleanup from setUp puts it back.
        self.assertEqual(keras.config.image_data_format(), "channels_first")
        self.doCleanups()
        self.assertEqual(keras.config.image_data_format(), "channels_last")
        MobileNetV3HubBackbone(**self.init_kwargs)

    @pytest.mark.slow  # 20-30 s on JAX (compiles)
    def test_backbone_dynamic_size(self) -> None:
        self.run_backbone_test(
            cls=MobileNetV3HubBackbone,
            init_kwargs=TINY,
            input_data=keras.ops.convert_to_tensor(np.random.default_rng(1).uniform(0, 255, (2, 65, 97, 3)), "float32"),
            expected_output_shape=(2, 3, 4, 144),
        )

    @pytest.mark.core
    def test_backbone_saved_model(self) -> None:
        self.run_model_saving_test(cls=MobileNetV3HubBackbone, init_kwargs=self.init_kwargs, input_data=self.images)

    @pytest.mark.core
    def test_backbone_preset(self) -> None:
        backbone = MobileNetV3HubBackbone(**self.init_kwargs)
        folder = self.get_temp_dir()
        backbone.save_to_preset(folder)
        self.run_preset_test(
            cls=MobileNetV3HubBackbone,
            preset=folder,
            input_data=self.images,
            expected_output=backbone(self.images),
            expected_output_shape=TINY_OUTPUT,
        )
        # keras-hub's `image_shape` override, through keras-hub's loader too.
        for cls in (MobileNetV3HubBackbone, keras_hub.models.Backbone):
            resized = cls.from_preset(folder, image_shape=(64, 48, 3))
            self.assertEqual(resized.image_shape, (64, 48, 3))

    @pytest.mark.slow  # 40 s on JAX (fits)
    def test_task(self) -> None:
        self.run_task_test(
            cls=MobileNetV3HubImageClassifier,
            init_kwargs=self.classifier_kwargs(),
            train_data=(self.images, np.array([0, 1])),
            expected_output_shape=(2, 2),
        )

    @pytest.mark.core
    def test_task_saved_model(self) -> None:
        self.run_model_saving_test(
            cls=MobileNetV3HubImageClassifier, init_kwargs=self.classifier_kwargs(), input_data=self.images
        )

    @pytest.mark.slow  # 20-30 s on JAX (compiles)
    def test_task_preset(self) -> None:
        classifier = MobileNetV3HubImageClassifier(**self.classifier_kwargs())
        folder = self.get_temp_dir()
        classifier.save_to_preset(folder)
        expected = classifier.predict(self.images, verbose=0)
        for cls in (MobileNetV3HubImageClassifier, keras_hub.models.ImageClassifier):
            self.run_preset_test(cls=cls, preset=folder, input_data=self.images, expected_output_shape=(2, 2))
            self.assertAllClose(cls.from_preset(folder).predict(self.images, verbose=0), expected)
