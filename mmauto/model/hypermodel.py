"""The search space: `MultimodalHyperModel.build(hp)` makes one compiled multimodal model.

encoder per input (scoped by the input's name) -> projection to one width -> missing-modality
gate (learned missing embedding, modality dropout) -> fusion -> head. Every setting the
manifest leaves unset is searched; a set value is pinned (`mmauto.hp.pick`).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from typing import Optional

import keras
import keras_tuner as kt
from keras import layers

from mmauto.data.keys import mask_key, pooled_key, present_key, tokens_key
from mmauto.data.pipeline import Preprocessing
from mmauto.encoders import Encoded
from mmauto.fusion import FUSIONS
from mmauto.heads.input_heads import InputHeads
from mmauto.heads.matching import ANSWER_OUTPUT, Matching
from mmauto.heads.retrieval import EMBEDDING_WIDTHS as RETRIEVAL_WIDTHS
from mmauto.heads.wrapper import unwrapped
from mmauto.hp import pick
from mmauto.layers import FillMask, MissingGate, PresenceSwitch, StopGradient, WeightedSum
from mmauto.model.objectives import align, reconstruct

# Adam's learning rate, log scale. On the same-digit bench (bench/RESULTS.md, issue 14) trials
# above ~1e-3 mostly stayed at chance with every fusion while 3.5e-4 learned with all of them;
# the old range (3e-4 to 1e-2) drew two of three trials above 1e-3.
DEFAULT_LEARNING_RATES = {"min": 1e-4, "max": 3e-3}
# Searched modality dropout when unset (issue 16): never 0, so every input's learned "missing"
# embedding is trained even when no training row lacks the input; with 0 it stayed at its
# initial zeros, and serving a row with an input missing (and the ablation, which removes
# inputs the same way) fed the model a vector it had never seen. A pinned value is kept as is.
# The first trial's (the default) is 0.2: with the `fallback` heads on, the rows where dropout
# removed an input are what trains them (two inputs: 32% of rows have one input, 64% both).
MODALITY_DROPOUTS = [0.05, 0.1, 0.2, 0.3]


def fusion_choices(space, n_inputs: int) -> list[str]:
    """The fusions searched: the manifest's, or every registered one (the registry is the list)."""
    chosen = space.fusion if space.fusion is not None else FUSIONS.names()
    chosen = chosen if isinstance(chosen, list) else [chosen]
    ok = [f for f in chosen if FUSIONS.get(f).min_inputs <= n_inputs]
    return ok or ["concat"]


