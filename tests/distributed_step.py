"""One SGD step on 1 device and on 2 data-parallel replicas; prints JSON.

Run in a fresh process (the device setup must come before the engine starts):

    python tests/distributed_step.py jax   # keras.distribution.DataParallel
    python tests/distributed_step.py tf    # tf.distribute.MirroredStrategy

Both use two virtual CPU devices. The model is a 4-block MobileNetV3-Small classifier
without dropout whose BatchNorm statistics are first calibrated on the data
(so activations are not vanishingly small) and then, with `--frozen-bn`,
frozen (inference mode): each example's gradient then depends on that
example only, so the mean over two replicas of 4 equals the mean over 8.
"""

from __future__ import annotations

import json
import os
import sys

ENGINE = sys.argv[1]
FROZEN_BN = "--frozen-bn" in sys.argv
GLOBAL_BATCH = 8

if ENGINE == "jax":
    os.environ["KERAS_BACKEND"] = "jax"
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
elif ENGINE == "tf":
    os.environ["KERAS_BACKEND"] = "tensorflow"
    import tensorflow as tf

    (cpu,) = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
    )
else:
    raise SystemExit(f"engine must be 'jax' or 'tf'; got {ENGINE!r}")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import mobilenetv3  # noqa: E402
from mobilenetv3.training import calibrate_batchnorm  # noqa: E402


def build() -> keras.Model:
    keras.utils.set_random_seed(0)
    # The first four blocks of MobileNetV3-Small: the same layers, quick to compile.
    backbone = mobilenetv3.MobileNetV3Backbone(
        stackwise_expansion=[1, 72 / 16, 88 / 24, 4],
        stackwise_filters=[16, 24, 24, 40],
        stackwise_kernel_size=[3, 3, 3, 5],
        stackwise_stride=[2, 2, 1, 2],
        stackwise_se_ratio=[0.25, None, None, 0.25],
        stackwise_activation=["relu", "relu", "relu", "hard_swish"],
        include_rescaling=False,
        input_shape=(32, 32, 3),
    )
    model = mobilenetv3.MobileNetV3ImageClassifier(backbone, 4, dropout=0.0)
    if FROZEN_BN:
        for layer in backbone.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.trainable = False
    return model


def compile_and_step(model: keras.Model, weights: list, images: np.ndarray, labels: np.ndarray) -> list:
    model.set_weights(weights)
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=0.1),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(images, labels, batch_size=GLOBAL_BATCH, epochs=1, shuffle=False, verbose=0)
    return [np.asarray(w) for w in model.get_weights()]


def main() -> None:
    rng = np.random.default_rng(0)
    images = rng.normal(size=(GLOBAL_BATCH, 32, 32, 3)).astype("float32")
    labels = rng.integers(0, 4, size=(GLOBAL_BATCH,))

    single = build()
    calibrate_batchnorm(single.backbone, [(images, labels)])
    initial = [np.asarray(w) for w in single.get_weights()]
    after_single = compile_and_step(single, initial, images, labels)

    if ENGINE == "jax":
        devices = keras.distribution.list_devices("cpu")
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
        replicas = len(devices)
        after_parallel = compile_and_step(build(), initial, images, labels)
    else:
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        replicas = strategy.num_replicas_in_sync
        with strategy.scope():
            model = build()
            after_parallel = compile_and_step(model, initial, images, labels)

    change = max(float(np.abs(a - b).max()) for a, b in zip(after_single, initial, strict=True))
    diff = max(float(np.abs(a - b).max()) for a, b in zip(after_single, after_parallel, strict=True))
    relative = max(
        float(np.abs(a - b).max() / (np.abs(a - i).max() + 1e-12))
        for a, b, i in zip(after_single, after_parallel, initial, strict=True)
    )
    print(json.dumps({"replicas": replicas, "max_change": change, "max_diff": diff, "max_relative_diff": relative}))


if __name__ == "__main__":
    main()
