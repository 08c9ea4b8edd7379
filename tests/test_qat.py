"""Quantization-aware training (`mobilenetv3.quantization`): the twin's
fake-quant output against an independent numpy int8 simulation, training on
every backend, `.keras` round trips, and the twin against the float model.

The numpy oracle quantizes in integers: int8 inputs and per-channel int8
weights (from the float model's weights, folded here with numpy), int32
accumulation, float bias, requantization with the ranges the twin recorded.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
from helpers import trained_looking

import mobilenetv3
from mobilenetv3.core.keras_internals import producer_name
from mobilenetv3.nets.layers import BatchNormalization, Conv2D, DepthwiseConv2D
from mobilenetv3.quantization import (
    FakeQuant,
    QATModel,
    QuantConv,
    calibrate_ranges,
    fake_quant_layers,
    quantize_aware,
)

pytestmark = pytest.mark.core
# The whole-classifier tests check backend-independent graph rewriting and
# numbers; they run on TensorFlow only (JAX runs the twin op by op for seconds).
tensorflow_only = pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                                     reason="whole-classifier twin: TensorFlow run only (CI time)")


def _numpy(x):
    return keras.ops.convert_to_numpy(x)


# ---------------------------------------------------------------- numpy oracle


def _grid(low: float, high: float) -> tuple[float, int]:
    """(scale, zero point) of TFLite's int8 activation quantization of [low, high]."""
    low, high = min(float(low), 0.0), max(float(high), 0.0)
    scale = max((high - low) / 255.0, 1e-12)
    zero_point = int(np.clip(np.round(-128 - low / scale), -128, 127))
    return scale, zero_point


def _quantize(x: np.ndarray, quant: FakeQuant) -> tuple[np.ndarray, float, int]:
    """int8 values of x, with their scale and zero point."""
    scale, zero_point = _grid(_numpy(quant.range_min), _numpy(quant.range_max))
    q = np.clip(np.round(x / scale) + zero_point, -128, 127).astype(np.int64)
    return q, scale, zero_point


def _requantize(x: np.ndarray, quant: FakeQuant) -> np.ndarray:
    q, scale, zero_point = _quantize(x, quant)
    return (q - zero_point) * scale


def _int8_weights(kernel: np.ndarray, axes: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    scale = np.max(np.abs(kernel), axis=axes, keepdims=True) / 127.0
    scale = np.where(scale > 0, scale, 1.0)
    return np.clip(np.round(kernel / scale), -127, 127).astype(np.int64), scale


def _fold(kernel, bn, depthwise=False):
    gamma, beta, mean, var = (_numpy(w).astype(np.float64) for w in bn.weights[:4])
    scale = gamma / np.sqrt(var + bn.epsilon)
    per_kernel = scale.reshape(kernel.shape[2:]) if depthwise else scale
    return kernel * per_kernel, beta - mean * scale


def _same_pad(x, k, stride):
    n, h, w, c = x.shape
    out_h, out_w = -(-h // stride), -(-w // stride)
    ph, pw = max((out_h - 1) * stride + k - h, 0), max((out_w - 1) * stride + k - w, 0)
    return np.pad(x, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0))), out_h, out_w


def _conv_int(q_x, q_w, stride, depthwise=False):
    """Integer conv (TF SAME padding, zero points already subtracted)."""
    k = q_w.shape[0]
    padded, out_h, out_w = _same_pad(q_x, k, stride)
    out_channels = q_w.shape[2] * q_w.shape[3] if depthwise else q_w.shape[3]
    out = np.zeros((q_x.shape[0], out_h, out_w, out_channels), np.int64)
    for i in range(k):
        for j in range(k):
            patch = padded[:, i:i + stride * out_h:stride, j:j + stride * out_w:stride, :]
            if depthwise:
                out += patch * q_w[i, j, :, 0]
            else:
                out += np.einsum("nhwc,cd->nhwd", patch, q_w[i, j])
    return out


def _conv_layer(q_x, scale_x, kernel, bias, stride, depthwise=False):
    axes = (0, 1) if depthwise else (0, 1, 2)
    q_w, scale_w = _int8_weights(kernel, axes)
    acc = _conv_int(q_x, q_w, stride, depthwise)
    return acc * (scale_x * scale_w.reshape(-1)) + bias


def _hard_swish(x):
    return x * np.clip(x + 3, 0, 6) / 6


