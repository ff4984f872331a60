"""Co-learning objectives added to the task loss (weights pinned or searched):

- contrastive alignment: InfoNCE (CLIP-style, symmetric) between the projected pooled
  embeddings of every pair of inputs, over the rows of a batch where both are present;
- reconstruction: each input's pooled embedding decoded back from the fused vector (a
  multimodal autoencoder objective; the targets are not pushed towards the decoder);
- variational reconstruction: the fused vector parameterises a diagonal Gaussian latent, the
  decoders read a sample of it, and a KL term pulls it towards N(0, I) (a multimodal VAE).

The first two are pass-through layers; the variational one returns its latent (a sample in
training, the mean at inference), which the head then reads. All call `add_loss`, so the
functional graph keeps them.
"""

from __future__ import annotations

import contextlib

import keras
from keras import layers, ops

from mmauto.config.manifest import RECONSTRUCTIONS
from mmauto.hp import pick

WEIGHTS = [0.0, 0.1, 0.5]
KL_WEIGHTS = [0.001, 0.01, 0.1]


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
                raw = ops.matmul(z[i], ops.transpose(z[j])) / self.temperature
                # Rows missing either side neither anchor nor serve as negatives: the mask goes
                # on the candidates (columns) of each direction, after the transpose.
                off = (1.0 - ops.expand_dims(both, 0)) * -1e9
                labels = ops.arange(ops.shape(raw)[0])
                ce = keras.losses.sparse_categorical_crossentropy(labels, raw + off, from_logits=True)
                ce_t = keras.losses.sparse_categorical_crossentropy(labels, ops.transpose(raw) + off, from_logits=True)
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


def kl_divergence(mean, logvar):
    """KL(N(mean, exp(logvar)) || N(0, I)) per row, in closed form (summed over the latent)."""
    return 0.5 * ops.sum(ops.exp(logvar) + ops.square(mean) - 1.0 - logvar, axis=-1)


@keras.saving.register_keras_serializable("mmauto")
class VariationalReconstruction(layers.Layer):
    """The fused vector parameterises q(z) = N(mean, exp(logvar)) (two Dense layers, the
    fused width). Returns a reparameterised sample of z in training and the mean at inference
    (so the export is deterministic); adds weight * (MSE of each input's pooled embedding
    decoded from z + kl_weight * KL(q || N(0, I)))."""

    def __init__(self, n: int, weight: float, kl_weight: float, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.n, self.weight, self.kl_weight, self.seed = n, float(weight), float(kl_weight), seed
        self.seed_gen = keras.random.SeedGenerator(seed)

    def build(self, shapes):
        units = shapes[0][-1]
        # The sub-layers follow this layer's policy (mixed_float16 computes in float16).
        self.mean = layers.Dense(units, name="mean", dtype=self.dtype_policy)
        self.logvar = layers.Dense(units, name="logvar", dtype=self.dtype_policy)
        self.dec = [layers.Dense(shapes[i + 1][-1], name=f"dec{i}", dtype=self.dtype_policy) for i in range(self.n)]
        for d in (self.mean, self.logvar):
            d.build(shapes[0])
        for d in self.dec:
            d.build((*shapes[0][:-1], units))

    def call(self, inputs, training=False):
        fused, targets = inputs[0], inputs[1:]
        mean = self.mean(fused)
        # float32 for the noise, exp and losses: exp(logvar / 2) overflows float16 early.
        mean32, logvar32 = ops.cast(mean, "float32"), ops.cast(self.logvar(fused), "float32")
        if training:
            eps = keras.random.normal(ops.shape(mean32), seed=self.seed_gen)
            z = ops.cast(mean32 + ops.exp(0.5 * logvar32) * eps, mean.dtype)
        else:
            z = mean
        loss = 0.0
        for d, t in zip(self.dec, targets):
            t = ops.stop_gradient(ops.cast(t, "float32"))
            loss = loss + ops.mean(ops.square(ops.cast(d(z), "float32") - t))
        kl = ops.mean(kl_divergence(mean32, logvar32))
        self.add_loss(self.weight * (loss / self.n + self.kl_weight * kl))
        return z

    def get_config(self):
        return {**super().get_config(), "n": self.n, "weight": self.weight, "kl_weight": self.kl_weight, "seed": self.seed}


# === Wiring ===


def weight(hp, manifest, key: str, n_inputs: int, unset=0.0) -> float:
    """The objective's weight; `unset` is the setting when the manifest leaves it out (0: off)."""
    pinned = getattr(manifest.train, key)
    setting = pinned if pinned is not None else getattr(manifest.search.space, key)
    if n_inputs < 2:
        setting = 0.0
    return pick(hp, key, setting if setting is not None else unset, WEIGHTS, default=0.0)


def align(hp, manifest, pooled: dict, keeps: dict) -> dict:
    """Contrastive alignment between every pair of inputs, when its weight is > 0."""
    names = list(pooled)
    w = weight(hp, manifest, "contrastive_weight", len(names))
    if not w:
        return pooled
    out = ContrastiveAlignment(len(names), w, name="contrastive")([*pooled.values(), *(keeps[n] for n in names)])
    return dict(zip(names, out))


def reconstruct(hp, manifest, fused, pooled: dict):
    """Each input's pooled embedding decoded back from the fused vector, when the weight is > 0.
    Returns what the head reads: the fused vector (`plain`) or the latent (`variational`)."""
    train, space = manifest.train, manifest.search.space
    kind = train.reconstruction if train.reconstruction is not None else space.reconstruction
    # Naming a kind asks for the objective: its weight, unset, is then searched among the
    # non-zero ones (without a kind, unset is 0, off, as before).
    w = weight(hp, manifest, "reconstruction_weight", len(pooled), unset=0.0 if kind is None else WEIGHTS[1:])
    if not w or fused is None:
        return fused
    # Unset kind: `plain` only, and no hyperparameter registered, so manifests written before
    # `variational` existed search exactly what they did. The VAE changes what the head reads
    # (a noisy latent in training) and adds a searched KL weight: the user opts in by naming it.
    chosen = "plain" if kind is None else pick(hp, "reconstruction", kind, RECONSTRUCTIONS)
    if chosen == "plain":
        return Reconstruction(len(pooled), w, name="reconstruction")([fused, *pooled.values()])
    searched = isinstance(kind, list) and len(set(kind)) > 1
    with hp.conditional_scope("reconstruction", ["variational"]) if searched else contextlib.nullcontext():
        kl_setting = train.kl_weight if train.kl_weight is not None else space.kl_weight
        kl = pick(hp, "kl_weight", kl_setting, KL_WEIGHTS, default=0.01)
    layer = VariationalReconstruction(len(pooled), w, kl, seed=train.seed, name="variational_reconstruction")
    return layer([fused, *pooled.values()])
