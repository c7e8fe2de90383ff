"""Child process of tests/test_distribute.py: tiny training runs under tf.distribute strategies.

    python tests/distribute_child.py KIND,RUN_DIR,STRATEGY,STEPS[,resume] [KIND,RUN_DIR,STRATEGY,STEPS[,resume] ...]

KIND: sr | gan | classifier | insert, at the tiny preset in float32 on the default phantom, checkpointed every
VAL_EVERY steps (sr: a third of STEPS pretraining, the rest the GAN phase). The runs go one after the other;
before each, the global seeds are reset, so that every run builds its dataset from the same state (tf.data's
seeded shuffles depend on the global seed a previous run left). A process of its own, because:
- with 'mirrored' among the runs, 2 logical CPU devices are configured first, before TensorFlow initialises;
- with 'multiworker', the process is one worker of the cluster TF_CONFIG describes; every worker is started
  with the same runs, and all of them use the process's one MultiWorkerMirroredStrategy.
"""

from __future__ import annotations

import sys

DEVICES = 2
VAL_EVERY = 2


def _configure_devices(n: int) -> None:
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * n)


def _train(kind: str, run: str, strategy: str, steps: int, resume: bool) -> None:
    import keras

    keras.utils.set_random_seed(0)
    common = dict(preset="tiny", strategy=strategy, resume=resume, precision="float32", verbose=0)
    if kind == "sr":
        from mammo_tf.training.sr_trainer import train_sr

        train_sr(None, run, pretrain_steps=steps // 3, gan_steps=steps - steps // 3, val_every=VAL_EVERY, **common)
    elif kind == "gan":
        from mammo_tf.training.gan_trainer import train_gan

        train_gan(None, run, steps=steps, val_every=VAL_EVERY, **common)
    elif kind == "classifier":
        from mammo_tf.training.classifier_trainer import train_classifier

        train_classifier(None, run, steps=steps, val_every=VAL_EVERY, **common)
    elif kind == "insert":
        from mammo_tf.training.insert_trainer import train_insert

        train_insert(None, run, steps=steps, val_every=VAL_EVERY, **common)
    else:
        raise SystemExit(f"unknown kind {kind!r}")


def main(specs: list[str]) -> None:
    runs = [spec.split(",") for spec in specs]
    if any(strategy == "mirrored" for _, _, strategy, *_ in runs):
        _configure_devices(DEVICES)
    for kind, run, strategy, steps, *flags in runs:
        _train(kind, run, strategy, int(steps), resume="resume" in flags)


if __name__ == "__main__":
    main(sys.argv[1:])
