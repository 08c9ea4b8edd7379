"""`quantize_aware(..., input_range=(0, 255))`: the twin's input grid is the
raw pixels' whatever the calibration and training images hold, so a uint8
LiteRT export reads the pixels themselves (scale 1, zero point 0, what
MediaPipe feeds it); with `quantize_after_rescaling` the range is carried
through the `Rescaling`. Fixed ranges survive `.keras` and bad ranges are
refused naming the argument."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from helpers import litert_uint8_outputs, lively

import mobilenetv3
from mobilenetv3.quantization import FakeQuant, calibrate_ranges, fake_quant_layers, quantize_aware

SIZE = 32


def _classifier(preprocessing: str = "unit") -> keras.Model:
    keras.utils.set_random_seed(3)
    backbone = mobilenetv3.MobileNetV3Backbone(
        stackwise_expansion=[1, 4], stackwise_filters=[16, 16], stackwise_kernel_size=[3, 3], stackwise_stride=[2, 1],
        stackwise_se_ratio=[0.25, 0.25], stackwise_activation=["relu", "hard_swish"], include_rescaling=True,
        preprocessing=preprocessing, input_shape=(SIZE, SIZE, 3))
    images = np.random.default_rng(3).uniform(0, 255, (8, SIZE, SIZE, 3)).astype("float32")
    return lively(mobilenetv3.MobileNetV3ImageClassifier(backbone, num_classes=3), images, seed=3)


def _range(layer: FakeQuant) -> tuple[float, float]:
    return float(keras.ops.convert_to_numpy(layer.range_min)), float(keras.ops.convert_to_numpy(layer.range_max))


# Images that never reach 0 or 255: calibration alone would give the input a narrower grid.
MIDTONES = np.random.default_rng(4).uniform(60, 190, (8, SIZE, SIZE, 3)).astype("float32")


@pytest.mark.core
def test_fixed_range_is_kept_through_training_calibration_reset_and_config():
    layer = FakeQuant(momentum=0.5, fixed_range=(0, 255))
    x = np.array([[10.4, 99.6, 130.2]], "float32")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(x)), [[10, 100, 130]])  # quantized before any batch
    layer(x, training=True)
    layer.observing = True
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(x)), x)  # calibration sees float values
    layer.observing = False
    layer.reset()
    assert _range(layer) == (0.0, 255.0)
    assert FakeQuant.from_config(layer.get_config()).fixed_range == (0.0, 255.0)
    moving = FakeQuant(momentum=0.5)
    moving(x, training=True)
    assert _range(moving) == pytest.approx((10.4, 130.2))  # the same calls move a range that is not fixed


@pytest.mark.parametrize("bad", [(255, 0), (10, 255), (0, float("inf")), (0,), "0-255", (False, 255)])
def test_a_bad_input_range_is_refused_naming_it(bad):
    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(2, 3)(inputs))
    with pytest.raises(ValueError, match=r"`input_range` must be None or a pair \(low, high\)"):
        quantize_aware(model, input_range=bad)


@pytest.mark.slow  # a LiteRT conversion: ~30 s
def test_input_grid_stays_the_pixels_and_the_uint8_litert_file_reads_them(tmp_path):
    pytest.importorskip("ai_edge_litert")
    from mobilenetv3.export import export_model

    twin = quantize_aware(_classifier(), input_range=(0, 255))
    calibrate_ranges(twin, MIDTONES)
    first, second = fake_quant_layers(twin)[:2]
    assert _range(first) == (0.0, 255.0) and _range(second) != (0.0, 0.0)  # the others did calibrate
    twin.save(tmp_path / "twin.keras")
    loaded = keras.saving.load_model(tmp_path / "twin.keras")
    assert loaded.options["input_range"] == [0.0, 255.0] and fake_quant_layers(loaded)[0].fixed_range == (0.0, 255.0)

    export_model(loaded, tmp_path / "twin.tflite", "tflite", io_dtype="uint8")
    pixels = np.round(MIDTONES[:4]).astype("uint8")
    outputs, source, target = litert_uint8_outputs(tmp_path / "twin.tflite", pixels)
    assert source["dtype"] == np.uint8 and source["quantization"] == (1.0, 0)
    expected = keras.ops.convert_to_numpy(loaded(pixels.astype("float32"), training=False))
    # Whole model, not teacher-forced: steps of rounding add up (each tensor's step: test_qat_export_litert).
    assert np.abs(outputs - expected).max() < 3 * target["quantization"][0]

    calibrated = quantize_aware(_classifier())
    calibrate_ranges(calibrated, MIDTONES)
    low, high = _range(fake_quant_layers(calibrated)[0])
    assert low > 50 and high < 200  # without input_range the grid follows the images: not the pixels' codes


def test_the_range_is_carried_through_an_offset_rescaling():
    twin = quantize_aware(_classifier("symmetric"), input_range=(0, 255), quantize_after_rescaling=True)
    calibrate_ranges(twin, MIDTONES)
    first = fake_quant_layers(twin)[0]
    assert first.fixed_range == pytest.approx((-1.0, 1.0)) and _range(first) == pytest.approx((-1.0, 1.0))