class MultimodalHyperModel(kt.HyperModel):
    """Builds one model per hyperparameter set; see the module docstring."""

    def __init__(self, prep: Preprocessing, feature_specs: Optional[Callable[[str, str], dict]] = None,
                 train_rows: Optional[int] = None, **kwargs):
        """`feature_specs(input, encoder)` gives the shapes of a frozen encoder's cached outputs
        ({"pooled", "tokens", "mask"}); with it, `build(hp)` feeds those inputs from the feature
        cache instead of running their encoders. None: every model is the whole graph.
        `train_rows` sizes the optimizer's moving average of the weights to an epoch (unknown:
        the longest)."""
        super().__init__(name="mmauto", **kwargs)
        self.prep = prep
        self.manifest = prep.manifest
        self.feature_specs = feature_specs
        self.train_rows = train_rows

    def whole_graph(self) -> MultimodalHyperModel:
        """The same space with every encoder in the graph (for the export)."""
        return MultimodalHyperModel(self.prep, train_rows=self.train_rows)

    # === Choices ===

    def encoders(self, hp) -> dict[str, str]:
        """The encoder type per input in this hp set (registers the choice hps)."""
        out = {}
        for name in self.manifest.inputs:
            cands = self.prep.candidates(name)
            out[name] = pick(hp, f"{name}/encoder", cands if len(cands) > 1 else cands[0], cands)
        return out

    def batch_size(self, hp) -> int:
        train, space = self.manifest.train, self.manifest.search.space
        return pick(hp, "batch_size", train.batch_size if train.batch_size is not None else space.batch_size, [16, 32, 64], default=32)

    def augment(self, hp) -> bool:
        """Whether this hp set's training batches are augmented (only registered where an
        input's modality augments: image, audio, video)."""
        if not any(self.prep.modality(n).augments for n in self.manifest.inputs):
            return False
        train, space = self.manifest.train, self.manifest.search.space
        return bool(pick(hp, "augment", train.augment if train.augment is not None else space.augment, [False, True], default=False))

    def frozen(self, hp) -> dict[str, str]:
        """Inputs whose chosen encoder trains no weight in this hp set (cacheable)."""
        return {n: e for n, e in self.encoders(hp).items() if self.prep.encoder(n, e).is_frozen(hp)}

    def cached(self, hp) -> dict[str, dict]:
        """Inputs whose encoder outputs come from the feature cache in this hp set: name -> spec."""
        if self.feature_specs is None:
            return {}
        return {n: self.feature_specs(n, e) for n, e in self.frozen(hp).items()}

    def input_keys(self, hp) -> list[str]:
        keys = []
        cached = self.cached(hp)
        for name, etype in self.encoders(hp).items():
            if name in cached:
                keys.append(pooled_key(name))
                if cached[name]["tokens"] is not None:
                    keys.append(tokens_key(name))
                if cached[name].get("mask") is not None:
                    keys.append(mask_key(name))
            else:
                keys += [k for k, _, _ in self.prep.encoder_inputs(name, etype).values()]
            keys.append(present_key(name))
        return keys

    # === Build ===

    @staticmethod
    def _cached_inputs(name, spec, inputs) -> Encoded:
        pooled = inputs[pooled_key(name)] = keras.Input(tuple(spec["pooled"]), name=pooled_key(name))
        tokens = mask = None
        if spec["tokens"] is not None:
            tokens = inputs[tokens_key(name)] = keras.Input(tuple(spec["tokens"]), name=tokens_key(name))
        if spec.get("mask") is not None:
            mask = inputs[mask_key(name)] = keras.Input(tuple(spec["mask"]), name=mask_key(name))
        return Encoded(pooled, tokens, mask)

    def build(self, hp):
        m = self.manifest
        space, train = m.search.space, m.train
        names = list(m.inputs)
        width = pick(hp, "width", space.width, [32, 64], default=32)
        # Read by the tuner at fit time; registered here so the space holds it from the first
        # build (the portfolio resolves against that space, a pinned batch size included).
        self.batch_size(hp)
        self.augment(hp)
        if m.retrieval:  # no modality dropout: dropping one side of a pair leaves nothing to match
            return self._compile(hp, *self._retrieval(hp, width))
        dropout = pick(hp, "dropout", space.dropout, [0.0, 0.1, 0.3], default=0.1)
        mdrop_setting = train.modality_dropout if train.modality_dropout is not None else space.modality_dropout
        mdrop = pick(hp, "modality_dropout", mdrop_setting if len(names) > 1 else 0.0, MODALITY_DROPOUTS, default=0.2)
        choices = fusion_choices(space, len(names))
        fname = pick(hp, "fusion", choices if len(choices) > 1 else choices[0], choices)
        fusion = FUSIONS.get(fname)(space)

        inputs: dict = {}
        encoded, keeps = self._encode(hp, inputs, width, mdrop, fusion.tokens)
        pooled_by = align(hp, m, {n: e.pooled for n, e in encoded.items()}, keeps)
        encoded = self._fusion_inputs(hp, {n: Encoded(pooled_by[n], e.tokens, e.mask) for n, e in encoded.items()})
        with hp.conditional_scope("fusion", [fname]) if len(choices) > 1 else contextlib.nullcontext():
            fused = fusion.build(hp, encoded, width, dropout)
        # A `variational` reconstruction returns its latent (a sample in training, the mean at
        # inference): the head and the handle below read it in place of the fused vector.
        fused = reconstruct(hp, m, fused, pooled_by)
        # A stable handle on the fused vector (the export's `serving_embed` reads it).
        fused = layers.Identity(name="fused")(fused)
        return self._compile(hp, inputs, self._output(hp, fused, pooled_by, keeps, {n: e.pooled for n, e in encoded.items()}))

    def unimodal_encoders(self, hp) -> bool:
        """Whether each encoder learns from its own input head alone (searched; needs the input
        heads, heads/input_heads.py). Trained through the fused head too, the encoders of a
        multimodal model learn less of each input than a model of that input alone does
        ("modality competition"; Du et al., 2023, "On Uni-Modal Feature Learning in Supervised
        Multi-Modal Learning"): on degraded AV-digits (one 240 s trial) the audio head, which
        answers a row without its image, read 0.838-0.885 on validation against 0.8975-0.9125
        for a model of the audio alone. With the fusion reading the encoders' outputs without
        training them it read 0.895-0.910 in three draws, its answers without the image
        0.903-0.915 on test against 0.862-0.883, and the fused head gained too (test
        0.980-0.983 against 0.969-0.977; bench/RESULTS.md). Where only the inputs together
        tell the label (the same-digit task) an input's own head has nothing to teach its
        encoder: off first."""
        if not isinstance(unwrapped(self.prep.head, stop=(InputHeads,)), InputHeads):
            return False
        return bool(pick(hp, "unimodal_encoders", self.manifest.search.space.unimodal_encoders, [False, True], default=False))

    def _fusion_inputs(self, hp, encoded: dict) -> dict:
        """What the fusion reads: the encoded inputs, behind a gradient stop with
        `unimodal_encoders`."""
        if not self.unimodal_encoders(hp):
            return encoded

        def stop(x, name):
            return None if x is None else StopGradient(name=name)(x)

        return {n: Encoded(stop(e.pooled, f"{n}_to_fusion"), stop(e.tokens, f"{n}_tokens_to_fusion"), e.mask)
                for n, e in encoded.items()}

    def _retrieval(self, hp, width: int) -> tuple:
        """`task: retrieval` (heads/retrieval.py): no fusion. Each input's gated pooled vector is
        projected to the shared embedding width; the projections side by side are the `fused`
        handle, and the head's output layer L2-normalises each input's block of it."""
        m = self.manifest
        inputs: dict = {}
        encoded, _ = self._encode(hp, inputs, width, 0.0, False)
        setting = m.search.space.embedding_width
        dim = pick(hp, "embedding_width", setting, RETRIEVAL_WIDTHS, default=RETRIEVAL_WIDTHS[0])
        projected = [layers.Dense(dim, name=f"{n}_retrieval_projection")(e.pooled) for n, e in encoded.items()]
        fused = layers.Identity(name="fused")(layers.Concatenate(name="embeddings")(projected))
        return inputs, self.prep.head.output(fused)

    def _compile(self, hp, inputs: dict, outputs):
        m, space, train = self.manifest, self.manifest.search.space, self.manifest.train
        model = keras.Model(inputs, outputs, name=f"mmauto_{m.name}"[:60].replace("-", "_").replace(" ", "_"))

        lr_setting = train.learning_rate if train.learning_rate is not None else space.learning_rate
        lr = pick(hp, "learning_rate", lr_setting if lr_setting is not None else DEFAULT_LEARNING_RATES, [])
        loss, metrics = self.prep.head.training(hp, model)
        steps = None if self.train_rows is None else math.ceil(self.train_rows / self.batch_size(hp))
        momentum = train.ema_momentum(steps)
        optimizer = keras.optimizers.Adam(lr, use_ema=bool(momentum), ema_momentum=momentum or 0.99)
        model.compile(optimizer=optimizer, loss=loss, metrics=metrics)
        return model

    def _encode(self, hp, inputs: dict, width: int, mdrop: float, with_tokens: bool):
        """Each input encoded (or read from the cache), projected to `width`, layer-normalised and
        gated for missing values; fills `inputs`. Returns ({name: Encoded}, {name: keep})."""
        cached = self.cached(hp)
        encoded, keeps = {}, {}
        for i, (name, etype) in enumerate(self.encoders(hp).items()):
            cands = self.prep.candidates(name)
            scope = hp.conditional_scope(f"{name}/encoder", [etype]) if len(cands) > 1 else contextlib.nullcontext()
            with scope:
                if name in cached:
                    out = self._cached_inputs(name, cached[name], inputs)
                else:
                    feeds = {}
                    for feat, (key, shape, dtype) in self.prep.encoder_inputs(name, etype).items():
                        inputs[key] = feeds[feat] = keras.Input(shape, dtype=dtype, name=key)
                    out = self.prep.encoder(name, etype).build(hp, feeds, name)
            present = inputs[present_key(name)] = keras.Input((), dtype="float32", name=present_key(name))
            pooled = layers.LayerNormalization(name=f"{name}_norm")(layers.Dense(width, name=f"{name}_to_width")(out.pooled))
            tokens = mask = None
            if with_tokens and out.tokens is not None:
                tokens = layers.Dense(width, name=f"{name}_tokens_to_width")(out.tokens)
            # One seed per input: with the same seed every gate drew the same numbers, so
            # modality dropout removed all inputs of a row or none, never one.
            gate = MissingGate(mdrop, seed=self.manifest.train.seed + 1000 * i, name=f"{name}_missing")
            if tokens is None:
                pooled, keeps[name] = gate(pooled, present)
            else:
                pooled, keeps[name], tokens = gate(pooled, present, tokens)
                if out.mask is not None:
                    mask = FillMask(name=f"{name}_mask_missing")(out.mask, keeps[name])
            encoded[name] = Encoded(pooled, tokens, mask)
        return encoded, keeps

    def _output(self, hp, fused, pooled_by: dict, keeps: dict, fusing: dict):
        """The model's output: the head's; with `Matching` (heads/matching.py), followed by the
        inputs' embeddings its contrastive loss reads. `fusing`: the pooled vectors the fusion
        read (the `hybrid` decisions, part of the fused answer, read them too)."""
        head = self.prep.head
        if isinstance(head, Matching):
            answer = head.head.output(self._logits(hp, head.head, fused, pooled_by, keeps, fusing), name=ANSWER_OUTPUT)
            return head.output(answer, pooled_by, keeps)
        return head.output(self._logits(hp, head, fused, pooled_by, keeps, fusing))

    def _logits(self, hp, head, fused, pooled_by: dict, keeps: dict, fusing: dict):
        """The head's logits from the fused vector; `hybrid` adds one decision per input;
        `fallback` answers a row with an input missing from the present inputs' own heads.
        With `input_heads` (heads/input_heads.py) those per-input heads' logits follow the
        head's, each trained on every row by its own loss."""
        per_input = isinstance(head, InputHeads)
        units = head.main_units if per_input else head.units
        logits = layers.Dense(units, name="head_logits")(fused)
        several = len(pooled_by) > 1
        # Unset means on, not searched: the objective scores rows with every input, so a search
        # would drop the heads freely, and with them the answers to rows with an input missing.
        fallback_setting = self.manifest.search.space.fallback if several else False
        fallback = pick(hp, "fallback", True if fallback_setting is None else fallback_setting, [True, False])
        per = [layers.Dense(units, name=f"fallback_{n}")(v) for n, v in pooled_by.items()] if fallback or per_input else []
        if fallback:
            logits = PresenceSwitch(len(per), name="fallback")([logits, *per, *(keeps[n] for n in pooled_by)])
        hybrid_setting = self.manifest.search.space.hybrid if several else False
        if pick(hp, "hybrid", hybrid_setting, [False, True], default=False):
            hybrid = [layers.Dense(units, name=f"hybrid_{n}")(v) for n, v in fusing.items()]
            logits = WeightedSum(name="hybrid_logits")([logits, *hybrid])
        if per_input:
            logits = layers.Concatenate(name="head_and_input_logits")([logits, *per])
        return logits
