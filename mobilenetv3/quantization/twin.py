"""`quantize_aware`: a model's quantization-aware twin, `QATModel`, and
`calibrate_ranges`.

Where the twin quantizes mirrors the LiteRT int8 graph the TFLite converter
makes of the float model (`mobilenetv3.export.tflite_export`, hard-swish kept
float): every tensor that graph holds in int8 is fake-quantized here, at the
same place, and no other:

- the model input (the converter's QUANTIZE; a `Rescaling` after it is folded
  into the first conv, so its output is not quantized again); with
  `quantize_after_rescaling`, a `Rescaling` reading the input is computed on
  the float input and its output is quantized instead (onnxruntime's first
  conv then reads int8: an offset rescaling such as [0, 255] -> [-1, 1] has
  no int8 grid with an integer zero point for the pixels' grid carried through it);
- each conv / depthwise conv / dense with its BatchNorm folded (`QuantConv`),
  after its activation where the runtimes fuse it (relu, relu6), else before
  the activation and after it (hard-swish: DEQUANTIZE, HARD_SWISH, QUANTIZE;
  with `hard_swish="add_mul"`, hard-swish is `QuantHardSwish`, the int8 add
  and multiply onnxruntime's post-training export runs, with its fixed inner
  grid);
- the squeeze-excite pool, squeeze, excite (`relu6(x + 3)`), gate (`/ 6`) and
  product (`QuantSqueezeExcite`);
- residual adds, global pooling and any other op's output;
- not after layers that keep their input's quantization (padding, reshape,
  flatten, dropout, drop path, linear activation), nor after a float op
  (`float_ops`) whose output is a model output (the runtime returns it as
  computed, in float).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import keras
import numpy as np

from mobilenetv3.core import keras_internals as internals
from mobilenetv3.core.normalization import ImagePolicy
from mobilenetv3.core.validation import check_choice
from mobilenetv3.nets.layers import SqueezeAndExcite2D
from mobilenetv3.quantization.layers import (
    FUSED_ACTIVATIONS,
    FakeQuant,
    QuantConv,
    QuantHardSigmoid,
    QuantHardSwish,
    QuantSqueezeExcite,
    check_range,
)
from mobilenetv3.runtime.batch_norm_folding import _foldable_pairs

DEFAULT_FLOAT_OPS = ("hard_swish",)
# "op": one hard-swish op (float between a dequantize and a quantize when in `float_ops`);
# "add_mul": int8 add and multiply (`QuantHardSwish`).
HARD_SWISH_FORMS = ("op", "add_mul")
# Layers whose output has their input's quantization (no new int8 tensor).
_PASS_THROUGH = (
    keras.layers.ZeroPadding2D,
    keras.layers.Flatten,
    keras.layers.Reshape,
    keras.layers.Dropout,
    keras.layers.Rescaling,  # folded into the conv after it by the TFLite converter
    keras.layers.InputLayer,
)
_CONVOLUTIONS = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)


def _is_pass_through(layer: Any) -> bool:
    if isinstance(layer, _PASS_THROUGH) or type(layer).__name__ == "StochasticDepth":
        return True
    return isinstance(layer, keras.layers.Activation) and _activation(layer) == "linear"


def _activation(layer: Any) -> str:
    """The layer's activation by its canonical Keras name ("hard_swish" is "hard_silu")."""
    config = layer.get_config().get("activation")
    if isinstance(config, dict):  # a serialized function
        config = config.get("config", config)
    return config if isinstance(config, str) else getattr(layer.activation, "__name__", "linear")


def _relu_name(layer: Any) -> str:
    """A `keras.layers.ReLU` as the activation it computes ("relu", "relu6"),
    or a name no rule matches (a leaky or thresholded ReLU: quantized before and after)."""
    config = layer.get_config()
    if config.get("negative_slope") or config.get("threshold"):
        return "leaky_relu"
    return {None: "relu", 6.0: "relu6"}.get(config.get("max_value"), "leaky_relu")


