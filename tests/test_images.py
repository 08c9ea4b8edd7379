"""The one image reader over every mode Pillow opens (issue #14, part B).
Every image is made here with Pillow; the expected RGB is computed apart."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from mobilenetv3.core import images

GRAY = np.arange(0, 256, 16, dtype="uint8").repeat(3).reshape(4, 12)  # 4x12, 0..240


def _rgb_of_gray(gray: np.ndarray) -> np.ndarray:
    return np.repeat(gray[..., None], 3, axis=-1)


def _save(tmp_path, image: Image.Image, name: str, **kwargs) -> str:
    path = tmp_path / name
    image.save(path, **kwargs)
    return str(path)


@pytest.mark.core
def test_8bit_rgb_and_gray(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype="uint8")
    np.testing.assert_array_equal(images.read_rgb(_save(tmp_path, Image.fromarray(rgb), "a.png")), rgb)
    gray = images.read_rgb(_save(tmp_path, Image.fromarray(GRAY), "g.png"))
    np.testing.assert_array_equal(gray, _rgb_of_gray(GRAY))


@pytest.mark.core
def test_16bit_png_is_scaled_not_white(tmp_path):
    sixteen = GRAY.astype("uint16") * 257  # the 8-bit ramp in 16 bits
    path = _save(tmp_path, Image.fromarray(sixteen), "g16.png")
    with Image.open(path) as opened:
        assert opened.mode in ("I;16", "I")  # Pillow's 16-bit grayscale PNG
    np.testing.assert_array_equal(images.read_rgb(path), _rgb_of_gray(GRAY))


@pytest.mark.parametrize("mode", ["I;16", "I;16B"])
def test_16bit_tiff(tmp_path, mode):
    sixteen = (GRAY.astype("uint16") * 257).astype(">u2" if mode == "I;16B" else "<u2")
    path = _save(tmp_path, Image.frombytes(mode, GRAY.shape[::-1], sixteen.tobytes()), "g16.tif")
    np.testing.assert_array_equal(images.read_rgb(path), _rgb_of_gray(GRAY))


@pytest.mark.core
def test_32bit_int_tiff_read_as_16bit_and_out_of_range_refused(tmp_path):
    path = _save(tmp_path, Image.fromarray(GRAY.astype("int32") * 257), "i32.tif")
    np.testing.assert_array_equal(images.read_rgb(path), _rgb_of_gray(GRAY))
    big = _save(tmp_path, Image.fromarray(np.full((4, 4), 1 << 20, "int32")), "big.tif")
    with pytest.raises(images.ImageError, match="big.tif.*16-bit"):
        images.read_rgb(big)


@pytest.mark.core
def test_float_tiff_read_as_unit_range_and_others_refused(tmp_path):
    path = _save(tmp_path, Image.fromarray(GRAY.astype("float32") / 255), "f.tif")
    np.testing.assert_array_equal(images.read_rgb(path), _rgb_of_gray(GRAY))
    for name, value in (("over.tif", 2.0), ("nan.tif", np.nan)):
        bad = _save(tmp_path, Image.fromarray(np.full((4, 4), value, "float32")), name)
        with pytest.raises(images.ImageError, match=f"{name}.*\\[0, 1\\]"):
            images.read_rgb(bad)


@pytest.mark.core
def test_palette_rgba_la_cmyk_and_1bit(tmp_path):
    rgb = np.random.default_rng(1).integers(0, 256, (6, 6, 3), dtype="uint8")
    palette = Image.fromarray(rgb).quantize(16)
    expected = np.asarray(palette.convert("RGB"))
    np.testing.assert_array_equal(images.read_rgb(_save(tmp_path, palette, "p.png")), expected)
    rgba = np.concatenate([rgb, np.zeros((6, 6, 1), "uint8")], axis=-1)  # fully transparent
    np.testing.assert_array_equal(images.read_rgb(_save(tmp_path, Image.fromarray(rgba), "a.png")), rgb)
    la = np.stack([GRAY, np.full_like(GRAY, 7)], axis=-1)
    np.testing.assert_array_equal(images.read_rgb(_save(tmp_path, Image.fromarray(la), "la.png")),
                                  _rgb_of_gray(GRAY))
    cmyk = Image.fromarray(rgb).convert("CMYK")
    got = images.read_rgb(_save(tmp_path, cmyk, "c.jpg", quality=100))
    assert np.abs(got.astype(int) - np.asarray(cmyk.convert("RGB"), int)).max() <= 12  # JPEG loss
    bits = (GRAY > 100).astype("uint8") * 255
    one = images.read_rgb(_save(tmp_path, Image.fromarray(bits).convert("1"), "b.png"))
    np.testing.assert_array_equal(one, _rgb_of_gray(bits))


@pytest.mark.core
def test_exif_orientation_applied(tmp_path):
    rgb = np.zeros((2, 3, 3), "uint8")
    rgb[0, 0] = 255  # top-left red
    image = Image.fromarray(rgb)
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 clockwise to display
    path = _save(tmp_path, image, "o.jpg", exif=exif, quality=100)
    got = images.read_rgb(path)
    assert got.shape == (3, 2, 3)
    assert got[0, -1, 0] > 200 and got[0, 0, 0] < 50  # red moved to the top-right


@pytest.mark.core
def test_bombs_and_oversized_images_refused(tmp_path):
    bomb = _save(tmp_path, Image.new("1", (20000, 20000)), "bomb.png")
    with pytest.raises(images.ImageError, match="bomb.png.*400000000 pixels"):
        images.read_rgb(bomb)
    path = _save(tmp_path, Image.new("RGB", (100, 100)), "big.png")
    with pytest.raises(images.ImageError, match="more than the 5000 allowed"):
        images.read_rgb(path, max_pixels=5000)
    assert images.read_rgb(path).shape == (100, 100, 3)


@pytest.mark.core
def test_truncated_and_non_image_files_named(tmp_path):
    good = _save(tmp_path, Image.fromarray(np.zeros((64, 64, 3), "uint8") + 100), "t.png")
    data = open(good, "rb").read()
    (tmp_path / "t.png").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.jpg").write_text("not an image")
    for name in ("t.png", "text.jpg", "missing.png"):
        with pytest.raises(images.ImageError, match=f"Cannot read image .*{name}"):
            images.read_rgb(tmp_path / name)


# -- the package's readers go through it ------------------------------------------


def test_training_folder_skips_and_reports_bad_files(tmp_path):
    from mobilenetv3.datasets import make_classification_folder
    from mobilenetv3.training import load_image_folder

    data = make_classification_folder(tmp_path / "data", classes=("circle", "square"), per_class=5, size=32)
    (data / "circle" / "notes.jpg").write_text("not an image")
    good = (data / "square" / "0000.png").read_bytes()
    (data / "square" / "cut.png").write_bytes(good[: len(good) // 2])
    sixteen = np.full((32, 32), 128 * 257, "uint16")
    Image.fromarray(sixteen).save(data / "square" / "deep.png")
    with pytest.warns(UserWarning, match=r"(?s)Skipped 2 image file\(s\).*(notes.jpg.*cut.png|cut.png.*notes.jpg)"):
        train, validation, names = load_image_folder(data, (24, 24), batch_size=4, validation_split=0.25)
    assert names == ["circle", "square"]
    batches = [x for x, _ in train] + [x for x, _ in validation]
    pixels = np.concatenate([np.asarray(b) for b in batches])
    assert pixels.shape == (11, 24, 24, 3) and pixels.dtype == np.float32  # 10 + the 16-bit one
    assert any(np.allclose(p, 128) for p in pixels)  # the 16-bit PNG, scaled, not white


def test_predict_refuses_to_upscale_to_an_absurd_input_size(tmp_path):
    from mobilenetv3.presets import Preprocessing
    from mobilenetv3.presets.preprocessing import load_image

    path = _save(tmp_path, Image.new("RGB", (8, 8)), "small.png")
    assert load_image(path, Preprocessing("unit", 64, "squash")).shape == (64, 64, 3)
    with pytest.raises(images.ImageError, match=f"30000 pixels, more than the {images.MAX_INPUT_SIDE}"):
        load_image(path, Preprocessing("unit", 30000, "squash"))


def test_whole_image_limit_for_segment(tmp_path):
    path = _save(tmp_path, Image.new("L", (4097, 4096)), "wide.png")
    with pytest.raises(images.ImageError, match="wide.png: 4097x4096"):
        images.read_rgb(path, max_pixels=images.WHOLE_IMAGE_MAX_PIXELS)


def test_calibration_reader_handles_16bit(tmp_path):
    from mobilenetv3.export import load_images

    Image.fromarray(np.full((8, 8), 255 * 257, "uint16")).save(tmp_path / "a.png")
    np.testing.assert_array_equal(load_images(tmp_path, (4, 4)), np.full((1, 4, 4, 3), 255, "float32"))