def _build_small_graph() -> keras.Model:
    """Conv+BN+relu, depthwise (stride 2)+BN+hard-swish, residual add of a
    1x1 conv+BN, global pool, dense: the twin's placement rules in one graph."""
    keras.utils.set_random_seed(7)
    inputs = keras.Input((12, 12, 3))
    x = Conv2D(8, 3, padding="same", use_bias=False, name="c1")(inputs)
    x = BatchNormalization(name="c1_bn")(x)
    x = keras.layers.Activation("relu", name="c1_relu")(x)
    x = DepthwiseConv2D(3, strides=2, padding="same", use_bias=False, name="dw")(x)
    x = BatchNormalization(name="dw_bn")(x)
    x = keras.layers.Activation("hard_swish", name="dw_hs")(x)
    y = Conv2D(8, 1, use_bias=False, name="pw")(x)
    y = BatchNormalization(name="pw_bn")(y)
    x = keras.layers.Add(name="add")([x, y])
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(5, name="logits")(x)
    model = keras.Model(inputs, outputs)
    trained_looking(model, seed=3)
    return model


def _numpy_int8(model: keras.Model, twin: keras.Model, images: np.ndarray) -> np.ndarray:
    """The graph of `_build_small_graph` in numpy integer arithmetic, with the twin's ranges."""
    quant = twin.get_layer
    k = {name: _numpy(model.get_layer(name).kernel).astype(np.float64) for name in ("c1", "dw", "pw", "logits")}
    q, s, z = _quantize(images.astype(np.float64), quant("input_quant"))
    w, b = _fold(k["c1"], model.get_layer("c1_bn"))
    x = np.maximum(_conv_layer(q - z, s, w, b, 1), 0)  # relu fused: one quantized tensor
    q, s, z = _quantize(x, quant("c1_relu_quant"))
    w, b = _fold(k["dw"], model.get_layer("dw_bn"), depthwise=True)
    x = _requantize(_conv_layer(q - z, s, w, b, 2, depthwise=True), quant("dw_quant"))
    q, s, z = _quantize(_hard_swish(x), quant("dw_hs_quant"))  # hard-swish in float, then quantized
    branch = (q - z) * s
    w, b = _fold(k["pw"], model.get_layer("pw_bn"))
    y = _requantize(_conv_layer(q - z, s, w, b, 1), quant("pw_quant"))
    x = _requantize(branch + y, quant("add_quant"))
    x = _requantize(x.mean(axis=(1, 2)), quant("pool_quant"))
    q_w, scale_w = _int8_weights(k["logits"], (0,))
    x = x @ (q_w * scale_w) + _numpy(model.get_layer("logits").bias)
    return _requantize(x, quant("logits_quant"))


@pytest.fixture(scope="module")
def small_graph():
    model = _build_small_graph()
    twin = quantize_aware(model)
    rng = np.random.default_rng(0)
    calibration = rng.uniform(-1, 1, (8, 12, 12, 3)).astype("float32")
    calibrate_ranges(twin, calibration)
    return model, twin, calibration


def test_fake_quant_matches_numpy_int8_simulation(small_graph):
    model, twin, calibration = small_graph
    images = np.random.default_rng(1).uniform(-1, 1, (4, 12, 12, 3)).astype("float32")
    names = sorted(layer.name for layer in fake_quant_layers(twin))
    assert names == sorted(["input_quant", "c1_relu_quant", "dw_quant", "dw_hs_quant", "pw_quant", "add_quant",
                            "pool_quant", "logits_quant"])
    # Calibration records the minimum and maximum of the float activations.
    assert float(_numpy(twin.get_layer("input_quant").range_min)) == pytest.approx(calibration.min())
    assert float(_numpy(twin.get_layer("input_quant").range_max)) == pytest.approx(calibration.max())
    expected = _numpy_int8(model, twin, images)
    actual = _numpy(twin(images, training=False))
    step, _ = _grid(_numpy(twin.get_layer("logits_quant").range_min), _numpy(twin.get_layer("logits_quant").range_max))
    error = np.abs(actual - expected)
    float_error = np.abs(_numpy(model(images, training=False)) - expected)
    print(f"twin vs numpy int8: max {error.max() / step:.3g} output steps, "
          f"{np.mean(error > 1e-3 * step):.3f} of outputs differ; float model vs numpy int8: "
          f"mean {float_error.mean() / step:.3g}, max {float_error.max() / step:.3g} steps")
    # Equal within float error; a value on a rounding boundary may move one step somewhere upstream.
    assert np.mean(error < 1e-3 * step) >= 0.9
    assert error.max() <= 1.01 * step
    # ... where the float model is off by the quantization noise, so the oracle can tell them apart.
    assert float_error.mean() > 10 * error.mean() + 0.1 * step