def _canonical(name: str) -> str:
    """An activation's canonical Keras name (its serialized form)."""
    return keras.activations.serialize(keras.activations.get(name))


def _options(float_ops: Any, freeze_batchnorm_after: Any, range_momentum: Any, hard_swish: Any = "op",
             quantize_after_rescaling: Any = False, input_range: Any = None) -> dict:
    if isinstance(float_ops, str) or not all(isinstance(op, str) for op in float_ops):
        raise ValueError(f"`float_ops` must be a list of activation names such as ['hard_swish']; got {float_ops!r}.")
    for op in float_ops:
        try:
            keras.activations.get(op)
        except (ValueError, TypeError):
            raise ValueError(f"`float_ops` holds {op!r}, which is not a Keras activation name.") from None
    if freeze_batchnorm_after is not None and (
            isinstance(freeze_batchnorm_after, bool) or not isinstance(freeze_batchnorm_after, int)
            or freeze_batchnorm_after < 0):
        raise ValueError(f"`freeze_batchnorm_after` must be None or an integer >= 0; got {freeze_batchnorm_after!r}.")
    if isinstance(range_momentum, bool) or not isinstance(range_momentum, (int, float)) or not 0 <= range_momentum <= 1:
        raise ValueError(f"`range_momentum` must be a number in [0, 1]; got {range_momentum!r}.")
    if not isinstance(quantize_after_rescaling, bool):
        raise ValueError(f"`quantize_after_rescaling` must be True or False; got {quantize_after_rescaling!r}.")
    return {"float_ops": list(float_ops), "freeze_batchnorm_after": freeze_batchnorm_after,
            "range_momentum": float(range_momentum),
            "hard_swish": check_choice("hard_swish", hard_swish, HARD_SWISH_FORMS),
            "quantize_after_rescaling": quantize_after_rescaling,
            "input_range": None if input_range is None else list(check_range("input_range", input_range))}


