"""The PyTorch fast paths of the package's Conv2D, DepthwiseConv2D and BatchNormalization
give Keras' own results (forward and gradients)."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from helpers import randomize

import mobilenetv3
from mobilenetv3.nets import layers
from mobilenetv3.runtime import direct_call, kernels

pytestmark = pytest.mark.skipif(keras.backend.backend() != "torch", reason="PyTorch-backend fast paths")


def _both(fn):
    """`fn()` with the fast paths on, then with Keras' own ops."""
    try:
        fast = keras.ops.convert_to_numpy(fn())
        kernels.TORCH_FAST_PATHS = False
        return fast, keras.ops.convert_to_numpy(fn())
    finally:
        kernels.TORCH_FAST_PATHS = True


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
    ("conv", {"filters": 5, "kernel_size": 3, "strides": 2, "padding": "same"}),  # 9 -> pad (1, 1); 11 -> (1, 1)
    ("conv", {"filters": 5, "kernel_size": 2, "strides": 2, "padding": "same"}),  # 9 -> pad (0, 1): F.pad
    ("depthwise", {"kernel_size": 5, "strides": 2, "padding": "same"}),  # 9 -> (2, 2); 11 -> (2, 2)
    ("depthwise", {"kernel_size": 4, "strides": 2, "padding": "same"}),  # (1, 2): zero-shifted kernel
    ("depthwise", {"kernel_size": 2, "strides": 2, "padding": "same", "use_bias": True}),  # (0, 1)
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

    def inference():
        with torch.no_grad():  # strided depthwise: the zero-tap kernel instead of a padded copy
            return layer(x)

    for forward in (lambda: layer(x), inference):
        fast, reference = _both(forward)
        np.testing.assert_allclose(fast, reference, atol=1e-5, rtol=1e-5)
    fast, reference = _both(kernel_gradient)
    np.testing.assert_allclose(fast, reference, atol=1e-4, rtol=1e-5)


@pytest.mark.core
@pytest.mark.parametrize("use_bias", [True, False])
def test_pointwise_conv_of_a_pooled_map_is_a_matrix_product_with_keras_gradients(use_bias, monkeypatch):
    """A 1x1 conv of a 1x1 map (squeeze-excite, classifier head) is one matrix product on the stored
    kernel: outputs and the gradients of kernel, bias and input equal Keras' own ops."""
    import torch

    layer = layers.Conv2D(5, 1, use_bias=use_bias, activation="relu")
    x = torch.tensor(np.random.default_rng(1).normal(size=(3, 1, 1, 6)).astype("float32"), requires_grad=True)
    layer.build(x.shape)
    if use_bias:
        layer.bias.assign(np.random.default_rng(2).normal(size=layer.bias.shape))
    products = []
    matmul = kernels._pointwise_matmul
    monkeypatch.setattr(kernels, "_pointwise_matmul", lambda *a: products.append(1) or matmul(*a))

    def gradients():
        for tensor in [x] + [v.value for v in layer.trainable_variables]:
            tensor.grad = None
        layer(x).square().sum().backward()
        return np.concatenate([t.grad.numpy().ravel() for t in [x] + [v.value for v in layer.trainable_variables]])

    fast, reference = _both(lambda: layer(x))
    assert products
    assert np.abs(reference).max() > 0.1
    np.testing.assert_allclose(fast, reference, atol=1e-5, rtol=1e-5)
    fast, reference = _both(gradients)
    np.testing.assert_allclose(fast, reference, atol=1e-4, rtol=1e-5)


def _batch_norm_layer(channels=8, momentum=0.9):
    layer = layers.BatchNormalization(epsilon=1e-3, momentum=momentum)
    layer.build((None, 5, 6, channels))
    rng = np.random.default_rng(4)
    for variable, value in [(layer.moving_mean, rng.normal(size=channels)),
                            (layer.moving_variance, rng.uniform(0.5, 2, channels)),
                            (layer.gamma, rng.normal(size=channels)), (layer.beta, rng.normal(size=channels))]:
        variable.assign(value)
    return layer


