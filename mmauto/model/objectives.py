"""Co-learning objectives added to the task loss (weights pinned or searched):

- contrastive alignment: InfoNCE (CLIP-style, symmetric) between the projected pooled
  embeddings of every pair of inputs, over the rows of a batch where both are present;
- reconstruction: each input's pooled embedding decoded back from the fused vector (a
  multimodal autoencoder objective; the targets are not pushed towards the decoder).

Both are pass-through layers that call `add_loss`, so the functional graph keeps them.
"""

from __future__ import annotations

import keras
from keras import layers, ops

from mmauto.hp import pick

WEIGHTS = [0.0, 0.1, 0.5]


# === Layers ===


@keras.saving.register_keras_serializable("mmauto")
class ContrastiveAlignment(layers.Layer):
    """Returns its pooled inputs unchanged; adds weight * mean pairwise InfoNCE."""

    def __init__(self, n: int, weight: float, dim: int = 32, temperature: float = 0.1, **kwargs):
        super().__init__(**kwargs)
        self.n, self.weight, self.dim, self.temperature = n, float(weight), dim, temperature
        self.proj = [layers.Dense(dim, name=f"proj{i}") for i in range(n)]

    def build(self, shapes):
        for i, p in enumerate(self.proj):
            p.build(shapes[i])

    def call(self, inputs):
        pooled, keeps = inputs[: self.n], inputs[self.n :]
        z = [ops.normalize(ops.cast(p(x), "float32"), axis=-1) for p, x in zip(self.proj, pooled)]
        total, pairs = 0.0, 0
        for i in range(self.n):
            for j in range(i + 1, self.n):
                both = ops.cast(ops.reshape(keeps[i], (-1,)), "float32") * ops.cast(ops.reshape(keeps[j], (-1,)), "float32")
                logits = ops.matmul(z[i], ops.transpose(z[j])) / self.temperature
                # Rows missing either side neither anchor nor serve as negatives.
                logits = logits + (1.0 - ops.expand_dims(both, 0)) * -1e9
                labels = ops.arange(ops.shape(logits)[0])
                ce = keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
                ce_t = keras.losses.sparse_categorical_crossentropy(labels, ops.transpose(logits), from_logits=True)
                denom = ops.maximum(ops.sum(both), 1.0)
                total = total + ops.sum((ce + ce_t) * 0.5 * both) / denom
                pairs += 1
        self.add_loss(self.weight * total / max(pairs, 1))
        return list(pooled)

    def get_config(self):
        return {**super().get_config(), "n": self.n, "weight": self.weight, "dim": self.dim, "temperature": self.temperature}


@keras.saving.register_keras_serializable("mmauto")
class Reconstruction(layers.Layer):
    """Returns the fused vector unchanged; adds weight * MSE of each input's pooled embedding
    decoded from it."""

    def __init__(self, n: int, weight: float, **kwargs):
        super().__init__(**kwargs)
        self.n, self.weight = n, float(weight)

    def build(self, shapes):
        self.dec = [layers.Dense(shapes[i + 1][-1], name=f"dec{i}") for i in range(self.n)]
        for d in self.dec:
            d.build(shapes[0])

    def call(self, inputs):
        fused, targets = inputs[0], inputs[1:]
        loss = 0.0
        for d, t in zip(self.dec, targets):
            t = ops.stop_gradient(ops.cast(t, "float32"))
            loss = loss + ops.mean(ops.square(ops.cast(d(fused), "float32") - t))
        self.add_loss(self.weight * loss / self.n)
        return fused

    def get_config(self):
        return {**super().get_config(), "n": self.n, "weight": self.weight}


# === Wiring ===


def weight(hp, manifest, key: str, n_inputs: int) -> float:
    pinned = getattr(manifest.train, key)
    setting = pinned if pinned is not None else getattr(manifest.search.space, key)
    if n_inputs < 2:
        setting = 0.0
    return pick(hp, key, setting if setting is not None else 0.0, WEIGHTS, default=0.0)


def align(hp, manifest, pooled: dict, keeps: dict) -> dict:
    """Contrastive alignment between every pair of inputs, when its weight is > 0."""
    names = list(pooled)
    w = weight(hp, manifest, "contrastive_weight", len(names))
    if not w:
        return pooled
    out = ContrastiveAlignment(len(names), w, name="contrastive")([*pooled.values(), *(keeps[n] for n in names)])
    return dict(zip(names, out))


def reconstruct(hp, manifest, fused, pooled: dict):
    w = weight(hp, manifest, "reconstruction_weight", len(pooled))
    if not w or fused is None:
        return fused
    return Reconstruction(len(pooled), w, name="reconstruction")([fused, *pooled.values()])