def quantize_aware(
    model: keras.Model,
    *,
    float_ops: Sequence[str] = DEFAULT_FLOAT_OPS,
    freeze_batchnorm_after: int | None = None,
    range_momentum: float = 0.99,
    hard_swish: str = "op",
    quantize_after_rescaling: bool = False,
    input_range: tuple[float, float] | None = None,
    name: str | None = None,
) -> QATModel:
    """The quantization-aware twin of a functional float model.

    The twin (`QATModel`) has the model's architecture and weights, and its
    forward pass is the int8 simulation of the LiteRT int8 export: every
    conv, depthwise conv and dense layer is a `QuantConv` (BatchNorm folded,
    weights fake-quantized per output channel, symmetric int8), and every
    tensor the int8 runtime quantizes is fake-quantized per tensor (8-bit
    asymmetric, ranges tracked by moving average: `FakeQuant`); see the
    module docstring for the placement. Gradients are straight-through, so
    `fit` trains it (`compile()` has the float task's defaults). Until its
    ranges are set (`calibrate_ranges`, or training) its activations are
    float (its weights int8). Nested functional models (a task's backbone)
    are inlined.

    Args:
        model: a functional float model: a backbone, a classifier, a
            segmenter, or any functional model of Keras layers.
        float_ops: activations the target runtime computes in float between
            a dequantize and a quantize (LiteRT XNNPACK and onnxruntime have
            no int8 hard-swish). Their inputs and outputs are quantized
            either way; a float op's output that is a model output stays
            float, as the runtime returns it.
        freeze_batchnorm_after: training steps after which BatchNorm uses
            (and updates) only its moving statistics (None: never; 0: from the
            start, e.g. for small fine-tuning batches).
        range_momentum: momentum of the activation ranges' moving averages
            in training; 1 keeps the calibrated ranges (fine-tuning a
            trained model on few images: the weights adapt to the ranges).
        hard_swish: "op" (default): hard-swish is one op, float between a
            dequantize and a quantize if in `float_ops` (LiteRT, OpenVINO),
            else int8 in and out. "add_mul": `x * q(relu6(x + 3)) / 6` with
            the inner hard-sigmoid on the fixed [0, 6] grid (`QuantHardSwish`),
            which onnxruntime runs as QLinearAdd and QLinearMul, as in its
            post-training int8 file (`float_ops` does not apply to it); the
            ONNX and OpenVINO exports only.
        quantize_after_rescaling: quantize the output of a `Rescaling` that
            reads the model input (a backbone's `include_rescaling`) instead
            of the raw input, so the first conv reads int8 in the ONNX
            export (onnxruntime: QLinearConv); the ONNX and OpenVINO exports
            only (LiteRT folds the rescaling into the first conv instead).
        input_range: `(low, high)`, the range of the model's input values
            when it is known, such as `(0, 255)` for raw pixels: the input's
            8-bit grid is then fixed to it (a uint8 export's input codes are
            the pixels themselves, as MediaPipe feeds them), whatever the
            calibration or training images hold; None (default): tracked
            like every other range. With `quantize_after_rescaling` it is
            carried through the `Rescaling`.
        name: the twin's name (default: the model's, plus "_qat").

    Returns:
        A `QATModel`, saved and loaded as `.keras` with its ranges.

    Example:

    ```python
    model = mobilenetv3.MobileNetV3ImageClassifier(
        mobilenetv3.MobileNetV3SmallBackbone(input_shape=(64, 64, 3), alpha=0.35), num_classes=4)
    twin = quantize_aware(model)
    calibrate_ranges(twin, np.random.uniform(0, 255, (8, 64, 64, 3)))
    twin.compile()
    twin.fit(np.random.uniform(0, 255, (8, 64, 64, 3)), np.arange(8) % 4, verbose=0)
    ```
    """
    internals.check_single_input_functional(model)
    options = _options(float_ops, freeze_batchnorm_after, range_momentum, hard_swish, quantize_after_rescaling,
                       input_range)
    float_config = keras.saving.serialize_keras_object(model)
    return _build(model, float_config, options, name or f"{model.name}_qat")


def _build(model: keras.Model, float_config: dict, options: dict, name: str) -> QATModel:
    rewriter = _Rewriter(options)
    source = model.inputs[0]
    inputs = keras.Input(shape=source.shape[1:], dtype=source.dtype, name=source.name)
    outputs = rewriter.run(model, inputs)
    twin = QATModel(inputs, outputs, float_config=float_config, options=options, name=name)
    twin.task_attributes(model)
    return twin


class _Value:
    """A twin tensor, and whether the int8 runtime quantizes it afterwards."""

    def __init__(self, tensor: Any, pending: bool, producer: Any = None, fusable: bool = False,
                 float_op: bool = False, is_input: bool = False, fixed_range: Any = None) -> None:
        self.tensor, self.pending, self.producer, self.is_input = tensor, pending, producer, is_input
        self.fixed_range = fixed_range  # the range its quantizer is fixed to (`input_range`), or None
        self.fusable = fusable  # a QuantConv output: a following relu / relu6 / hard-sigmoid fuses into it
        self.float_op = float_op
        self.quantized: Any = None


