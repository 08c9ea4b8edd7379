"""`MobileNetV3Task`: what every task model shares (after keras-hub's `Task`).

A task is a backbone plus a head. The base owns the backbone's
(de)serialization, `from_preset` / `save_to_preset`, the split of
`from_preset` keyword arguments into head and backbone arguments, and the
dtype policy (the backbone's). A new task (say a detector) is one file:

```python
class MobileNetV3ObjectDetector(MobileNetV3Task):
    def __init__(self, backbone, num_classes, anchors=6, **kwargs):
        inputs = backbone.input
        outputs = {"boxes": ..., "classes": ...}  # its head, on backbone features
        super().__init__(backbone, inputs, outputs, **kwargs)
        self.num_classes, self.anchors = num_classes, anchors
```

Its constructor's arguments after `backbone` are its config (each stored as
an attribute of the same name); its presets are the registered presets whose
`task` is its kind.
"""

from __future__ import annotations

import inspect
import os
import warnings
from typing import Any

import keras
import numpy as np

from mobilenetv3 import presets
from mobilenetv3.core import validation
from mobilenetv3.core.utils import classproperty
from mobilenetv3.nets.backbone import MobileNetV3Backbone, backbone_arguments, check_channels_last
from mobilenetv3.presets import folders, loader
from mobilenetv3.runtime.accelerate import accelerate
from mobilenetv3.weights import Checkpoint


class LogitsLossWarning(RuntimeWarning):
    """A probability loss was given for a task whose output is logits."""


# Loss names and classes that expect probabilities unless from_logits=True.
_PROBABILITY_LOSSES = {
    "sparse_categorical_crossentropy": "SparseCategoricalCrossentropy",
    "categorical_crossentropy": "CategoricalCrossentropy",
}