def test_uncalibrated_twin_has_float_activations_and_int8_weights(small_graph):
    model, _, _ = small_graph
    twin = quantize_aware(model)
    images = np.random.default_rng(2).uniform(-1, 1, (2, 12, 12, 3)).astype("float32")
    twin_out, float_out = _numpy(twin(images)), _numpy(model(images))
    assert 0 < np.abs(twin_out - float_out).max() < 0.05 * np.abs(float_out).max()


def _learnable(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Raw-pixel images whose class is the bright channel."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 3
    images = rng.uniform(0, 100, (count, 32, 32, 3)).astype("float32")
    images[np.arange(count), :, :, labels] += 150
    return images, labels


@pytest.fixture(scope="module")
def classifier():
    """A Small classifier with perturbed weights and BatchNorm statistics
    computed on images (so that its outputs depend on the input)."""
    from mobilenetv3.training.recipe import calibrate_batchnorm

    backbone = mobilenetv3.MobileNetV3SmallBackbone(input_shape=(32, 32, 3), alpha=0.35)
    model = trained_looking(mobilenetv3.MobileNetV3ImageClassifier(backbone, num_classes=3), seed=1)
    calibrate_batchnorm(model, [(_learnable(12, seed=0)[0], None)])
    return model


def _cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    logits = logits - logits.max(axis=1, keepdims=True)
    log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    return float(-log_probs[np.arange(len(labels)), labels].mean())


def test_qat_fit_trains_and_freezes_batchnorm(small_graph):
    """A few compiled `fit` steps on every backend: the loss goes down
    (straight-through gradients), BatchNorm follows the batch for 2 steps, then freezes."""
    model, _, _ = small_graph
    twin = quantize_aware(model, freeze_batchnorm_after=2)
    rng = np.random.default_rng(5)
    images = rng.uniform(-1, 1, (16, 12, 12, 3)).astype("float32")
    labels = np.argmax(images.mean(axis=(1, 2)) @ rng.normal(size=(3, 5)), axis=1)  # learnable from the input
    calibrate_ranges(twin, images)
    twin.compile(optimizer=keras.optimizers.Adam(1e-2),
                 loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    bn_layer = twin.get_layer("c1")
    means = [_numpy(bn_layer.batch_norm.moving_mean).copy()]
    record = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: means.append(_numpy(bn_layer.batch_norm.moving_mean).copy()))
    before = _cross_entropy(_numpy(twin(images, training=False)), labels)
    history = twin.fit(images, labels, batch_size=16, epochs=8, verbose=0, callbacks=[record]).history["loss"]
    after = _cross_entropy(_numpy(twin(images, training=False)), labels)
    print(f"QAT fit ({keras.backend.backend()}): inference loss {before:.3f} -> {after:.3f}, training {history}")
    assert after < before
    assert float(_numpy(bn_layer.step)) == 8
    assert not np.allclose(means[0], means[1]) and not np.allclose(means[1], means[2])  # batch statistics ...
    np.testing.assert_array_equal(means[2], means[8])  # ... then frozen after 2 steps


@pytest.mark.slow
@tensorflow_only
def test_classifier_twin_fits_with_its_task_defaults(classifier):
    """The Small classifier's twin trains with `compile()`'s defaults (from the classifier)."""
    twin = quantize_aware(classifier, freeze_batchnorm_after=0)
    images, labels = _learnable(12, seed=1)
    calibrate_ranges(twin, images)
    # Compiling the twin's training step takes ~30 s on 2 cores (TensorFlow; ~60 s on
    # JAX): the test trains eagerly; `test_qat_fit_compiled` (heavy) runs the compiled step.
    twin.compile(run_eagerly=True)
    twin.optimizer.learning_rate.assign(1e-3)
    before = _cross_entropy(_numpy(twin(images, training=False)), labels)
    history = twin.fit(images, labels, batch_size=12, epochs=3, verbose=0).history
    after = _cross_entropy(_numpy(twin(images, training=False)), labels)
    print(f"classifier QAT fit: inference loss {before:.3f} -> {after:.3f}, training {history['loss']}")
    assert after < before and "accuracy" in history


def test_save_load_keeps_ranges_and_outputs(request, small_graph, tmp_path):
    """`.keras` round trip, ranges included: the Small classifier's twin on
    TensorFlow, the small graph's on JAX and PyTorch (CI time)."""
    if keras.backend.backend() == "tensorflow":
        model, shape = request.getfixturevalue("classifier"), (4, 32, 32, 3)
    else:
        model, shape = small_graph[0], (4, 12, 12, 3)
    twin = quantize_aware(model, freeze_batchnorm_after=5, float_ops=("hard_swish",))
    images = np.random.default_rng(3).uniform(0, 255, shape).astype("float32")
    calibrate_ranges(twin, images)
    if keras.backend.backend() == "tensorflow":
        twin.compile()  # the float task's defaults, saved and restored with the model
    path = tmp_path / "twin.keras"
    twin.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, QATModel)
    assert loaded.options == twin.options
    ranges = {layer.name: float(_numpy(layer.range_max)) for layer in fake_quant_layers(twin)}
    assert all(r != 0 for r in ranges.values())
    assert {layer.name: float(_numpy(layer.range_max)) for layer in fake_quant_layers(loaded)} == ranges
    np.testing.assert_allclose(_numpy(loaded(images)), _numpy(twin(images)), rtol=0, atol=1e-6)
    if keras.backend.backend() == "tensorflow":
        assert isinstance(loaded.loss, keras.losses.SparseCategoricalCrossentropy)
        assert loaded.optimizer.learning_rate.numpy() == pytest.approx(1e-4)


