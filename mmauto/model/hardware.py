"""Devices: every visible GPU through MirroredStrategy (one trial across them), optional mixed
precision, and seeds. On a CPU-only machine the same code paths run with one replica."""

from __future__ import annotations


def strategy():
    """MirroredStrategy over the visible GPUs, or None (keras-tuner's default) with one or none.

    MMAUTO_STRATEGY=mirrored forces MirroredStrategy over whatever devices there are (CPU
    included), so the multi-GPU code path runs in tests on machines without GPUs.
    """
    import os

    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy()
    if os.environ.get("MMAUTO_STRATEGY") == "mirrored":
        return tf.distribute.MirroredStrategy(["/gpu:0"] if gpus else ["/cpu:0"])
    return None


def build_in_scope(hypermodel, hp, dist):
    """`hypermodel.build(hp)` inside the search's distribution strategy, as keras-tuner builds trials."""
    import contextlib

    with dist.scope() if dist is not None else contextlib.nullcontext():
        return hypermodel.build(hp)


def configure(mixed_precision: bool, seed: int) -> None:
    import keras

    keras.utils.set_random_seed(seed)
    keras.mixed_precision.set_global_policy("mixed_float16" if mixed_precision else "float32")


def describe() -> dict:
    import tensorflow as tf

    return {"gpus": [g.name for g in tf.config.list_physical_devices("GPU")]}