class MobileNetV3Task(keras.Model):
    """Base class of the task models: a `backbone_cls` backbone and a head.

    Subclasses build their functional graph on `backbone` and call
    `super().__init__(backbone, inputs, outputs, **kwargs)`, then store each
    constructor argument as an attribute of the same name.

    Args:
        backbone: the backbone the head sits on.
        inputs: the model's inputs.
        outputs: the head's outputs (a tensor or a dict of tensors).
        **kwargs: passed to `keras.Model` (e.g. `name`).

    Example:

    ```python
    model = mobilenetv3.MobileNetV3ImageClassifier.from_preset("mobilenet_v3_small", num_classes=3)
    isinstance(model, MobileNetV3Task)  # True
    ```
    """

    backbone_cls: type = MobileNetV3Backbone
    kind: str = "task"  # each task's row in `loader.MODEL_CLASSES`

    def __init__(self, backbone: keras.Model, inputs: Any, outputs: Any, **kwargs: Any) -> None:
        valid = (*type(self).config_arguments(), "backbone", *validation.KERAS_MODEL_KWARGS)
        validation.check_keywords(type(self).__name__, kwargs, valid)
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        # The backbone's policy (a functional Model ignores `dtype=`): with
        # mixed_float16, compile() then wraps the optimizer for loss scaling.
        self.dtype_policy = backbone.dtype_policy
        self.backbone = backbone
        accelerate(self)

    @classmethod
    def config_arguments(cls) -> tuple[str, ...]:
        """The constructor's arguments after `backbone`: the task's config."""
        parameters = inspect.signature(cls.__init__).parameters.values()
        return tuple(
            p.name
            for p in parameters
            if p.name not in ("self", "backbone") and p.kind is p.POSITIONAL_OR_KEYWORD
        )

    @classmethod
    def head_arguments(cls) -> tuple[str, ...]:
        """The config arguments `from_preset` takes as keywords."""
        return tuple(name for name in cls.config_arguments() if name != "num_classes")

    def head_config(self) -> dict[str, Any]:
        """The task's constructor arguments, the backbone aside."""
        return {name: getattr(self, name) for name in self.config_arguments()}

    @classmethod
    def head_args_from_checkpoint(cls, checkpoint: Checkpoint) -> dict[str, Any]:
        """Head arguments (beyond `num_classes`) that a weights file implies."""
        return {}

    def get_config(self) -> dict:
        return {
            "name": self.name,
            "trainable": self.trainable,
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            **self.head_config(),
        }

    @classmethod
    def from_config(cls, config: dict) -> MobileNetV3Task:
        config = dict(config)
        backbone = config.pop("backbone", None)
        if not isinstance(backbone, (dict, keras.Model)):
            raise ValueError(
                f"The {cls.__name__} config's `backbone` must be a serialized backbone (a dict with "
                f"'class_name' and 'config', as get_config() writes); got {backbone!r}. To build from a "
                f"preset name, use {cls.__name__}.from_preset(name, num_classes=...)."
            )
        if isinstance(backbone, dict):
            backbone = cls.backbone_cls.from_config(backbone["config"])
        return cls(backbone=backbone, **config)

    @classproperty
    def presets(cls) -> dict[str, dict]:
        """This task's preset names and their metadata (backbone presets,
        which need `num_classes`, are listed by `MobileNetV3Backbone.presets`)."""
        return presets.describe(presets.task_presets(cls.kind))

    @classmethod
    def from_preset(
        cls,
        preset: str | os.PathLike,
        load_weights: bool | None = None,
        num_classes: int | None = None,
        **kwargs: Any,
    ) -> MobileNetV3Task:
        """This task from a preset holding one, or a new head on the
        backbone of any other preset when `num_classes` is given.

        Args:
            preset: a preset name (this task's, see `presets`, or a backbone
                preset), a preset folder (ours or keras-cv's), a weights
                file, or a kaggle:// / hf:// handle.
            load_weights: None loads weights when the preset has them; True
                requires them; False gives random initialization.
            num_classes: a new head with this many classes (required when
                the preset holds no such task; otherwise it replaces the head).
            **kwargs: head arguments (see `head_arguments()`), overrides of
                the backbone config (e.g. `input_shape`), or
                `weights_file=PATH` to load a downloaded weights file
                instead of fetching it.

        Example:

        ```python
        model = mobilenetv3.MobileNetV3ImageClassifier.from_preset("mobilenet_v3_small", num_classes=5)
        ```
        """
        valid = (*cls.head_arguments(), *backbone_arguments(), *loader.LOAD_KEYWORDS)
        validation.check_keywords(f"{cls.__name__}.from_preset", kwargs, valid)
        head_args = {k: kwargs.pop(k) for k in cls.head_arguments() if k in kwargs}
        model = loader.load_model(preset, cls, load_weights, head_args=head_args, **kwargs)
        if isinstance(model, cls) and num_classes is None:
            return model
        if num_classes is None:
            holder = type(model).__name__
            use = "" if holder.endswith("Backbone") else f"load it with {holder}.from_preset({str(preset)!r}), or "
            raise ValueError(
                f"{str(preset)!r} holds a {getattr(model, 'kind', 'backbone')} ({holder}), not a {cls.__name__}: "
                f"{use}pass `num_classes` to put a new head on its backbone."
            )
        return cls(getattr(model, "backbone", model), num_classes, **head_args)

    def outputs_logits(self) -> bool:
        """Whether the output is logits (no softmax/sigmoid activation)."""
        activation = keras.activations.get(getattr(self, "activation", None))
        return activation not in (keras.activations.softmax, keras.activations.sigmoid)

    def default_loss(self) -> Any:
        """The loss `compile(loss="auto")` uses: sparse categorical
        cross-entropy, from logits when the output is logits (per pixel for
        a segmenter); None for tasks that compute their own loss."""
        if not hasattr(self, "activation"):
            return None
        return keras.losses.SparseCategoricalCrossentropy(from_logits=self.outputs_logits())

    def default_metrics(self) -> Any:
        """The metrics `compile(metrics="auto")` uses."""
        return [keras.metrics.SparseCategoricalAccuracy(name="accuracy")] if hasattr(self, "activation") else None

    def compile(self, optimizer: Any = "auto", loss: Any = "auto", *, metrics: Any = "auto", **kwargs: Any) -> None:
        """`keras.Model.compile` with keras-hub's task defaults.

        Args:
            optimizer: "auto" (Adam, learning rate 1e-3), or any optimizer
                `keras.Model.compile` takes.
            loss: "auto" (`default_loss()`: sparse categorical cross-entropy
                from logits when the output is logits), or any loss. A
                probability loss ("sparse_categorical_crossentropy",
                "categorical_crossentropy" or such a loss object with
                `from_logits=False`) given for a logits output is replaced by
                its `from_logits=True` form, with a `LogitsLossWarning`:
                taken as given it would train on logits as if they were
                probabilities and stay near chance.
            metrics: "auto" (sparse categorical accuracy, named "accuracy"),
                or any metrics.
            **kwargs: passed to `keras.Model.compile`.

        Example:

        ```python
        import numpy as np
        import mobilenetv3

        model = mobilenetv3.MobileNetV3ImageClassifier.from_preset(
            "mobilenet_v3_small", num_classes=3, input_shape=(32, 32, 3))
        model.compile()  # Adam, from-logits cross-entropy, accuracy
        model.fit(np.zeros((2, 32, 32, 3)), np.array([0, 1]), verbose=0)
        ```
        """
        if isinstance(optimizer, str) and optimizer == "auto":
            optimizer = keras.optimizers.Adam(1e-3)
        if isinstance(loss, str) and loss == "auto":
            loss = self.default_loss()
        elif self.outputs_logits() and hasattr(self, "activation"):
            loss = _logits_loss(loss)
        if isinstance(metrics, str) and metrics == "auto":
            metrics = self.default_metrics()
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)

    def fit(self, x: Any = None, y: Any = None, *args: Any, **kwargs: Any) -> Any:
        """`keras.Model.fit`; with a sparse categorical loss, array labels are
        checked first, on the host, in one pass: whole numbers in
        `[0, num_classes)` (or the loss's `ignore_class`), and a segmenter's
        masks of the images' height and width (`datasets.check_masks`).
        Unchecked, out-of-range labels stop TensorFlow deep in the loss,
        PyTorch with an IndexError, and train silently on JAX; fractional
        ones are truncated. Datasets and generators are not checked.

        Example:

        ```python
        model.compile()
        model.fit(np.zeros((2, 32, 32, 3)), np.array([0, 5]))  # ValueError: `y` holds a label 5 ...
        ```
        """
        if y is not None and hasattr(x, "shape") and hasattr(y, "shape"):
            self.check_sparse_labels(tuple(x.shape), y)
        return super().fit(x, y, *args, **kwargs)

    def check_sparse_labels(self, image_shape: tuple[int, ...], labels: Any) -> None:
        """Check `labels` for `image_shape` images (see `fit`); nothing
        unless the compiled loss is sparse categorical cross-entropy."""
        sparse, ignore_class = _sparse_loss(getattr(self, "loss", None))
        num_classes = getattr(self, "num_classes", None)
        if not sparse or num_classes is None or not isinstance(self.output, keras.KerasTensor):
            return
        from mobilenetv3.datasets.segmentation import check_masks

        labels = _to_numpy(labels)
        if len(self.output.shape) == 4:
            check_masks(image_shape, labels, num_classes, ignore_class)
            return
        if labels.shape not in ((image_shape[0],), (image_shape[0], 1)):
            raise ValueError(
                f"`y` must be class labels of shape ({image_shape[0]},), one per image of `x` "
                f"{tuple(image_shape)}; got {labels.shape}."
            )
        validation.check_class_labels(labels, num_classes, ignore_index=ignore_class, axes=("image",))

    def save_to_preset(self, path: str | os.PathLike) -> None:
        """Write a preset folder (`config.json`, `model.weights.h5`,
        `metadata.json`) atomically; `from_preset(path)` reads it back.

        Example:

        ```python
        model.save_to_preset("my_model")
        same = type(model).from_preset("my_model")
        ```
        """
        folders.save_preset(self, path)