class _Rewriter:
    """Walks the float graph (nested models inlined), emitting the twin."""

    def __init__(self, options: dict) -> None:
        self.options = options
        self.float_ops = {_canonical(op) for op in options["float_ops"]}
        self.names: set[str] = set()

    def unique(self, name: str) -> str:
        candidate, index = name, 1
        while candidate in self.names:
            candidate, index = f"{name}_{index}", index + 1
        self.names.add(candidate)
        return candidate

    def fake_quant(self, name: str, fixed_range: Any = None) -> FakeQuant:
        return FakeQuant(self.options["range_momentum"], fixed_range, name=self.unique(f"{name}_quant"))

    def quantized(self, value: _Value) -> Any:
        """The tensor as the next int8 op reads it."""
        if not value.pending:
            return value.tensor
        if value.quantized is None:
            value.quantized = self.fake_quant(value.producer, value.fixed_range)(value.tensor)
        return value.quantized

    def run(self, model: keras.Model, inputs: Any) -> Any:
        values = {id(model.inputs[0]): _Value(inputs, pending=True, producer="input", is_input=True,
                                              fixed_range=self.options["input_range"])}
        outputs = self.inline(model, values)
        return keras.tree.map_structure(self.output, outputs)

    def output(self, value: _Value) -> Any:
        return value.tensor if value.float_op else self.quantized(value)

    def inline(self, model: keras.Model, values: dict[int, _Value]) -> Any:
        nodes = internals.graph_nodes(model)
        pairs = _foldable_pairs(model, nodes)
        folded_away = {id(bn) for bn in pairs.values()}
        for node in nodes:
            if node.is_input:
                continue
            layer = node.operation
            arguments = [values[id(t)] for t in node.input_tensors]
            if id(layer) in folded_away:
                result = arguments[0]
            elif internals.is_functional(layer):
                inner = {id(layer.inputs[0]): arguments[0]}
                result = self.inline(layer, inner)
            else:
                result = self.layer(layer, pairs.get(id(layer)), arguments, node)
            flat = keras.tree.flatten(result)
            for tensor, value in zip(node.outputs, flat, strict=True):
                values[id(tensor)] = value
        return keras.tree.map_structure(lambda t: values[id(t)], internals.outputs_structure(model))

    def layer(self, layer: Any, batch_norm: Any, arguments: list[_Value], node: Any) -> Any:
        name = layer.name
        if isinstance(layer, _CONVOLUTIONS):
            twin = QuantConv(_copy(layer), None if batch_norm is None else _copy(batch_norm),
                             self.options["freeze_batchnorm_after"], name=self.unique(name), dtype=layer.dtype_policy)
            tensor = twin(self.quantized(arguments[0]))
            twin.conv.set_weights(layer.get_weights())
            if batch_norm is not None:
                twin.batch_norm.set_weights(batch_norm.get_weights())
            activation = _activation(layer)
            return _Value(tensor, pending=True, producer=name, fusable=activation == "linear",
                          float_op=activation in self.float_ops)
        if isinstance(layer, SqueezeAndExcite2D):
            twin = QuantSqueezeExcite.from_layer(layer, self.options["range_momentum"], name=self.unique(name))
            tensor = twin(self.quantized(arguments[0]))
            twin.squeeze.conv.set_weights(layer.squeeze_conv.get_weights())
            twin.excite.conv.set_weights(layer.excite_conv.get_weights())
            return _Value(tensor, pending=False, producer=name)
        if isinstance(layer, (keras.layers.Activation, keras.layers.ReLU)):
            activation = _relu_name(layer) if isinstance(layer, keras.layers.ReLU) else _activation(layer)
            source = arguments[0]
            if activation == "linear":
                return source
            if activation == "hard_silu" and self.options["hard_swish"] == "add_mul":
                tensor = QuantHardSwish(name=self.unique(name))(self.quantized(source))
                return _Value(tensor, pending=True, producer=name)
            fuse = source.fusable and activation in (*FUSED_ACTIVATIONS, "hard_sigmoid")
            x = source.tensor if fuse else self.quantized(source)
            if activation == "hard_sigmoid":
                tensor = QuantHardSigmoid(self.options["range_momentum"], name=self.unique(name))(x)
            else:
                tensor = _copy_call(layer, self.unique(name), (x,), {})
            return _Value(tensor, pending=True, producer=name, float_op=activation in self.float_ops)
        if (isinstance(layer, keras.layers.Rescaling) and arguments[0].is_input
                and self.options["quantize_after_rescaling"]):  # float on the input, quantized after
            return _Value(_copy_call(layer, self.unique(name), (arguments[0].tensor,), {}), pending=True,
                          producer=name, fixed_range=_rescaled(arguments[0].fixed_range, layer))
        if _is_pass_through(layer):
            args, kwargs = node.arguments.fill_in({id(t): self.quantized(v) for t, v in
                                                   zip(node.input_tensors, arguments, strict=True)})
            return keras.tree.map_structure(
                lambda t: _Value(t, pending=False, producer=name),
                _copy_call(layer, self.unique(name), args, kwargs))
        args, kwargs = node.arguments.fill_in({id(t): self.quantized(v) for t, v in
                                               zip(node.input_tensors, arguments, strict=True)})
        return keras.tree.map_structure(lambda t: _Value(t, pending=True, producer=name),
                                        _copy_call(layer, self.unique(name), args, kwargs))


