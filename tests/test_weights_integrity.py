"""The loader contract's checks, one clear error each (issue #14, part C);
the sweep over every format and corruption is tests/test_weights_corruption.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision

from mobilenetv3 import weights
from mobilenetv3.presets import conversion as converter
from mobilenetv3.weights import canonical


@pytest.fixture(scope="module")
def torchvision_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("tv") / "mobilenet_v3_small.pth"
    torch.save(torchvision.models.mobilenet_v3_small(weights=None).state_dict(), path)
    return path


def test_crc_mismatch_in_a_torch_archive(torchvision_file, tmp_path):
    data = bytearray(torchvision_file.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside a tensor's bytes: torch.load alone would not notice
    path = tmp_path / "flipped.pth"
    path.write_bytes(bytes(data))
    for reader in ("torchvision", "timm"):
        with pytest.raises(canonical.WeightsFileError, match="CRC32 of archive member"):
            weights.read(str(path), reader, **({"variant": "mobilenetv3_small_100"} if reader == "timm" else {}))


def test_single_tensor_and_pickles_are_clear(tmp_path):
    torch.save(torch.zeros(3, 3), tmp_path / "tensor.pth")
    with pytest.raises(canonical.WeightsFileError, match="single tensor of shape \\(3, 3\\)"):
        weights.read(str(tmp_path / "tensor.pth"), "torchvision")
    torch.save({"a": torch.nn.Linear(2, 2)}, tmp_path / "module.pth")
    for reader in ("torchvision", "timm"):
        with pytest.raises(canonical.WeightsFileError, match="never unpickles") as error:
            weights.read(str(tmp_path / "module.pth"), reader, **({"tf_padding": False} if reader == "timm" else {}))
        assert "weights_only=False" not in str(error.value)


def test_missing_tensor_is_a_mismatch_not_a_key_error(torchvision_file, tmp_path):
    state = torch.load(torchvision_file, weights_only=True)
    del state["features.3.block.1.0.weight"]
    torch.save(state, tmp_path / "dropped.pth")
    with pytest.raises(weights.WeightsMismatchError, match="features.3.block.1.0.weight"):
        converter.load(str(tmp_path / "dropped.pth"), "torchvision")


def test_options_that_do_not_apply(torchvision_file):
    with pytest.raises(ValueError, match="\\['variant'\\] do not apply to torchvision files"):
        converter.load(str(torchvision_file), "auto", variant="mobilenetv3_small_100")


@pytest.mark.parametrize(
    "value,match",
    [(np.nan, "NaN/Inf"), (np.inf, "NaN/Inf"), (-1.0, "negative values"), (1e9, "implausible")],
)
def test_check_tensors(value, match):
    tensors = {"Conv/kernel": np.zeros((3, 3, 3, 16), "float32"),
               "Conv_BatchNorm/moving_variance": np.ones(16, "float32")}
    tensors["Conv_BatchNorm/moving_variance" if value in (-1.0, 1e9) else "Conv/kernel"].flat[3] = value
    with pytest.raises(canonical.WeightsFileError, match=match):
        canonical.check_tensors(tensors, "test file")


def test_bare_keras_weights_file_says_what_it_needs(tmp_path):
    path = tmp_path / "model.weights.h5"
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(100))
    with pytest.raises(ValueError, match="without the config.json of its preset folder"):
        converter.resolve_format(str(path))