def _to_numpy(array: Any) -> np.ndarray:
    """An array of any backend (or a host tensor of another) as numpy."""
    if isinstance(array, np.ndarray):
        return array
    try:
        return np.asarray(array)
    except (TypeError, ValueError, RuntimeError):  # e.g. a CUDA tensor
        return keras.ops.convert_to_numpy(array)


def _sparse_loss(loss: Any) -> tuple[bool, int | None]:
    """Whether `loss` is sparse categorical cross-entropy, and its `ignore_class`."""
    if isinstance(loss, str):
        return loss in ("sparse_categorical_crossentropy", "SparseCategoricalCrossentropy"), None
    if loss is keras.losses.sparse_categorical_crossentropy:
        return True, None
    if isinstance(loss, keras.losses.SparseCategoricalCrossentropy):
        return True, loss.get_config().get("ignore_class")
    return False, None


def _logits_loss(loss: Any) -> Any:
    """`loss` in its from-logits form when it expects probabilities, with a
    `LogitsLossWarning`; otherwise `loss` itself."""
    if isinstance(loss, str) and loss in _PROBABILITY_LOSSES:
        name = _PROBABILITY_LOSSES[loss]
        replacement = getattr(keras.losses, name)(from_logits=True)
    elif type(loss).__name__ in _PROBABILITY_LOSSES.values() and not loss.get_config().get("from_logits"):
        name = type(loss).__name__
        replacement = type(loss).from_config({**loss.get_config(), "from_logits": True})
    else:
        return loss
    warnings.warn(
        f"compile(loss={loss!r}) expects probabilities, but this model outputs logits (activation=None): "
        f"training with {name}(from_logits=True) instead. Pass loss='auto' or {name}(from_logits=True), "
        "or build the task with activation='softmax', to silence this warning.",
        LogitsLossWarning,
        stacklevel=3,
    )
    return replacement


def check_backbone(backbone: Any, task: type) -> None:
    """A TypeError unless `backbone` is a `MobileNetV3Backbone` (a preset
    name, say, goes to `from_preset`); a ValueError unless Keras' image data
    format is "channels_last" (the task's head layers read it)."""
    check_channels_last(task.__name__)
    if not isinstance(backbone, MobileNetV3Backbone):
        raise TypeError(
            f"`backbone` of {task.__name__} must be a MobileNetV3Backbone; got {backbone!r} of type "
            f"{type(backbone).__name__}. To start from a preset, use "
            f"{task.__name__}.from_preset(preset, num_classes=...)."
        )