def _rescaled(value_range: Any, rescaling: keras.layers.Rescaling) -> tuple[float, float] | None:
    """The range of `Rescaling` outputs over inputs in `value_range` (over
    all channels, widened to hold 0), or None for None."""
    if value_range is None:
        return None
    ends = np.asarray(value_range, "float64")[:, None] * np.ravel(rescaling.scale) + np.ravel(rescaling.offset)
    return min(float(ends.min()), 0.0), max(float(ends.max()), 0.0)


def _copy(layer: Any) -> Any:
    """A new, unbuilt layer of the same class and config."""
    return type(layer).from_config(layer.get_config())


def _copy_call(layer: Any, name: str, args: tuple, kwargs: dict) -> Any:
    try:
        copy = type(layer).from_config({**layer.get_config(), "name": name})
    except NotImplementedError:  # a weightless layer without a config (a segmenter's ResizeLike): shared
        if layer.weights:
            raise
        return layer(*args, **kwargs)
    outputs = copy(*args, **kwargs)
    if layer.weights:
        copy.set_weights(layer.get_weights())
    return outputs


@keras.saving.register_keras_serializable(package="mobilenetv3")
class QATModel(keras.Model):
    """The quantization-aware twin `quantize_aware` returns: a functional
    model whose config is the float model's config plus the QAT options, so
    `.keras` files rebuild it (then load its weights and ranges).

    `compile()` takes the float task's defaults (a classifier's or
    segmenter's sparse cross-entropy, from logits, and accuracy) with Adam
    at 1e-4, a learning rate for fine-tuning a trained model.

    Example:

    ```python
    twin = quantize_aware(model)
    twin.save("twin.keras")
    same = keras.saving.load_model("twin.keras")
    ```
    """

    kind = "qat"  # its row in `presets.loader.MODEL_CLASSES`

    def __init__(self, inputs: Any, outputs: Any, float_config: dict, options: dict, **kwargs: Any) -> None:
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        self.float_config = float_config
        self.options = dict(options)
        self.task_activation: str | None = None
        self.is_sparse_task = False
        self.task_kind: str | None = None
        self.include_rescaling: bool | None = None
        self.preprocessing: str | None = None

    def task_attributes(self, model: keras.Model) -> None:
        """Record what `compile()` needs of the float task, and what a preset
        carries: its classes and how it expects images (its backbone's
        `include_rescaling` and `preprocessing`: the twin's input is the
        float model's)."""
        self.is_sparse_task = hasattr(model, "activation") and hasattr(model, "num_classes")
        self.task_activation = getattr(model, "activation", None) if self.is_sparse_task else None
        self.task_kind = getattr(model, "kind", None)
        backbone = getattr(model, "backbone", model)
        self.include_rescaling = getattr(backbone, "include_rescaling", None)
        self.preprocessing = getattr(backbone, "preprocessing", None)
        self.num_classes = getattr(model, "num_classes", None)
        class_names = getattr(model, "class_names", None)
        self.class_names = list(class_names) if class_names else None
        self.image_policy = ImagePolicy.of_model(model)

    @property
    def activation(self) -> str | None:
        """The float task's output activation (a classifier's `activation`), or None."""
        return self.task_activation

    def outputs_logits(self) -> bool:
        """Whether the output is logits (as the float task's)."""
        return self.task_activation not in ("softmax", "sigmoid")

    def compile(self, optimizer: Any = "auto", loss: Any = "auto", *, metrics: Any = "auto", **kwargs: Any) -> None:
        """`keras.Model.compile` with the float task's defaults (see the class).

        Example:

        ```python
        twin.compile()  # Adam(1e-4), sparse cross-entropy from logits, accuracy
        ```
        """
        if isinstance(optimizer, str) and optimizer == "auto":
            optimizer = keras.optimizers.Adam(1e-4)
        if isinstance(loss, str) and loss == "auto":
            if not self.is_sparse_task:
                raise ValueError("`loss='auto'` needs a classifier or segmenter twin; pass a loss.")
            loss = keras.losses.SparseCategoricalCrossentropy(from_logits=self.outputs_logits())
        if isinstance(metrics, str) and metrics == "auto":
            metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")] if self.is_sparse_task else None
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)

    def compile_from_config(self, config: dict) -> None:
        """Compile from a `.keras` file's compile config (Keras' own, through this `compile`)."""
        self.compile(**keras.saving.deserialize_keras_object(config))
        if getattr(self, "optimizer", None) is not None and self.built:
            self.optimizer.build(self.trainable_variables)

    def float_model(self) -> keras.Model:
        """A new float model of the twin's architecture (its config; fresh
        weights): the model the twin was made from, before training."""
        return keras.saving.deserialize_keras_object(self.float_config)

    def get_config(self) -> dict:
        return {"name": self.name, "trainable": self.trainable, "float_config": self.float_config,
                "options": self.options}

    @classmethod
    def from_config(cls, config: dict, custom_objects: Any = None) -> QATModel:
        model = keras.saving.deserialize_keras_object(config["float_config"], custom_objects=custom_objects)
        twin = _build(model, config["float_config"], _options(**config["options"]), config["name"])
        twin.trainable = config.get("trainable", True)
        return twin


