"""The PyTorch fast paths of the package's Conv2D, DepthwiseConv2D and BatchNormalization
give Keras' own results (forward and gradients)."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from helpers import randomize

import mobilenetv3
from mobilenetv3 import layers

pytestmark = pytest.mark.skipif(keras.backend.backend() != "torch", reason="PyTorch-backend fast paths")


def _both(fn):
    """`fn()` with the fast paths on, then with Keras' own ops."""
    try:
        fast = keras.ops.convert_to_numpy(fn())
        layers.TORCH_FAST_PATHS = False
        return fast, keras.ops.convert_to_numpy(fn())
    finally:
        layers.TORCH_FAST_PATHS = True


@pytest.mark.core
def test_backbone_inference_equals_keras_ops():
    model = mobilenetv3.MobileNetV3SmallBackbone(include_rescaling=True)
    randomize(model)
    images = np.random.default_rng(0).uniform(0, 255, (2, 97, 130, 3)).astype("float32")
    fast, reference = _both(lambda: model(images, training=False))
    assert np.abs(reference).max() > 0.1
    np.testing.assert_allclose(fast, reference, atol=1e-5, rtol=1e-5)


@pytest.mark.core
@pytest.mark.parametrize("kind, kwargs", [
    ("conv", {"filters": 5, "kernel_size": 3, "strides": 2, "padding": "valid"}),
    ("conv", {"filters": 5, "kernel_size": 2, "strides": 1, "padding": "same", "activation": "relu"}),
    ("conv", {"filters": 5, "kernel_size": 3, "strides": 2, "padding": "same"}),  # falls back to Keras
    ("depthwise", {"kernel_size": 5, "strides": 1, "padding": "same", "use_bias": True}),
    ("depthwise", {"kernel_size": 3, "strides": 2, "padding": "valid"}),
])
def test_conv_forward_and_gradients_equal_keras_ops(kind, kwargs):
    import torch

    layer = layers.Conv2D(**kwargs) if kind == "conv" else layers.DepthwiseConv2D(**kwargs)
    x = torch.tensor(np.random.default_rng(1).normal(size=(2, 9, 11, 4)).astype("float32"))
    layer.build(x.shape)
    if layer.use_bias:
        layer.bias.assign(np.random.default_rng(2).normal(size=layer.bias.shape))

    def kernel_gradient():
        layer.kernel.value.grad = None
        layer(x).square().sum().backward()
        return layer.kernel.value.grad.clone()

    fast, reference = _both(lambda: layer(x))
    np.testing.assert_allclose(fast, reference, atol=1e-5, rtol=1e-5)
    fast, reference = _both(kernel_gradient)
    np.testing.assert_allclose(fast, reference, atol=1e-4, rtol=1e-5)


@pytest.mark.core
def test_batch_norm_inference_equals_keras_and_training_uses_keras():
    layer = layers.BatchNormalization(epsilon=1e-3)
    x = np.random.default_rng(3).normal(2.0, 3.0, (2, 5, 6, 8)).astype("float32")
    layer.build(x.shape)
    rng = np.random.default_rng(4)
    for variable, value in [(layer.moving_mean, rng.normal(size=8)), (layer.moving_variance, rng.uniform(0.5, 2, 8)),
                            (layer.gamma, rng.normal(size=8)), (layer.beta, rng.normal(size=8))]:
        variable.assign(value)
    fast, reference = _both(lambda: layer(x, training=False))
    np.testing.assert_allclose(fast, reference, atol=1e-5, rtol=1e-5)
    trained = keras.ops.convert_to_numpy(layer(x, training=True))
    assert abs(trained.mean() - layer.beta.numpy().mean()) < 0.5  # batch statistics, not the moving ones


@pytest.mark.core
def test_depthwise_fast_path_traces_with_static_groups_under_torch_compile():
    """Under torch.compile (Keras' jit_compile=True) shapes are symbolic: `groups` must stay a Python int
    (Inductor refuses a symbolic one). Dynamo tracing only, with a backend that records conv2d's groups."""
    import torch

    layer = layers.DepthwiseConv2D(3, padding="same")
    images = np.random.default_rng(0).uniform(size=(2, 9, 11, 4)).astype("float32")
    expected = keras.ops.convert_to_numpy(layer(images))
    groups = []

    def record(graph_module, example_inputs):
        groups.extend(node.args[6] for node in graph_module.graph.nodes if node.target is torch.conv2d)
        return graph_module.forward

    torch._dynamo.reset()
    compiled = torch.compile(lambda x: layer(x), backend=record, dynamic=True)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(compiled(torch.from_numpy(images))), expected, atol=1e-6)
    assert groups == [4], groups
