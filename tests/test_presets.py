"""from_preset and save_to_preset: names, folders, handles, offline errors."""

from __future__ import annotations

import json
import os

import pytest
from helpers import images, max_abs_diff, randomize

import mobilenetv3
from mobilenetv3 import MobileNetV3Backbone
from mobilenetv3.weights import download


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MOBILENETV3_CACHE", str(tmp_path / "cache"))


@pytest.mark.core
def test_registry_preset_with_overrides():
    model = MobileNetV3Backbone.from_preset(
        "mobilenet_v3_large", input_shape=(128, 160, 3), include_rescaling=False, name="lg"
    )
    assert model.name == "lg" and not model.include_rescaling
    assert tuple(model.input_shape) == (None, 128, 160, 3)
    assert model.count_params() == 2_996_352


@pytest.mark.core
def test_save_to_preset_round_trip(tmp_path):
    model = MobileNetV3Backbone.from_preset("mobilenet_v3_small")
    randomize(model)
    model.save_to_preset(tmp_path / "preset")
    assert sorted(os.listdir(tmp_path / "preset")) == ["config.json", "metadata.json", "model.weights.h5", "preprocessor.json"]
    spec = json.loads((tmp_path / "preset" / "config.json").read_text())
    assert spec["registered_name"] == "mobilenetv3>MobileNetV3Backbone"
    assert spec["weights"] == "model.weights.h5"
    again = MobileNetV3Backbone.from_preset(str(tmp_path / "preset"))
    x = images(2, 96, 128, scale=255)
    assert max_abs_diff(model(x), again(x)) == 0.0
    random = MobileNetV3Backbone.from_preset(str(tmp_path / "preset"), load_weights=False)
    assert max_abs_diff(model(x), random(x)) > 1e-3


@pytest.mark.core
def test_save_to_preset_overwrites_atomically(tmp_path, monkeypatch):
    model = MobileNetV3Backbone.from_preset("mobilenet_v3_small")
    target = tmp_path / "preset"
    model.save_to_preset(target)
    model.save_to_preset(target)  # replacing an existing preset works
    assert sorted(os.listdir(tmp_path)) == ["preset"]  # no temp folders left

    class Boom(RuntimeError):
        pass

    def fail(*args, **kwargs):
        raise Boom("disk full")

    from mobilenetv3.core import keras_internals

    monkeypatch.setattr(keras_internals, "weights_h5_bytes", fail)  # the weights fail after config.json is staged
    with pytest.raises(Boom):
        model.save_to_preset(tmp_path / "other")
    assert sorted(os.listdir(tmp_path)) == ["preset"]  # nothing half-written


def test_missing_files_in_preset_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"has no config.json"):
        MobileNetV3Backbone.from_preset(str(tmp_path / "empty"))
    model = MobileNetV3Backbone.from_preset("mobilenet_v3_small")
    model.save_to_preset(tmp_path / "p")
    os.remove(tmp_path / "p" / "model.weights.h5")
    with pytest.raises(ValueError, match=r"has no weights file model.weights.h5"):
        MobileNetV3Backbone.from_preset(str(tmp_path / "p"), load_weights=True)
    (tmp_path / "p" / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"not a valid preset config"):
        MobileNetV3Backbone.from_preset(str(tmp_path / "p"))


def test_truncated_weights_in_preset_folder(tmp_path):
    model = MobileNetV3Backbone.from_preset("mobilenet_v3_small")
    model.save_to_preset(tmp_path / "p")
    path = tmp_path / "p" / "model.weights.h5"
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(ValueError, match=r"Could not load .*model.weights.h5"):
        MobileNetV3Backbone.from_preset(str(tmp_path / "p"))


def test_imagenet_preset_offline_gives_one_clear_error(tmp_path):
    with pytest.raises(download.DownloadError) as info:
        MobileNetV3Backbone.from_preset("mobilenet_v3_small_imagenet")
    message = str(info.value)
    assert "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v3/" in message
    assert "weights_file=" in message and str(tmp_path / "cache") in message
    assert info.value.__cause__ is None and info.value.__suppress_context__
    assert not list((tmp_path / "cache").glob("*"))  # nothing half-written in the cache


@pytest.mark.parametrize(
    "handle", ["kaggle://keras/mobilenetv3/keras/mobilenet_v3_small/2", "hf://keras/mobilenet_v3_small"]
)
def test_hub_handles_offline_give_one_clear_error(handle, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError, match=r"Could not download preset .*local path") as info:
        MobileNetV3Backbone.from_preset(handle)
    assert handle in str(info.value)


def test_download_verifies_hash_and_writes_atomically(tmp_path):
    source = tmp_path / "weights.bin"
    source.write_bytes(b"x" * 5000)
    md5 = download.file_hash(source, "md5")
    path = download.fetch(source.as_uri(), md5=md5)
    assert path.read_bytes() == source.read_bytes()
    assert download.fetch(source.as_uri(), md5=md5) == path  # cached, re-verified
    path.write_bytes(b"x" * 10)  # a corrupted cache entry is replaced
    assert download.fetch(source.as_uri(), md5=md5).read_bytes() == source.read_bytes()
    other = tmp_path / "other.bin"
    other.write_bytes(b"y" * 5000)
    with pytest.raises(download.DownloadError, match=r"md5 is .* expected "):
        download.fetch(other.as_uri(), md5=md5)
    assert not (download.cache_dir() / "other.bin").exists()
    assert not [p for p in download.cache_dir().iterdir() if p.name.endswith(".part")]


def test_classifier_preset_wraps_backbone_preset():
    model = mobilenetv3.MobileNetV3ImageClassifier.from_preset("mobilenet_v3_small", num_classes=7)
    assert tuple(model(images(1, 64, 64, scale=255)).shape) == (1, 7)
    with pytest.raises(ValueError, match="num_classes"):
        mobilenetv3.MobileNetV3ImageClassifier.from_preset("mobilenet_v3_small")


def test_file_is_not_a_preset(tmp_path):
    path = tmp_path / "x.h5"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match=r"is a file") as info:
        MobileNetV3Backbone.from_preset(str(path))
    # The message says what a preset is, and the file is left as it was.
    assert "registered name" in str(info.value) and "config.json" in str(info.value)
    assert path.read_bytes() == b""
