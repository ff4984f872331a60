"""The search space: `MultimodalHyperModel.build(hp)` makes one compiled multimodal model.

encoder per input (scoped by the input's name) -> projection to one width -> missing-modality
gate (learned missing embedding, modality dropout) -> fusion -> head. Every setting the
manifest leaves unset is searched; a set value is pinned (`mmauto.hp.pick`).
"""

from __future__ import annotations

import contextlib

import keras
import keras_tuner as kt
from keras import layers

from mmauto.cache import mask_key, pooled_key, tokens_key
from mmauto.data.pipeline import Preprocessing, present_key
from mmauto.fusion import FUSIONS
from mmauto.hp import pick
from mmauto.layers import FillMask, MissingGate, WeightedSum
from mmauto.encoders import Encoded
from mmauto.objectives import align, reconstruct

DEFAULT_FUSIONS = ("concat", "sum", "max", "gated", "cross_attention", "transformer", "late")


def fusion_choices(space, n_inputs: int) -> list[str]:
    chosen = space.fusion if space.fusion is not None else list(DEFAULT_FUSIONS)
    chosen = chosen if isinstance(chosen, list) else [chosen]
    ok = [f for f in chosen if FUSIONS.get(f).min_inputs <= n_inputs]
    return ok or ["concat"]


class MultimodalHyperModel(kt.HyperModel):
    """Builds one model per hyperparameter set; see the module docstring."""

    def __init__(self, prep: Preprocessing, **kwargs):
        super().__init__(name="mmauto", **kwargs)
        self.prep = prep
        self.manifest = prep.manifest
        # Inputs whose frozen encoder outputs come from the feature cache in the next build:
        # name -> {"pooled": shape, "tokens": shape or None}. Empty: the full graph.
        self.cached: dict[str, dict] = {}

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

    def frozen(self, hp) -> dict[str, str]:
        """Inputs whose chosen encoder trains no weight in this hp set (cacheable)."""
        return {n: e for n, e in self.encoders(hp).items() if self.prep.encoder(n, e).is_frozen(hp)}

    def input_keys(self, hp) -> list[str]:
        keys = []
        for name, etype in self.encoders(hp).items():
            if name in self.cached:
                keys.append(pooled_key(name))
                if self.cached[name]["tokens"] is not None:
                    keys.append(tokens_key(name))
                if self.cached[name].get("mask") is not None:
                    keys.append(mask_key(name))
            else:
                keys += [k for k, _, _ in self.prep.encoder_inputs(name, etype).values()]
            keys.append(present_key(name))
        return keys

    # === Build ===

    def _cached_inputs(self, name, inputs) -> Encoded:
        spec = self.cached[name]
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
        dropout = pick(hp, "dropout", space.dropout, [0.0, 0.1, 0.3], default=0.1)
        mdrop_setting = train.modality_dropout if train.modality_dropout is not None else space.modality_dropout
        mdrop = pick(hp, "modality_dropout", mdrop_setting if len(names) > 1 else 0.0, [0.0, 0.1, 0.3], default=0.0)

        choices = fusion_choices(space, len(names))
        fname = pick(hp, "fusion", choices if len(choices) > 1 else choices[0], choices)
        fusion = FUSIONS.get(fname)(space)

        inputs, pooled_by, tokens_by, masks_by, keeps = {}, {}, {}, {}, {}
        for name, etype in self.encoders(hp).items():
            cands = self.prep.candidates(name)
            scope = hp.conditional_scope(f"{name}/encoder", [etype]) if len(cands) > 1 else contextlib.nullcontext()
            with scope:
                if name in self.cached:
                    out = self._cached_inputs(name, inputs)
                else:
                    enc = self.prep.encoder(name, etype)
                    feeds = {}
                    for feat, (key, shape, dtype) in self.prep.encoder_inputs(name, etype).items():
                        inputs[key] = feeds[feat] = keras.Input(shape, dtype=dtype, name=key)
                    out = enc.build(hp, feeds, name)
            present = inputs[present_key(name)] = keras.Input((), dtype="float32", name=present_key(name))
            pooled = layers.LayerNormalization(name=f"{name}_norm")(layers.Dense(width, name=f"{name}_to_width")(out.pooled))
            tokens = mask = None
            if fusion.tokens and out.tokens is not None:
                tokens = layers.Dense(width, name=f"{name}_tokens_to_width")(out.tokens)
            gate = MissingGate(mdrop, seed=train.seed, name=f"{name}_missing")
            if tokens is None:
                pooled, keeps[name] = gate(pooled, present)
            else:
                pooled, keeps[name], tokens = gate(pooled, present, tokens)
                if out.mask is not None:
                    mask = FillMask(name=f"{name}_mask_missing")(out.mask, keeps[name])
            pooled_by[name], tokens_by[name], masks_by[name] = pooled, tokens, mask

        pooled_by = align(hp, m, pooled_by, keeps)
        encoded = {n: Encoded(pooled_by[n], tokens_by[n], masks_by[n]) for n in names}

        with hp.conditional_scope("fusion", [fname]) if len(choices) > 1 else contextlib.nullcontext():
            fused = fusion.build(hp, encoded, width, dropout)
        units = self.prep.head.units
        if fusion.late:
            per = [layers.Dense(units, name=f"head_{n}")(v) for n, v in fused.items()]
            logits = per[0] if len(per) == 1 else WeightedSum(name="late_logits")(per)
        else:
            fused = reconstruct(hp, m, fused, pooled_by)
            logits = layers.Dense(units, name="head_logits")(fused)
            hybrid_setting = space.hybrid if len(names) > 1 else False
            if pick(hp, "hybrid", hybrid_setting, [False, True], default=False):
                per = [layers.Dense(units, name=f"hybrid_{n}")(v) for n, v in pooled_by.items()]
                logits = WeightedSum(name="hybrid_logits")([logits, *per])
        outputs = self.prep.head.activate(logits)
        model = keras.Model(inputs, outputs, name=f"mmauto_{m.name}"[:60].replace("-", "_").replace(" ", "_"))

        lr_setting = train.learning_rate if train.learning_rate is not None else space.learning_rate
        lr = pick(hp, "learning_rate", lr_setting if lr_setting is not None else {"min": 3e-4, "max": 1e-2}, [])
        model.compile(optimizer=keras.optimizers.Adam(lr), loss=self.prep.head.loss(), metrics=self.prep.head.metrics())
        return model