@tensorflow_only
def test_twin_is_close_to_float_after_calibration(classifier):
    twin = quantize_aware(classifier)
    calibrate_ranges(twin, _learnable(8, seed=4)[0])
    images = _learnable(12, seed=5)[0]
    float_out, twin_out = _numpy(classifier(images, training=False)), _numpy(twin(images, training=False))
    error = np.abs(twin_out - float_out).mean() / float_out.std()
    agree = np.mean(twin_out.argmax(1) == float_out.argmax(1))
    print(f"twin vs float: mean logit error {error:.3f} float-logit std, top-1 agreement {agree:.2f}")
    assert error < 0.5  # measured 0.17 (TensorFlow), 0.23 (JAX), 0.46 (PyTorch): a tiny 32-px Small


def test_add_mul_hard_swish_and_rescaled_input_train_and_round_trip(tmp_path):
    """`hard_swish="add_mul"`: `x * q(relu6(x + 3)) / 6` on the fixed [0, 6] grid, from the quantized conv
    output (numpy); `quantize_after_rescaling`: a [-1, 1] `Rescaling` runs on the float input and its output
    is quantized (the raw input is not). One compiled training step, then a `.keras` round trip."""
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Rescaling(1 / 127.5, -1.0, name="rescaling")(inputs)
    x = BatchNormalization(name="c1_bn")(Conv2D(4, 3, padding="same", use_bias=False, name="c1")(x))
    x = keras.layers.Activation("hard_swish", name="c1_hs")(x)
    model = keras.Model(inputs, keras.layers.Dense(3, name="logits")(keras.layers.GlobalAveragePooling2D(name="pool")(x)))
    trained_looking(model, seed=2)
    twin = quantize_aware(model, hard_swish="add_mul", quantize_after_rescaling=True)
    names = [layer.name for layer in fake_quant_layers(twin)]
    assert names == ["rescaling_quant", "c1_quant", "c1_hs_quant", "pool_quant", "logits_quant"]
    images = np.random.default_rng(4).uniform(0, 255, (4, 8, 8, 3)).astype("float32")
    calibrate_ranges(twin, images)
    probe = keras.Model(twin.inputs, [twin.get_layer("c1_quant").output, twin.get_layer("c1_hs").output])
    x, y = (_numpy(t) for t in probe(images))
    gate = np.round(np.clip(x + 3, 0, 6) * 255 / 6) / 255  # QLinearAdd's codes read with scale 1/255
    np.testing.assert_allclose(y, x * gate, atol=1e-5)
    assert 0 < np.abs(y - _hard_swish(x)).max() <= np.abs(x).max() / 255 + 1e-5
    twin.compile(optimizer=keras.optimizers.Adam(1e-2), loss=keras.losses.SparseCategoricalCrossentropy(True))
    kernel = _numpy(twin.get_layer("c1").conv.kernel).copy()
    twin.fit(images, np.arange(4) % 3, batch_size=4, epochs=1, verbose=0)
    assert not np.allclose(_numpy(twin.get_layer("c1").conv.kernel), kernel)  # gradients through the gate
    twin.save(tmp_path / "twin.keras")
    loaded = keras.saving.load_model(tmp_path / "twin.keras")
    assert loaded.options["hard_swish"] == "add_mul" and loaded.options["quantize_after_rescaling"] is True
    np.testing.assert_allclose(_numpy(loaded(images)), _numpy(twin(images)), rtol=0, atol=1e-5)


