"""A few steps of `mobilenetv3.training.distributed.train_steps` on TensorFlow, alone
or as one worker of a 2-process `MultiWorkerMirroredStrategy` job; writes the
variables (chief only) to OUT.npz.

    python tests/tf_job_worker.py OUT.npz [--job ADDRS --process-id I] [--sync-bn]

A random MobileNetV3-Small classifier at 64x64: BatchNorm statistics
calibrated on the data, then the top 2 blocks trained with their BatchNorm
in training mode (momentum 0.5, so one step moves the statistics visibly),
2 SGD steps of a global batch of 8.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ["KERAS_BACKEND"] = "tensorflow"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

GLOBAL_BATCH = 8


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--job")
    parser.add_argument("--process-id", type=int, default=0)
    parser.add_argument("--sync-bn", action="store_true")
    args = parser.parse_args()

    from mobilenetv3.training import distributed

    if args.job:
        distributed.join_data_parallel(args.job, 2, args.process_id)
    import keras
    import numpy as np
    import tensorflow as tf

    import mobilenetv3
    from mobilenetv3.training import calibrate_batchnorm, shard_by_data, unfreeze_top_blocks

    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (2 * GLOBAL_BATCH, 64, 64, 3)).astype("float32")
    labels = rng.integers(0, 4, 2 * GLOBAL_BATCH)
    dataset = shard_by_data(tf.data.Dataset.from_tensor_slices((images, labels)).batch(GLOBAL_BATCH))
    with distributed.active_scope():
        keras.utils.set_random_seed(0)
        backbone = mobilenetv3.MobileNetV3SmallBackbone(input_shape=(64, 64, 3))
        model = mobilenetv3.MobileNetV3ImageClassifier(backbone, 4, dropout=0.0)
        calibrate_batchnorm(backbone, [(images, labels)])
        unfreeze_top_blocks(backbone, 2, train_batchnorm=True)
        for layer in backbone.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = 0.5
        if args.sync_bn:
            distributed.synchronize_batchnorm(model)
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
        initial = {v.path: np.asarray(v.value) for v in model.variables}
        distributed.train_steps(model, dataset, 2, GLOBAL_BATCH)
    if distributed.is_chief():
        arrays = {v.path: np.asarray(v.value) for v in model.variables if "seed_generator" not in v.path}
        np.savez(args.out, **arrays, **{f"initial/{k}": v for k, v in initial.items() if k in arrays})


if __name__ == "__main__":
    main()
