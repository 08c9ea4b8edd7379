"""TensorFlow SavedModel export with float and uint8 serving signatures."""

from __future__ import annotations

import os
from pathlib import Path

import keras

from mobilenetv3.core.utils import atomic_path

FLOAT_SIGNATURE = "serving_default"
UINT8_SIGNATURE = "serving_uint8"


def require_tensorflow_backend(what: str) -> None:
    """Raise unless Keras runs on TensorFlow (SavedModel/TFLite need it)."""
    if keras.backend.backend() != "tensorflow":
        raise RuntimeError(
            f"{what} needs the TensorFlow backend; Keras is running on {keras.backend.backend()!r}. "
            "Run with KERAS_BACKEND=tensorflow (weights and presets are the same on every backend), "
            "or use export_onnx, which works on every backend."
        )


def image_spec(model: keras.Model, dtype: str, input_size: tuple | None = None, batch_size: int | None = None):
    """A `tf.TensorSpec` for the model's image input."""
    import tensorflow as tf

    shape = list(model.inputs[0].shape)
    if input_size is not None:
        shape[1:3] = input_size
    shape[0] = batch_size
    return tf.TensorSpec(shape, getattr(tf, dtype), name="images")


def write_saved_model(model: keras.Model, path: str | os.PathLike, input_size: tuple | None = None) -> None:
    """Write the SavedModel to `path` directly (no atomic rename)."""
    import tensorflow as tf

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        FLOAT_SIGNATURE,
        lambda images: model(images, training=False),
        input_signature=[image_spec(model, "float32", input_size)],
    )
    archive.add_endpoint(
        UINT8_SIGNATURE,
        lambda images: model(tf.cast(images, model.compute_dtype), training=False),
        input_signature=[image_spec(model, "uint8", input_size)],
    )
    archive.write_out(str(path), verbose=False)


def export_saved_model(
    model: keras.Model, path: str | os.PathLike, *, input_size: tuple[int, int] | None = None
) -> Path:
    """Write a Keras model as a TensorFlow SavedModel folder, atomically.

    Two serving signatures take images `(batch, height, width, 3)`:
    `serving_default` float32 and `serving_uint8` uint8 (cast to float in
    the graph), both raw 0..255 pixels for models with
    `include_rescaling=True` (every preset). Needs the TensorFlow backend.

    Args:
        model: the Keras model (backbone, classifier, segmenter, ...).
        path: the folder to write (replaced if it exists).
        input_size: optional `(height, width)` to fix in the signatures.

    Returns:
        The path written.

    Example:

    ```python
    import tensorflow as tf
    model = mobilenetv3.MobileNetV3SmallBackbone()
    export_saved_model(model, "small_saved_model")
    serving = tf.saved_model.load("small_saved_model").signatures["serving_uint8"]
    serving(images=tf.zeros((1, 224, 224, 3), tf.uint8))
    ```
    """
    require_tensorflow_backend("export_saved_model")
    with atomic_path(path, directory=True) as staging:
        write_saved_model(model, staging, input_size)
    return Path(path)
