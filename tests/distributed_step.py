"""One SGD step on 1 device and on 2 data-parallel replicas, with BatchNorm
frozen and with BatchNorm in training mode; prints JSON
`{"frozen_bn": {...}, "training_bn": {...}}`.

Run in a fresh process (the device setup must come before the engine starts):

    python tests/distributed_step.py jax   # keras.distribution.DataParallel
    python tests/distributed_step.py tf    # tf.distribute.MirroredStrategy

Both use two virtual CPU devices. The model is a 4-block MobileNetV3-Small classifier
without dropout whose BatchNorm statistics are first calibrated on the data
(so activations are not vanishingly small) and then, in the `frozen_bn` run,
frozen (inference mode): each example's gradient then depends on that
example only, so the mean over two replicas of 4 equals the mean over 8.
Both runs share one process (one engine start-up instead of two).
"""

from __future__ import annotations

import json
import os
import sys

ENGINE = sys.argv[1]
GLOBAL_BATCH = 8

if ENGINE == "jax":
    os.environ["KERAS_BACKEND"] = "jax"
    # Without LLVM's optimizations XLA compiles the op-by-op programs much
    # faster (see tests/test_multiprocess.py); both sides of the comparison
    # run in this process with the same flags.
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2 --xla_backend_optimization_level=0"
elif ENGINE == "tf":
    os.environ["KERAS_BACKEND"] = "tensorflow"
    import tensorflow as tf

    (cpu,) = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
    )
    # One strategy for both runs: a second MirroredStrategy in the process
    # reuses the first one's collective instance keys (a shape mismatch).
    STRATEGY = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
else:
    raise SystemExit(f"engine must be 'jax' or 'tf'; got {ENGINE!r}")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import mobilenetv3  # noqa: E402
from mobilenetv3.training import calibrate_batchnorm  # noqa: E402


def build(frozen_bn: bool) -> keras.Model:
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
    if frozen_bn:
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


def compare(frozen_bn: bool, images: np.ndarray, labels: np.ndarray) -> dict:
    single = build(frozen_bn)
    calibrate_batchnorm(single.backbone, [(images, labels)])
    initial = [np.asarray(w) for w in single.get_weights()]
    after_single = compile_and_step(single, initial, images, labels)

    if ENGINE == "jax":
        devices = keras.distribution.list_devices("cpu")
        replicas = len(devices)
        with keras.distribution.DataParallel(devices=devices).scope():
            after_parallel = compile_and_step(build(frozen_bn), initial, images, labels)
    else:
        replicas = STRATEGY.num_replicas_in_sync
        with STRATEGY.scope():
            model = build(frozen_bn)
            after_parallel = compile_and_step(model, initial, images, labels)

    change = max(float(np.abs(a - b).max()) for a, b in zip(after_single, initial, strict=True))
    diff = max(float(np.abs(a - b).max()) for a, b in zip(after_single, after_parallel, strict=True))
    relative = max(
        float(np.abs(a - b).max() / (np.abs(a - i).max() + 1e-12))
        for a, b, i in zip(after_single, after_parallel, initial, strict=True)
    )
    return {"replicas": replicas, "max_change": change, "max_diff": diff, "max_relative_diff": relative}


def main() -> None:
    rng = np.random.default_rng(0)
    images = rng.normal(size=(GLOBAL_BATCH, 32, 32, 3)).astype("float32")
    labels = rng.integers(0, 4, size=(GLOBAL_BATCH,))
    print(json.dumps({"frozen_bn": compare(True, images, labels), "training_bn": compare(False, images, labels)}))


if __name__ == "__main__":
    main()