@pytest.mark.core
def test_batch_norm_inference_equals_keras():
    layer = _batch_norm_layer()
    x = np.random.default_rng(3).normal(2.0, 3.0, (2, 5, 6, 8)).astype("float32")
    fast, reference = _both(lambda: layer(x, training=False))
    np.testing.assert_allclose(fast, reference, atol=1e-5, rtol=1e-5)


@pytest.mark.core
def test_batch_norm_training_equals_keras_outputs_gradients_and_moving_statistics():
    """The fused training pass: same outputs, same gradients (input, gamma, beta) and the same moving
    mean and (biased) moving variance after two steps as Keras' own BatchNormalization."""
    import torch

    x0 = np.random.default_rng(3).normal(2.0, 3.0, (3, 5, 6, 8)).astype("float32")
    weights = np.random.default_rng(5).normal(size=x0.shape).astype("float32")
    results = []
    for fast in (True, False):
        kernels.TORCH_FAST_PATHS = fast
        try:
            layer = _batch_norm_layer()
            for _ in range(2):
                x = torch.tensor(x0, requires_grad=True)
                y = layer(x, training=True)
                (y * torch.from_numpy(weights)).sum().backward()
            results.append([y.detach().numpy(), x.grad.numpy(), layer.gamma.value.grad.numpy() / 2,
                            layer.beta.value.grad.numpy() / 2, layer.moving_mean.numpy(),
                            layer.moving_variance.numpy()])
        finally:
            kernels.TORCH_FAST_PATHS = True
    moved = results[1][5]
    assert np.abs(moved - _batch_norm_layer().moving_variance.numpy()).max() > 0.1
    for name, fast, reference in zip(["outputs", "input grad", "gamma grad", "beta grad", "moving mean",
                                      "moving variance"], *results, strict=True):
        np.testing.assert_allclose(fast, reference, atol=2e-5, rtol=2e-5, err_msg=name)


@pytest.mark.core
def test_batch_norm_training_statistics_at_least_as_accurate_as_keras():
    """Keras on PyTorch computes the batch variance as E[x^2] - E[x]^2 in float32, which loses digits
    when the mean is large against the spread; PyTorch's batch norm does not. Against a float64
    reference the fast path is never the worse of the two."""
    x = np.random.default_rng(6).normal(0.0, 1.0, (4, 5, 6, 3)).astype("float32")
    x[..., 0] = x[..., 0] * 3e-2 + 5.0  # variance 1e-3, next to epsilon, under a mean of 5
    mean, variance = x.astype("float64").mean((0, 1, 2)), x.astype("float64").var((0, 1, 2))
    errors = []
    for fast in (True, False):
        kernels.TORCH_FAST_PATHS = fast
        try:
            layer = _batch_norm_layer(channels=3)
            gamma, beta = layer.gamma.numpy().astype("float64"), layer.beta.numpy().astype("float64")
            y = keras.ops.convert_to_numpy(layer(x, training=True))
        finally:
            kernels.TORCH_FAST_PATHS = True
        expected = (x - mean) / np.sqrt(variance + 1e-3) * gamma + beta
        errors.append(np.abs(y - expected).max())
    assert errors[0] <= errors[1] and errors[0] < 1e-5, errors


