"""Small Keras building blocks shared by encoders and fusions. Every name is scoped by the
caller (the user's input name or the fusion's name), never by a global counter."""

from __future__ import annotations

import keras
from keras import layers, ops

# === Layers ===


@keras.saving.register_keras_serializable("mmauto")
class MissingGate(layers.Layer):
    """Replaces a modality's pooled vector and tokens by a learned "missing" embedding where
    the modality is absent, and (in training) at random with rate `dropout` (modality dropout).

    The same learned embedding serves genuinely missing rows and dropped ones, so what the
    model learns under modality dropout is what it uses at serving time for an empty input.
    """

    def __init__(self, dropout: float = 0.0, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.dropout = float(dropout)
        self.seed = seed
        self.seed_gen = keras.random.SeedGenerator(seed)

    def build(self, pooled_shape, present_shape=None, tokens_shape=None):
        self.missing = self.add_weight(name="missing", shape=(pooled_shape[-1],), initializer="zeros")

    def call(self, pooled, present, tokens=None, training=False):
        keep = ops.cast(ops.reshape(present, (-1, 1)), pooled.dtype)
        if training and self.dropout > 0:
            draw = keras.random.uniform(ops.shape(keep), seed=self.seed_gen)
            keep = keep * ops.cast(draw >= self.dropout, keep.dtype)
        missing = ops.cast(self.missing, pooled.dtype)
        pooled = keep * pooled + (1.0 - keep) * missing
        if tokens is None:
            return pooled, keep
        k3 = ops.expand_dims(keep, 1)
        tokens = k3 * tokens + (1.0 - k3) * missing
        return pooled, keep, tokens

    def get_config(self):
        return {**super().get_config(), "dropout": self.dropout, "seed": self.seed}


@keras.saving.register_keras_serializable("mmauto")
class PositionEmbedding(layers.Layer):
    """Learned absolute positions added to a (B, T, D) sequence."""

    def build(self, shape):
        self.pos = self.add_weight(name="pos", shape=(shape[1], shape[2]), initializer="zeros")

    def call(self, x):
        return x + ops.cast(self.pos, x.dtype)


@keras.saving.register_keras_serializable("mmauto")
class ClsToken(layers.Layer):
    """Prepends one learned token to a (B, T, D) sequence."""

    def build(self, shape):
        self.cls = self.add_weight(name="cls", shape=(1, 1, shape[-1]), initializer="zeros")

    def call(self, x):
        b = ops.shape(x)[0]
        return ops.concatenate([ops.tile(ops.cast(self.cls, x.dtype), (b, 1, 1)), x], axis=1)


@keras.saving.register_keras_serializable("mmauto")
class NumericTokens(layers.Layer):
    """FT-Transformer feature tokenizer for numbers: token_f = x_f * W_f + b_f."""

    def __init__(self, width: int, **kwargs):
        super().__init__(**kwargs)
        self.width = width

    def build(self, shape):
        self.w = self.add_weight(name="w", shape=(shape[-1], self.width), initializer="glorot_uniform")
        self.b = self.add_weight(name="b", shape=(shape[-1], self.width), initializer="zeros")

    def call(self, x):
        return ops.expand_dims(x, -1) * ops.cast(self.w, x.dtype) + ops.cast(self.b, x.dtype)

    def get_config(self):
        return {**super().get_config(), "width": self.width}


@keras.saving.register_keras_serializable("mmauto")
class StopGradient(layers.Layer):
    """Its input unchanged; no gradient flows back through it (what reads it does not train
    what it reads: model/hypermodel.py `unimodal_encoders`)."""

    def call(self, x):
        return ops.stop_gradient(x)

    def compute_output_shape(self, shape):
        return shape


@keras.saving.register_keras_serializable("mmauto")
class WeightedSum(layers.Layer):
    """Combines a list of same-shaped tensors with learned softmax weights (late fusion)."""

    def build(self, shapes):
        self.logits = self.add_weight(name="logits", shape=(len(shapes),), initializer="zeros")

    def call(self, xs):
        w = ops.softmax(ops.cast(self.logits, xs[0].dtype))
        return sum(w[i] * x for i, x in enumerate(xs))


@keras.saving.register_keras_serializable("mmauto")
class TokenMask(layers.Layer):
    """(B, T) float mask from token ids: 1 for a real token, 0 for padding (id 0)."""

    def call(self, ids):
        return ops.cast(ops.not_equal(ids, 0), "float32")


@keras.saving.register_keras_serializable("mmauto")
class MaskedMean(layers.Layer):
    """Mean of a (B, T, D) sequence over the tokens its (B, T) mask keeps; zeros for a row
    that keeps none (an empty text), where a plain masked mean would divide by zero."""

    def call(self, x, token_mask):
        m = ops.expand_dims(ops.cast(token_mask, x.dtype), -1)
        return ops.sum(x * m, axis=1) / ops.maximum(ops.sum(m, axis=1), ops.cast(1.0, x.dtype))


@keras.saving.register_keras_serializable("mmauto")
class FillMask(layers.Layer):
    """A row whose input was replaced by the learned missing embedding keeps all its tokens:
    they are that embedding now, not padding."""

    def call(self, token_mask, keep):
        keep = ops.cast(ops.reshape(keep, (-1, 1)), token_mask.dtype)
        return token_mask * keep + (1.0 - keep)


@keras.saving.register_keras_serializable("mmauto")
class OnesMask(layers.Layer):
    """An all-ones (B, T) mask for a (B, T, D) sequence that has no padding."""

    def call(self, x):
        return ops.ones(ops.shape(x)[:2], "float32")


@keras.saving.register_keras_serializable("mmauto")
class PrependOnes(layers.Layer):
    """Prepends `count` ones to a (B, T) mask (for tokens such as CLS that are never padding)."""

    def __init__(self, count: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.count = count

    def call(self, token_mask):
        return ops.pad(token_mask, [[0, 0], [self.count, 0]], constant_values=1.0)

    def get_config(self):
        return {**super().get_config(), "count": self.count}


# === Blocks ===


def joint_mask(parts, name: str):
    """One mask for token sequences concatenated along time: `parts` is a list of
    (tokens, mask or None). None when no part has padding to hide."""
    if all(m is None for _, m in parts):
        return None
    masks = [m if m is not None else OnesMask(name=f"{name}_ones{i}")(t) for i, (t, m) in enumerate(parts)]
    return masks[0] if len(masks) == 1 else layers.Concatenate(axis=1, name=f"{name}_mask")(masks)


def transformer_block(x, heads: int, width: int, dropout: float, name: str, context=None, mask=None, context_mask=None):
    """Pre-norm attention block. With `context`, x attends to it (cross-attention). Masks are
    (B, T) with 0 at padding: padded keys get no attention (padded queries are left as they
    are; whoever pools them masks them)."""
    h = layers.LayerNormalization(name=f"{name}_ln1")(x)
    kv = h if context is None else layers.LayerNormalization(name=f"{name}_lnc")(context)
    kv_mask = mask if context is None else context_mask
    mha = layers.MultiHeadAttention(heads, max(1, width // heads), dropout=dropout, name=f"{name}_mha")
    h = mha(h, kv) if kv_mask is None else mha(h, kv, value_mask=kv_mask)
    x = layers.Add(name=f"{name}_add1")([x, h])
    h = layers.LayerNormalization(name=f"{name}_ln2")(x)
    h = layers.Dense(2 * width, activation="gelu", name=f"{name}_ff1")(h)
    h = layers.Dropout(dropout, name=f"{name}_drop")(h)
    h = layers.Dense(width, name=f"{name}_ff2")(h)
    return layers.Add(name=f"{name}_add2")([x, h])


def mlp(x, width: int, depth: int, dropout: float, name: str):
    for i in range(depth):
        x = layers.Dense(width, activation="relu", name=f"{name}_dense{i}")(x)
        if dropout:
            x = layers.Dropout(dropout, name=f"{name}_drop{i}")(x)
    return x


@keras.saving.register_keras_serializable("mmauto")
class Blend(layers.Layer):
    """The weighted sum of several same-shaped outputs with fixed weights (an ensemble's
    average of its members' probabilities or values). `members`: the names of the layers
    whose outputs the weights multiply, in the same order (the export reads which member
    weighs most). `column_weights` (one list per member, one weight per output column), when
    given, replaces `weights` in the sum: a multi-target ensemble weighs its members per
    target; `weights` stay the primary target's."""

    def __init__(self, weights, members=None, column_weights=None, **kwargs):
        super().__init__(**kwargs)
        self.blend_weights = [float(w) for w in weights]
        self.members = list(members) if members is not None else None
        self.column_weights = [[float(w) for w in row] for row in column_weights] if column_weights is not None else None

    def call(self, outputs):
        if self.column_weights is not None:
            return sum(ops.convert_to_tensor(w, o.dtype) * o for w, o in zip(self.column_weights, outputs))
        return sum(ops.cast(w, o.dtype) * o for w, o in zip(self.blend_weights, outputs))

    def get_config(self):
        return {**super().get_config(), "weights": self.blend_weights, "members": self.members,
                "column_weights": self.column_weights}


@keras.saving.register_keras_serializable("mmauto")
class ScaleProbabilities(layers.Layer):
    """An ensemble member's output with blocks of probabilities rescaled by a temperature before
    the ensemble averages it (heads' `member_scaling`): each block `{kind, start, stop,
    temperature, eps}` of columns [start, stop) becomes sigmoid(logit p / T) per column
    ("sigmoid") or softmax(log p / T) over the block ("softmax"), with p clipped `eps` from 0
    (and 1) as heads/calibration.py clips; the other columns (input heads', embeddings) pass
    through."""

    def __init__(self, blocks, **kwargs):
        super().__init__(**kwargs)
        self.blocks = [dict(b) for b in blocks]

    def call(self, x):
        x = ops.cast(x, "float32")
        parts, at = [], 0
        for b in sorted(self.blocks, key=lambda b: b["start"]):
            parts.append(x[:, at: b["start"]])
            p, t, eps = x[:, b["start"]: b["stop"]], float(b["temperature"]), float(b["eps"])
            if b["kind"] == "sigmoid":
                p = ops.clip(p, eps, 1.0 - eps)
                parts.append(ops.sigmoid((ops.log(p) - ops.log1p(-p)) / t))
            else:
                parts.append(ops.softmax(ops.log(ops.maximum(p, eps)) / t, axis=-1))
            at = b["stop"]
        parts.append(x[:, at:])
        return ops.concatenate(parts, axis=-1)

    def compute_output_shape(self, shape):
        return shape

    def get_config(self):
        return {**super().get_config(), "blocks": self.blocks}


@keras.saving.register_keras_serializable("mmauto")
class TakeColumns(layers.Layer):
    """Columns [start, stop) of a [N, D] tensor: one target's logits of a multi-target model."""

    def __init__(self, start: int, stop: int, **kwargs):
        super().__init__(**kwargs)
        self.start, self.stop = int(start), int(stop)

    def call(self, x):
        return x[:, self.start : self.stop]

    def compute_output_shape(self, shape):
        return (shape[0], self.stop - self.start)

    def get_config(self):
        return {**super().get_config(), "start": self.start, "stop": self.stop}


@keras.saving.register_keras_serializable("mmauto")
class FirstToken(layers.Layer):
    """Token 0 of a [N, T, D] sequence (a CLS token). A layer, not a Lambda, so a model
    holding it saves and loads from a .keras file."""

    def call(self, x):
        return x[:, 0]

    def compute_output_shape(self, shape):
        return (shape[0], shape[-1])


@keras.saving.register_keras_serializable("mmauto")
class TaskUncertainty(layers.Layer):
    """Identity on its input; owns one learned log-variance per target, which the multi-target
    loss reads to weight the targets' losses (Kendall et al., 2018). Living in the model, the
    variables are trained by the optimizer and saved with the weights."""

    def __init__(self, n: int, **kwargs):
        super().__init__(**kwargs)
        self.n = int(n)

    def build(self, shape):
        self.log_vars = self.add_weight(name="log_vars", shape=(self.n,), initializer="zeros")

    def call(self, x):
        return x

    def get_config(self):
        return {**super().get_config(), "n": self.n}


# log(1 / 0.07): CLIP's initial temperature 0.07 (Radford et al., 2021); the scale is clipped
# at 100 (log 4.6052) as there, so the learned temperature stays >= 0.01.
RETRIEVAL_LOGIT_SCALE = 2.6592600
RETRIEVAL_MAX_LOGIT_SCALE = 4.6051702


@keras.saving.register_keras_serializable("mmauto")
class RetrievalEmbeddings(layers.Layer):
    """A retrieval model's output: its input, the n inputs' projections side by side
    ([N, n * dim]), with each input's block L2-normalised (float32). Owns the learned
    log-scale of the InfoNCE logits (CLIP's temperature, initialised at log(1 / 0.07)), which
    the retrieval loss reads (heads/retrieval_losses.py); living in the model, it is trained
    by the optimizer and saved with the weights."""

    def __init__(self, n: int, **kwargs):
        super().__init__(**kwargs)
        self.n = int(n)

    def build(self, shape):
        self.logit_scale = self.add_weight(name="logit_scale", shape=(), initializer=keras.initializers.Constant(RETRIEVAL_LOGIT_SCALE))

    def call(self, x):
        x = ops.cast(x, "float32")
        return ops.concatenate([ops.normalize(p, axis=-1) for p in ops.split(x, self.n, axis=-1)], axis=-1)

    def get_config(self):
        return {**super().get_config(), "n": self.n}


@keras.saving.register_keras_serializable("mmauto")
class PresenceSwitch(layers.Layer):
    """The fused logits for rows with every input present; for a row with an input missing (or
    dropped by modality dropout in training), the mean of the present inputs' own logits.

    Inputs: [fused logits, logits per input..., keep per input ([N, 1], 1 = present)]. The
    per-input logits are trained by the rows where modality dropout removed another input,
    so a row served with an input missing gets the answer of a head trained on what it has,
    not of the fused head fed a missing embedding."""

    def __init__(self, n: int, **kwargs):
        super().__init__(**kwargs)
        self.n = int(n)

    def call(self, inputs):
        fused, per, keeps = inputs[0], inputs[1 : 1 + self.n], inputs[1 + self.n :]
        keeps = [ops.cast(ops.reshape(k, (-1, 1)), fused.dtype) for k in keeps]
        count = sum(keeps)
        every = ops.cast(count >= self.n, fused.dtype)
        alone = sum(k * ops.cast(p, fused.dtype) for k, p in zip(keeps, per)) / ops.maximum(count, 1.0)
        return every * fused + (1.0 - every) * alone

    def compute_output_shape(self, shapes):
        return shapes[0]

    def get_config(self):
        return {**super().get_config(), "n": self.n}


@keras.saving.register_keras_serializable("mmauto")
class ProductOfExperts(layers.Layer):
    """A model's output [head block | one block per input's own head] with the head block, for
    rows where every input is present, replaced by the product of the inputs' answers (Hinton,
    2002): the sum of their log-probabilities (softmax) or logits (sigmoid), less the training
    prior counted once per input beyond the first, normalised. The other rows keep the head
    block, which there already answers from the present inputs (PresenceSwitch); the inputs'
    blocks pass through. `member`: the name of the model whose output this reads (the export's
    embeddings come from it). See model/experts.py."""

    def __init__(self, units: int, n: int, kind: str, prior, member: str = "", **kwargs):
        super().__init__(**kwargs)
        self.units, self.n, self.kind, self.member = int(units), int(n), kind, member
        self.prior = [float(p) for p in prior]

    def call(self, inputs):
        y, keeps = ops.cast(inputs[0], "float32"), inputs[1:]
        u, eps = self.units, 1e-7
        blocks = [ops.clip(y[:, (i + 1) * u : (i + 2) * u], eps, 1.0 - eps) for i in range(self.n)]
        prior = ops.convert_to_tensor(self.prior, "float32")
        if self.kind == "softmax":
            product = ops.softmax(sum(ops.log(b) for b in blocks) - (self.n - 1) * ops.log(prior), axis=-1)
        else:
            logit = lambda p: ops.log(p) - ops.log(1.0 - p)  # noqa: E731
            product = ops.sigmoid(sum(logit(b) for b in blocks) - (self.n - 1) * logit(prior))
        every = ops.cast(ops.reshape(sum(ops.cast(ops.reshape(k, (-1,)), "float32") for k in keeps), (-1, 1)) >= self.n, "float32")
        return ops.concatenate([every * product + (1.0 - every) * y[:, :u], y[:, u:]], axis=-1)

    def compute_output_shape(self, shapes):
        return shapes[0]

    def get_config(self):
        return {**super().get_config(), "units": self.units, "n": self.n, "kind": self.kind, "prior": self.prior,
                "member": self.member}
