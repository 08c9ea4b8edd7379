"""On JAX a model builds without XLA compilations and its first inference call is
one compiled program (issue 16: Small took 14 s to build and 18 s to first call),
with the same initial weights as Keras' own layers and the same outputs."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import keras
import numpy as np
import pytest
from helpers import SMALL, pixel_images, trained_looking

import mobilenetv3
from mobilenetv3.nets import layers
from mobilenetv3.runtime import compiled_call
from mobilenetv3.runtime.initializers import host_initializer, host_value

pytestmark = pytest.mark.core
JAX = keras.backend.backend() == "jax"
only_jax = pytest.mark.skipif(not JAX, reason="JAX's compilations and generator")

INITIALIZERS = {
    "glorot_uniform": keras.initializers.GlorotUniform(seed=123),
    "he_uniform": keras.initializers.HeUniform(),
    "lecun_uniform": keras.initializers.LecunUniform(seed=2**32 - 1),
    "fan_out": keras.initializers.VarianceScaling(2.0, "fan_out", "uniform", seed=5),
    "zeros": keras.initializers.Zeros(),
    "ones": keras.initializers.Ones(),
}
SHAPES = [(1,), (3,), (7, 5), (3, 3, 16, 1), (1, 1, 17, 1001)]


@contextlib.contextmanager
def xla_compilations() -> Iterator[list]:
    """Record one entry per XLA compilation in the block, after emptying JAX's caches."""
    import jax

    compiles: list = []

    def listen(event: str, duration: float, **kwargs: object) -> None:
        if event == "/jax/core/compile/backend_compile_duration":
            compiles.append(duration)

    jax.clear_caches()
    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        yield compiles
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)


@only_jax
@pytest.mark.parametrize("partitionable", [True, False])
def test_host_initializers_are_keras_bit_for_bit(partitionable: bool) -> None:
    import jax

    with jax.threefry_partitionable(partitionable):
        for name, initializer in INITIALIZERS.items():
            for shape in SHAPES:
                host = host_value(initializer, shape, "float32")
                assert host is not None, (name, shape)
                np.testing.assert_array_equal(host, np.asarray(initializer(shape, dtype="float32")), err_msg=name)
                assert host.dtype == np.float32 and host.shape == shape


def test_what_the_host_cannot_reproduce_runs_keras() -> None:
    seeded = keras.initializers.GlorotUniform(seed=keras.random.SeedGenerator(3))
    for initializer in (keras.initializers.GlorotNormal(seed=1), seeded, keras.initializers.RandomUniform(seed=1)):
        assert host_value(initializer, (3, 3), "float32") is None
    assert host_value(INITIALIZERS["glorot_uniform"], (3, 3), "float16") is None
    value = host_initializer(keras.initializers.GlorotNormal(seed=1))((3, 3), "float32")
    np.testing.assert_array_equal(value, keras.initializers.GlorotNormal(seed=1)((3, 3), dtype="float32"))
    if not JAX:  # every other backend draws with Keras
        assert host_value(INITIALIZERS["glorot_uniform"], (3, 3), "float32") is None


@pytest.mark.parametrize("ours, keras_layer", [
    (lambda: layers.Conv2D(8, 3), lambda: keras.layers.Conv2D(8, 3)),
    (lambda: layers.DepthwiseConv2D(3), lambda: keras.layers.DepthwiseConv2D(3)),
    (lambda: layers.BatchNormalization(), lambda: keras.layers.BatchNormalization()),
])
def test_seeded_layers_start_with_keras_weights(ours: object, keras_layer: object) -> None:
    weights = []
    for make in (ours, keras_layer):
        keras.utils.set_random_seed(7)
        layer = make()
        layer.build((None, 9, 9, 4))
        weights.append([np.asarray(w) for w in layer.weights])
    assert len(weights[0]) == len(weights[1])
    for mine, theirs in zip(*weights, strict=True):
        np.testing.assert_array_equal(mine, theirs)


@only_jax
def test_building_compiles_nothing() -> None:
    with xla_compilations() as compiles:
        mobilenetv3.MobileNetV3SmallBackbone(input_shape=(64, 64, 3))
    assert len(compiles) == 0  # was 57 (one jax.random.uniform program per weight shape)


@only_jax
def test_first_call_is_one_program_with_op_by_op_outputs(monkeypatch: pytest.MonkeyPatch) -> None:
    keras.utils.set_random_seed(0)
    two_blocks = {key: value[:2] for key, value in SMALL.items() if key.startswith("stackwise_")}
    backbone = mobilenetv3.MobileNetV3Backbone(**{**SMALL, **two_blocks})  # few ops: the op-by-op oracle is quick
    model = trained_looking(mobilenetv3.MobileNetV3ImageClassifier(backbone, num_classes=3))
    images = pixel_images((2, 48, 40, 3))
    with xla_compilations() as compiles:
        compiled = np.asarray(model(images))
    assert len(compiles) == 1  # was one per op and shape (~300 for the whole Small)
    with pytest.raises(ValueError, match=f"layer '{model.name}' is incompatible"):  # Keras' message, as op by op
        model(np.ones((1, 48, 40, 4), "float32"))
    kernel = model.get_layer("Logits").kernel
    kernel.assign(np.asarray(kernel) * 2)  # the compiled call reads the variables' current values
    compiled_after = np.asarray(model(images, training=False))
    monkeypatch.setattr(compiled_call, "COMPILED_CALL", False)
    eager_after = np.asarray(model(images))
    kernel.assign(np.asarray(kernel) / 2)
    eager = np.asarray(model(images))
    assert np.abs(eager).max() > 0.01 and np.abs(eager_after - eager).max() > 0.01
    np.testing.assert_allclose(compiled, eager, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(compiled_after, eager_after, rtol=1e-4, atol=1e-6)
    class Wrapper(keras.layers.Layer):  # a call inside another layer's call inherits its `training`
        def call(self, inputs: np.ndarray, training: bool | None = None) -> object:
            return model(inputs)

    monkeypatch.setattr(compiled_call, "COMPILED_CALL", True)
    trained = np.asarray(Wrapper()(images, training=True))
    assert np.abs(trained - eager).max() > 1e-3  # batch statistics, not the moving ones
