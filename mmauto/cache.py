"""The frozen-feature cache.

A frozen encoder (a keras-hub backbone with `trainable: false`, the default for presets) is a
fixed function of its input, so its outputs (pooled vector, tokens, padding mask) are computed once per
split, stored in RUN_DIR/cache keyed by everything they depend on, and trials then train only
the fusion and the head on them. The exported model still holds the whole graph: after the
search the full model is rebuilt and receives the trained fusion/head weights by layer name.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np


# Bumped when what a cache file holds changes (2: text token masks).
FORMAT = 2


def cache_key(prep, name: str, etype: str) -> str:
    spec = prep.manifest.inputs[name]
    enc = prep.encoder(name, etype)
    blob = json.dumps({"format": FORMAT, "input": spec.to_dict(), "encoder": etype, "prep": enc.prep_state,
                       "modality": prep.state["inputs"][name]["modality"]}, sort_keys=True, default=str)
    return f"{name}-{etype}-{hashlib.sha1(blob.encode()).hexdigest()[:12]}"


def pooled_key(name: str) -> str:
    return f"{name}__cached_pooled"


def tokens_key(name: str) -> str:
    return f"{name}__cached_tokens"


def mask_key(name: str) -> str:
    return f"{name}__cached_mask"


class FeatureCache:
    """Per-split arrays of frozen encoders' outputs under RUN_DIR/cache/<key>/<split>.npz."""

    def __init__(self, root: Path, prep, decoded: dict, on_event=None):
        self.root = Path(root)
        self.prep = prep
        self.decoded = decoded  # split -> decoded (cached) tf.data of (features, target)
        self.on_event = on_event or (lambda *a, **k: None)
        self.hits = 0
        self.misses = 0

    def arrays(self, name: str, etype: str, split: str) -> dict[str, np.ndarray]:
        folder = self.root / cache_key(self.prep, name, etype)
        path = folder / f"{split}.npz"
        if path.exists():
            self.hits += 1
            with np.load(path) as z:
                return {k: z[k] for k in z.files}
        self.misses += 1
        self.on_event("cache", input=name, encoder=etype, split=split)
        arrays = self._compute(name, etype, split)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{split}.tmp.npz"
        np.savez(tmp, **arrays)
        tmp.rename(path)  # atomic: a killed run never leaves half a cache file
        return arrays

    def _compute(self, name: str, etype: str, split: str) -> dict[str, np.ndarray]:
        import keras
        import keras_tuner as kt

        enc = self.prep.encoder(name, etype)
        feeds = {}
        inputs = {}
        for feat, (key, shape, dtype) in self.prep.encoder_inputs(name, etype).items():
            inputs[key] = feeds[feat] = keras.Input(shape, dtype=dtype, name=key)
        out = enc.build(kt.HyperParameters(), feeds, name)
        outputs = {"pooled": out.pooled}
        if out.tokens is not None:
            outputs["tokens"] = out.tokens
            if out.mask is not None:
                outputs["mask"] = out.mask
        extractor = keras.Model(inputs, outputs)
        ds = self.prep.batches(self.decoded[split], 32, {name: etype}, keys=list(inputs))
        got = extractor.predict(ds.map(lambda x, *rest: x), verbose=0)
        return {k: np.asarray(v, dtype="float32") for k, v in got.items()}

    def dataset(self, name: str, etype: str, split: str):
        """A tf.data of {pooled_key, tokens_key, mask_key} rows in the decoded dataset's order."""
        import tensorflow as tf

        a = self.arrays(name, etype, split)
        feats = {pooled_key(name): a["pooled"]}
        if "tokens" in a:
            feats[tokens_key(name)] = a["tokens"]
        if "mask" in a:
            feats[mask_key(name)] = a["mask"]
        return tf.data.Dataset.from_tensor_slices(feats)

    def specs(self, name: str, etype: str) -> dict:
        a = self.arrays(name, etype, "train")
        return {"pooled": a["pooled"].shape[1:], "tokens": a["tokens"].shape[1:] if "tokens" in a else None,
                "mask": a["mask"].shape[1:] if "mask" in a else None}


def transfer_weights(source, target) -> int:
    """Copy weights from the cached-feature model into the full model, layer by layer, by name."""
    by_name = {l.name: l for l in target.layers}
    copied = 0
    for layer in source.layers:
        if layer.weights and layer.name in by_name:
            by_name[layer.name].set_weights(layer.get_weights())
            copied += 1
    return copied