@pytest.mark.core
def test_classifier_train_step_equals_keras_ops():
    """One `train_on_batch` step (SGD) of a Small classifier: same loss, weights and moving statistics."""
    x = _images((4, 48, 48, 3))
    y = np.array([0, 1, 2, 1])
    results = []
    for fast in (True, False):
        kernels.TORCH_FAST_PATHS = fast
        try:
            keras.utils.set_random_seed(0)
            model = mobilenetv3.MobileNetV3ImageClassifier(
                mobilenetv3.MobileNetV3SmallBackbone(include_rescaling=True), num_classes=3, dropout=0.0)
            randomize(model)
            model.compile(optimizer=keras.optimizers.SGD(0.1),
                          loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
            loss = model.train_on_batch(x, y)
            results.append((loss, [w.numpy() for w in model.weights]))
        finally:
            kernels.TORCH_FAST_PATHS = True
    (fast_loss, fast_weights), (loss, weights) = results
    np.testing.assert_allclose(fast_loss, loss, rtol=1e-5)
    changed = max(float(np.abs(a - b).max()) for a, b in zip(fast_weights, weights, strict=True))
    assert changed < 1e-4, changed


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


def _images(shape=(2, 97, 130, 3), seed=0):
    import torch

    return torch.from_numpy(np.random.default_rng(seed).uniform(0, 255, shape).astype("float32"))


def _no_grad_outputs(model, x):
    import torch

    with torch.no_grad():
        return keras.ops.convert_to_numpy(model(x, training=False))


@pytest.mark.core
@pytest.mark.parametrize("padding", ["same", "symmetric"])
def test_direct_inference_equals_keras_and_leaves_inputs_alone(padding):
    """The layer-by-layer run (BatchNorm folded into the convs, in-place activations, residual adds and
    squeeze-excite scaling) gives Keras' own results, with and without autograd, and never writes
    into the caller's tensor."""
    model = mobilenetv3.MobileNetV3ImageClassifier(
        mobilenetv3.MobileNetV3SmallBackbone(include_rescaling=True, padding=padding), num_classes=7)
    randomize(model)
    x = _images()
    before = x.clone()
    fast = _no_grad_outputs(model, x)
    assert "_direct_plan" in model.__dict__ and "_direct_plan" in model.backbone.__dict__  # the direct run ran
    with_autograd = keras.ops.convert_to_numpy(model(x, training=False))
    kernels.TORCH_FAST_PATHS = False
    try:
        reference = keras.ops.convert_to_numpy(model(x, training=False))
    finally:
        kernels.TORCH_FAST_PATHS = True
    assert np.abs(reference).max() > 0.1
    np.testing.assert_allclose(fast, reference, atol=2e-5, rtol=1e-5)
    np.testing.assert_allclose(with_autograd, reference, atol=2e-5, rtol=1e-5)
    assert bool((x == before).all())
    # the backbone's output is an in-place activation of a fused conv: a feature model gets the same
    np.testing.assert_allclose(_no_grad_outputs(model.backbone, x), keras.ops.convert_to_numpy(
        model.backbone(x, training=False)), atol=2e-5, rtol=1e-5)


@pytest.mark.core
def test_direct_inference_sees_weight_updates():
    """The folded weights kept between calls follow every assignment (the variables' version counters)."""
    import torch

    backbone = mobilenetv3.MobileNetV3SmallBackbone(include_rescaling=False)
    randomize(backbone)
    stem = keras.Model(backbone.input, backbone.get_layer("expanded_conv_depthwise_activation").output)
    x = _images((1, 32, 32, 3), seed=1) / 255.0

    def run():
        with torch.no_grad():
            return keras.ops.convert_to_numpy(direct_call.call(stem, x))

    first = run()
    norm = backbone.get_layer("Conv_BatchNorm")
    norm.moving_variance.assign(norm.moving_variance.numpy() * 4.0)
    backbone.get_layer("Conv").kernel.assign(backbone.get_layer("Conv").kernel.numpy() * -1.0)
    second = run()
    assert "_direct_plan" in stem.__dict__
    kernels.TORCH_FAST_PATHS = False
    try:
        reference = run()
    finally:
        kernels.TORCH_FAST_PATHS = True
    assert np.abs(first - second).max() > 0.1
    np.testing.assert_allclose(second, reference, atol=2e-5, rtol=1e-5)


@pytest.mark.core
def test_batch_one_pointwise_convs_run_as_matrix_products_and_equal_keras(monkeypatch):
    """At batch 1 every 1x1 conv (expansions, projections, squeeze-excite, head) is one matrix
    product over the pixels; the results equal Keras' own ops, before and after a weight changes."""
    model = mobilenetv3.MobileNetV3ImageClassifier(mobilenetv3.MobileNetV3SmallBackbone(), num_classes=5)
    randomize(model)
    x = _images((1, 61, 75, 3)) / 127.5 - 1.0
    products = []
    matmul = direct_call._FusedConv._matmul
    monkeypatch.setattr(direct_call._FusedConv, "_matmul",
                        lambda self, inputs: products.append(id(self.conv)) or matmul(self, inputs))

    def keras_ops():
        kernels.TORCH_FAST_PATHS = False
        try:
            return _no_grad_outputs(model, x)
        finally:
            kernels.TORCH_FAST_PATHS = True

    fast = _no_grad_outputs(model, x)
    pointwise = [layer for layer in model._flatten_layers() if isinstance(layer, keras.layers.Conv2D)
                 and tuple(layer.kernel_size) == (1, 1)]
    assert len(pointwise) > 20 and set(products) == {id(layer) for layer in pointwise}
    np.testing.assert_allclose(fast, keras_ops(), atol=2e-5, rtol=1e-5)
    pointwise[-1].kernel.assign(pointwise[-1].kernel.numpy() * 2.0)
    changed = _no_grad_outputs(model, x)
    assert np.abs(changed - fast).max() > 0.1
    np.testing.assert_allclose(changed, keras_ops(), atol=2e-5, rtol=1e-5)


@pytest.mark.core
def test_direct_inference_falls_back_to_keras_where_unsafe():
    """Training, a float16 policy or a non-tensor input take Keras' own Functional.call."""
    model = mobilenetv3.MobileNetV3SmallBackbone(include_rescaling=True)
    x = _images((1, 32, 32, 3))
    assert direct_call._eligible(model, x, None, None, {})
    assert not direct_call._eligible(model, x, True, None, {})
    assert not direct_call._eligible(model, x.double(), None, None, {})
    assert not direct_call._eligible(model, x.numpy(), None, None, {})
    half = mobilenetv3.MobileNetV3SmallBackbone(include_rescaling=True, dtype="mixed_float16")
    assert not direct_call._eligible(half, x, None, None, {})
    model.get_layer("Conv").enable_lora(2)
    assert not direct_call._eligible(model, x, None, None, {})


@pytest.mark.core
def test_folded_model_direct_inference_equals_keras():
    model = mobilenetv3.MobileNetV3ImageClassifier(mobilenetv3.MobileNetV3SmallBackbone(), num_classes=5)
    randomize(model)
    folded = mobilenetv3.fold_batch_norm(model)
    x = _images((2, 64, 80, 3)) / 127.5 - 1.0
    fast = _no_grad_outputs(folded, x)
    assert "_direct_plan" in folded.__dict__
    kernels.TORCH_FAST_PATHS = False
    try:
        reference = _no_grad_outputs(folded, x)
        original = _no_grad_outputs(model, x)
    finally:
        kernels.TORCH_FAST_PATHS = True
    np.testing.assert_allclose(fast, reference, atol=2e-5, rtol=1e-5)
    np.testing.assert_allclose(fast, original, atol=2e-5, rtol=1e-5)


@pytest.mark.core
def test_predict_on_batch_takes_the_direct_run_and_equals_keras(monkeypatch):
    """`predict_on_batch` on a float32 array goes straight to the direct run (after the first,
    the nested backbone without a `Layer.__call__` of its own); float64 input, a custom `predict_step` and the fast
    paths off take Keras' predict function. All give Keras' outputs."""
    model = mobilenetv3.MobileNetV3ImageClassifier(mobilenetv3.MobileNetV3SmallBackbone(), num_classes=5)
    randomize(model)
    x = keras.ops.convert_to_numpy(_images((2, 64, 64, 3)))
    model.predict_on_batch(x)  # the first run builds the plan
    calls = []
    original = keras.Layer.__call__
    monkeypatch.setattr(keras.Layer, "__call__", lambda self, *a, **k: calls.append(self.name) or original(self, *a, **k))
    fast = model.predict_on_batch(x)
    assert isinstance(fast, np.ndarray) and calls == []
    assert "_direct_plan" in model.__dict__ and "_direct_plan" in model.backbone.__dict__
    keras_path = model.predict_on_batch(x.astype("float64"))
    assert calls  # Keras' predict function called the model
    kernels.TORCH_FAST_PATHS = False
    try:
        reference = model.predict_on_batch(x)
    finally:
        kernels.TORCH_FAST_PATHS = True
    assert np.abs(reference).max() > 0.1
    np.testing.assert_allclose(fast, reference, atol=2e-5, rtol=1e-5)
    np.testing.assert_allclose(keras_path, reference, atol=2e-5, rtol=1e-5)