def fake_quant_layers(model: keras.Model) -> list[FakeQuant]:
    """Every `FakeQuant` layer of a twin, nested ones included."""
    return [layer for layer in internals.all_layers(model) if isinstance(layer, FakeQuant)]


def calibrate_ranges(model: keras.Model, images: Iterable[Any] | np.ndarray, batch_size: int = 16,
                     reset: bool = True) -> int:
    """Set a twin's activation ranges to the minimum and maximum of each
    quantized tensor over `images`, at inference, with float activations
    (as the TFLite converter calibrates an int8 export; the weights are
    int8). Weights and BatchNorm statistics are not changed.

    Args:
        model: a `QATModel`.
        images: an array of images `(N, height, width, 3)` in the model's
            input range, or an iterable of such batches (or of
            `(images, labels)` pairs).
        batch_size: batch size for an array.
        reset: forget the current ranges first.

    Returns:
        The number of images seen.

    Example:

    ```python
    calibrate_ranges(twin, calibration_images)
    ```
    """
    layers = fake_quant_layers(model)
    if not layers:
        raise ValueError("`model` has no FakeQuant layers: pass the twin `quantize_aware` returned.")
    if isinstance(images, np.ndarray) or hasattr(images, "shape"):
        images = np.asarray(images, "float32")
        batches: Iterable[Any] = (images[i:i + batch_size] for i in range(0, len(images), batch_size))
    else:
        batches = images
    seen = 0
    try:
        for layer in layers:
            if reset:
                layer.reset()
            layer.observing = True
        for batch in batches:
            if isinstance(batch, (tuple, list)):
                batch = batch[0]
            batch = keras.ops.convert_to_tensor(np.asarray(batch, "float32"))
            model(batch, training=False)
            seen += int(batch.shape[0])
    finally:
        for layer in layers:
            layer.observing = False
    if not seen:
        raise ValueError("`images` held no images to calibrate on.")
    return seen
