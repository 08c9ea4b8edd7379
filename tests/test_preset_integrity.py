"""`from_preset` refuses weights it cannot vouch for (issue #14, part D):
a `weights_file` whose md5 is not the registered one, `weights_file` on a
preset without weights, and preset folders whose config names a missing
weights file or one outside the folder."""

from __future__ import annotations

import dataclasses
import json
import shutil

import keras
import pytest

from mobilenetv3 import MobileNetV3Backbone, MobileNetV3ImageClassifier
from mobilenetv3 import presets as registry
from mobilenetv3.presets import folders
from mobilenetv3.weights import download

SMALL_IMAGENET = "mobilenet_v3_small_imagenet"
TF_ONLY = pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="tf-keras writes the file; needs TF")


@pytest.fixture
def other_file(tmp_path):
    path = tmp_path / "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5"
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(1000))
    return path


@pytest.mark.core
@pytest.mark.parametrize("cls,name", [(MobileNetV3Backbone, SMALL_IMAGENET),
                                      (MobileNetV3ImageClassifier, "mobilenet_v3_small_imagenet_classifier")])
def test_weights_file_md5_mismatch_names_both_hashes(cls, name, other_file):
    expected = registry.get(name).weights.md5 if name in registry.PRESETS else registry.CLASSIFIER_PRESETS[name].weights.md5
    actual = download.file_hash(other_file, "md5")
    with pytest.raises(folders.PresetError) as error:
        cls.from_preset(name, weights_file=other_file, input_shape=(32, 32, 3))
    message = str(error.value)
    assert actual in message and expected in message and "verify_weights_file=False" in message


@pytest.mark.core
def test_weights_file_on_a_preset_without_weights(other_file):
    with pytest.raises(folders.PresetError, match="has no pretrained weights"):
        MobileNetV3Backbone.from_preset("mobilenet_v3_small", weights_file=other_file)


@pytest.mark.core
def test_weights_file_missing_or_with_load_weights_false(tmp_path, other_file):
    with pytest.raises(folders.PresetError, match="is not a file"):
        MobileNetV3Backbone.from_preset(SMALL_IMAGENET, weights_file=tmp_path / "nope.h5")
    with pytest.raises(folders.PresetError, match="load_weights=False"):
        MobileNetV3Backbone.from_preset(SMALL_IMAGENET, load_weights=False, weights_file=other_file)


@TF_ONLY
def test_weights_file_with_the_registered_md5_loads(tmp_path, monkeypatch):
    from tests.keras_applications_oracle import write_file

    path = write_file(tmp_path / "small.h5", "small", include_top=False)
    preset = registry.PRESETS[SMALL_IMAGENET]
    registered = dataclasses.replace(preset.weights, md5=download.file_hash(path, "md5"))
    monkeypatch.setitem(registry.PRESETS, SMALL_IMAGENET, dataclasses.replace(preset, weights=registered))
    checked = MobileNetV3Backbone.from_preset(SMALL_IMAGENET, weights_file=path)
    monkeypatch.setitem(registry.PRESETS, SMALL_IMAGENET, preset)
    unchecked = MobileNetV3Backbone.from_preset(SMALL_IMAGENET, weights_file=path, verify_weights_file=False)
    for a, b in zip(checked.get_weights(), unchecked.get_weights()):
        assert (a == b).all()


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("saved") / "preset"
    MobileNetV3Backbone(**registry.get("mobilenet_v3_small").config, input_shape=(32, 32, 3)).save_to_preset(folder)
    return folder


def _folder(tmp_path, saved, weights_value):
    folder = tmp_path / "preset"
    shutil.copytree(saved, folder)
    spec = json.loads((folder / "config.json").read_text())
    spec["weights"] = weights_value
    (folder / "config.json").write_text(json.dumps(spec))
    return folder


@pytest.mark.core
@pytest.mark.parametrize("value", ["../x.weights.h5", "/tmp/x.weights.h5", "sub/../../x.weights.h5", 5, ""])
def test_folder_weights_outside_the_folder_refused(tmp_path, saved, value):
    (tmp_path / "x.weights.h5").write_bytes(b"")
    folder = _folder(tmp_path, saved, value)
    with pytest.raises(folders.PresetError, match='"weights"'):
        MobileNetV3Backbone.from_preset(folder)


@pytest.mark.core
def test_folder_config_naming_a_missing_weights_file(tmp_path, saved):
    folder = _folder(tmp_path, saved, "model.weights.h5")
    (folder / "model.weights.h5").unlink()
    with pytest.raises(folders.PresetError, match="has no weights file model.weights.h5"):
        MobileNetV3Backbone.from_preset(folder)
    assert MobileNetV3Backbone.from_preset(folder, load_weights=False).count_params() > 0