def test_bad_arguments_are_named():
    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(2, 1)(inputs))
    with pytest.raises(ValueError, match="float_ops"):
        quantize_aware(model, float_ops="hard_swish")
    with pytest.raises(ValueError, match="freeze_batchnorm_after"):
        quantize_aware(model, freeze_batchnorm_after=-1)
    with pytest.raises(ValueError, match="hard_swish.*'op', 'add_mul'"):
        quantize_aware(model, hard_swish="int8")
    with pytest.raises(ValueError, match="quantize_after_rescaling"):
        quantize_aware(model, quantize_after_rescaling="yes")
    with pytest.raises(TypeError, match="functional"):
        quantize_aware(keras.Sequential([keras.layers.Dense(2)]))


@pytest.mark.heavy
def test_qat_fit_compiled(classifier):
    """The compiled training step (tf.function / jax.jit), as users run `fit`."""
    twin = quantize_aware(classifier, freeze_batchnorm_after=2)
    images, labels = _learnable(12, seed=1)
    calibrate_ranges(twin, images)
    twin.compile(optimizer=keras.optimizers.Adam(1e-3))
    before = _cross_entropy(_numpy(twin(images, training=False)), labels)
    twin.fit(images, labels, batch_size=12, epochs=6, verbose=0)
    assert _cross_entropy(_numpy(twin(images, training=False)), labels) < before


@tensorflow_only
def test_backbone_output_stays_float_and_dense_head_is_quantized():
    """A backbone ends in hard-swish, which LiteRT returns in float: no
    fake-quant after it (with `float_ops=()` there is one); a dense head's
    Dense is a QuantConv with per-channel int8 weights."""
    backbone = mobilenetv3.MobileNetV3SmallBackbone(input_shape=(32, 32, 3), alpha=0.35)
    names = {layer.name for layer in fake_quant_layers(quantize_aware(backbone))}
    assert "Conv_1_quant" in names and "Conv_1_activation_quant" not in names
    names = {layer.name for layer in fake_quant_layers(quantize_aware(backbone, float_ops=()))}
    assert "Conv_1_activation_quant" in names
    classifier = mobilenetv3.MobileNetV3ImageClassifier(backbone, num_classes=3, head="dense")
    twin = quantize_aware(classifier)
    assert isinstance(twin.get_layer("predictions"), QuantConv)
    assert {"avg_pool_quant", "predictions_quant"} <= {layer.name for layer in fake_quant_layers(twin)}
    assert twin(np.zeros((1, 32, 32, 3), "float32")).shape == (1, 3)


@pytest.mark.slow
@tensorflow_only
def test_segmenter_and_detector_twins_run_and_round_trip(tmp_path):
    """The other tasks' twins: built (a segmenter's config-less resize layer
    shared, a detector's ReLU6 fused into its conv), calibrated, close to the
    float model, and a segmenter twin reloaded from `.keras`."""
    images = np.random.default_rng(6).uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    segmenter = mobilenetv3.MobileNetV3ImageSegmenter(
        mobilenetv3.MobileNetV3SmallBackbone(input_shape=(64, 64, 3), alpha=0.35), num_classes=3)
    detector = mobilenetv3.MobileNetV3ObjectDetector(
        mobilenetv3.MobileNetV3SmallBackbone(input_shape=(None, None, 3), alpha=0.35), num_classes=3, image_size=64)
    twins = []
    for model in (segmenter, detector):
        twin = quantize_aware(model)
        calibrate_ranges(twin, images)
        twins.append(twin)
        for float_out, twin_out in zip(keras.tree.flatten(model(images)), keras.tree.flatten(twin(images)),
                                       strict=True):
            float_out, twin_out = _numpy(float_out), _numpy(twin_out)
            assert float_out.shape == twin_out.shape
            assert np.abs(float_out - twin_out).mean() < 0.2 * float_out.std()
    names = {layer.name for layer in fake_quant_layers(twin)}
    relus = [layer for layer in detector.layers
             if isinstance(layer, keras.layers.ReLU) and layer.get_config().get("max_value") == 6]
    convs = [producer_name(detector.get_layer(producer_name(relu.input)).input) for relu in relus]  # relu <- BN <- conv
    assert relus and all(f"{relu.name}_quant" in names for relu in relus)
    assert all(isinstance(twin.get_layer(conv), QuantConv) for conv in convs)
    assert not any(f"{conv}_quant" in names for conv in convs)  # fused: no int8 tensor between conv and ReLU6
    twin = twins[0]  # the calibrated segmenter twin
    twin.save(tmp_path / "segmenter.keras")
    np.testing.assert_allclose(_numpy(keras.saving.load_model(tmp_path / "segmenter.keras")(images)),
                               _numpy(twin(images)), atol=1e-5)
