"""Runs a small `fine_tune` and writes the final weights; for the tests of
checkpoint/resume after SIGKILL and of multi-process data parallelism.

    python tests/training_worker.py DATA OUT.npz [--checkpoint DIR] [--every N]
        [--kill-at EPOCH:STEP] [--resume] [--job ADDRS --processes N --process-id I]
        [--batch-size B] [--sync-bn] [--train-bn]

`--kill-at` sends SIGKILL to this very process at the start of that batch
(0-based epoch over both phases, 0-based step within it): the kill lands in
the middle of an epoch, after a mid-epoch checkpoint, with work since then lost.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data")
    parser.add_argument("out")
    parser.add_argument("--checkpoint")
    parser.add_argument("--every", type=int, default=0)
    parser.add_argument("--kill-at")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--job")
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--process-id", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--head-epochs", type=int, default=1)
    parser.add_argument("--fine-tune-epochs", type=int, default=1)
    parser.add_argument("--dropout", type=float, default=0.2)
    parser.add_argument("--validation-split", type=float, default=0.2)
    parser.add_argument("--sync-bn", action="store_true")
    parser.add_argument("--train-bn", action="store_true")
    args = parser.parse_args()

    import keras

    from mobilenetv3.training import distributed

    if args.job:
        distributed.join_data_parallel(args.job, args.processes, args.process_id)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    import numpy as np

    from mobilenetv3.training import fine_tune

    callbacks = []
    if args.kill_at:
        kill_epoch, kill_step = (int(v) for v in args.kill_at.split(":"))

        class Kill(keras.callbacks.Callback):
            epoch = 0

            def on_epoch_begin(self, epoch, logs=None):
                self.epoch = epoch

            def on_train_batch_begin(self, batch, logs=None):
                if self.epoch == kill_epoch and batch == kill_step:
                    os.kill(os.getpid(), signal.SIGKILL)

        callbacks.append(Kill())
    result = fine_tune(
        args.data,
        "mobilenet_v3_small",
        image_size=(64, 64),
        batch_size=args.batch_size,
        head_epochs=args.head_epochs,
        fine_tune_epochs=args.fine_tune_epochs,
        unfreeze_blocks=2,
        train_batchnorm=args.train_bn,
        sync_batchnorm=args.sync_bn,
        fine_tune_learning_rate=1e-3,
        dropout=args.dropout,
        validation_split=args.validation_split,
        checkpoint_dir=args.checkpoint,
        checkpoint_every_steps=args.every,
        resume=args.resume,
        callbacks=callbacks,
        verbose=0,
    )
    arrays = {v.path: keras.ops.convert_to_numpy(v.value) for v in result.model.variables if "seed_generator" not in v.path}
    if distributed.is_chief():
        np.savez(args.out, **arrays)
    history = {phase: {k: v for k, v in h.items()} for phase, h in (("head", result.head_history), ("fine_tune", result.fine_tune_history))}
    print(json.dumps({"val_accuracy": result.val_accuracy, "history": history}))


if __name__ == "__main__":
    main()
