"""Preprocessing state and tf.data pipelines.

`Preprocessing` holds everything fitted on the training split (modality statistics, encoder
vocabularies, the target's classes or scale) as JSON, and builds the graph functions that turn
RAW values into model features. Training (tf.data) and serving (the SavedModel) call the very
same functions, so they agree to the last bit.

Pipeline: raw table values -> load (paths -> bytes) -> decode per modality (batched) -> cache ->
shuffle/batch -> encoder preprocessing (tokenizers; cheap, per batch) -> model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np

from mmauto.config.manifest import Manifest
from mmauto.data.checks import Splits, table_targets, target_values, targets_problems
from mmauto.data.keys import feature_key, present_key, split_feature_key
from mmauto.encoders import ENCODERS
from mmauto.heads import Head, head_for
from mmauto.heads.input_heads import InputHeads, with_input_heads
from mmauto.heads.matching import Matching, with_matching
from mmauto.heads.multi import MultiHead
from mmauto.modalities import MODALITIES

DECODE_BATCH = 64
# The training shuffle buffer holds up to SHUFFLE_ROWS rows and, for large rows (decoded
# 224x224 images: 150 KB; cached backbone tokens: up to 0.6 MB), no more than SHUFFLE_BYTES.
SHUFFLE_ROWS = 10000
SHUFFLE_BYTES = 512 << 20


def _target_state(target, frame, splits: Splits) -> dict:
    """What a target's head is fitted with: the classes, or the values' mean and scale."""
    if target.task != "regression":
        return {"classes": splits.classes_by_target[target.column]}
    y = np.asarray([v for v in target_values(target, frame)[0] if v is not None], "float64")
    std = float(y.std()) if len(y) > 1 else 1.0
    return {"mean": float(y.mean()), "std": std if std > 1e-12 else 1.0}


class Preprocessing:
    """Fitted preprocessing of one manifest (JSON-serialisable `state`)."""

    def __init__(self, manifest: Manifest, state: dict):
        self.manifest = manifest
        self.state = state
        tstate = state["target"]
        threshold = 0.5 if manifest.train.threshold is None else manifest.train.threshold
        t = manifest.target
        if manifest.retrieval:  # no target: the head embeds the inputs (heads/retrieval.py)
            self.head = head_for("retrieval", "", None, {"inputs": list(manifest.inputs), **tstate})
        elif manifest.task == "zero_shot":  # classes named in the manifest; labels, if any, are scored
            self.head = head_for("zero_shot", t.column if t else "label", tstate["classes"], tstate, threshold)
        elif len(manifest.targets) == 1:
            self.head: Head | MultiHead | InputHeads | Matching = head_for(t.task, t.column, tstate.get("classes"), tstate, threshold)
        else:
            self.head = MultiHead.build(manifest.targets, tstate["targets"], threshold, manifest.train.loss_weights)
        if not manifest.retrieval and manifest.task != "zero_shot":
            self.head = with_input_heads(self.head, list(manifest.inputs), manifest.search.space.input_heads)
            train, space = manifest.train, manifest.search.space
            match = train.match_weight if train.match_weight is not None else space.match_weight
            self.head = with_matching(self.head, list(manifest.inputs), match)

    # === Fitting ===

    @classmethod
    def fit(cls, manifest: Manifest, splits: Splits) -> Preprocessing:
        train = splits["train"]
        state = {"inputs": {}, "target": {}}
        for name, spec in manifest.inputs.items():
            mod = MODALITIES.get(spec.modality)()
            raw = mod.raw_values(name, spec.options, train.frame, train.root)
            mstate = mod.fit_state(spec.options, raw)
            preps = {}
            # zero_shot: the classifier's builder loads (and checks) the preset once, later
            for etype in candidates(spec) if manifest.task != "zero_shot" else []:
                enc = ENCODERS.get(etype)(spec, mstate)
                key = enc.prep_key()
                if key and key not in preps:
                    preps[key] = enc.fit_prep(raw)
                elif not key:
                    enc.fit_prep(raw)  # checks only (e.g. that a preset can be loaded)
            state["inputs"][name] = {"modality": mstate, "preps": preps, "encoders": candidates(spec)}
        if manifest.task == "zero_shot":
            state["target"] = {"classes": list(manifest.zero_shot.classes)}
            return cls(manifest, state)
        states = {t.column: _target_state(t, train.frame, splits) for t in manifest.targets}
        if manifest.retrieval:
            state["target"] = {"inputs": list(manifest.inputs)}
        else:
            state["target"] = states[manifest.target.column] if len(states) == 1 else {"targets": states}
        return cls(manifest, state)

    def to_json(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.state))

    @classmethod
    def from_json(cls, manifest: Manifest, path: Path) -> Preprocessing:
        return cls(manifest, json.loads(Path(path).read_text()))

    # === Encoders and features ===

    def candidates(self, name: str) -> list[str]:
        return list(self.state["inputs"][name]["encoders"])

    def encoder(self, name: str, etype: str):
        spec = self.manifest.inputs[name]
        istate = self.state["inputs"][name]
        enc = ENCODERS.get(etype)(spec, istate["modality"])
        key = enc.prep_key()
        enc.prep_state = istate["preps"].get(key, {}) if key else {}
        return enc

    def modality(self, name: str):
        return MODALITIES.get(self.manifest.inputs[name].modality)()

    def decoded_spec(self) -> dict[str, tuple]:
        """Cached features (after decoding, before encoder preprocessing)."""
        out = {}
        for name, spec in self.manifest.inputs.items():
            fs = self.modality(name).feature_spec(spec.options, self.state["inputs"][name]["modality"])
            out.update({feature_key(name, f): s for f, s in fs.items()})
            out[present_key(name)] = ((), "float32")
        return out

    def row_bytes(self) -> int:
        """About how many bytes one decoded row takes in the cache."""
        total = 0
        for shape, dtype in self.decoded_spec().values():
            n = int(np.prod(shape)) if shape else 1
            total += n * (256 if dtype == "string" else np.dtype(dtype).itemsize)
        return total

    def encoder_inputs(self, name: str, etype: str) -> dict[str, tuple[str, tuple, str]]:
        """What the encoder's Keras model reads: {feature: (model input key, shape, dtype)}."""
        enc = self.encoder(name, etype)
        key = enc.prep_key()
        if key:
            return {f: (feature_key(name, f, key), shape, dt) for f, (shape, dt) in enc.prep_spec(enc.prep_state).items()}
        mstate = self.state["inputs"][name]["modality"]
        fs = self.modality(name).feature_spec(self.manifest.inputs[name].options, mstate)
        return {f: (feature_key(name, f), shape, dt) for f, (shape, dt) in fs.items()}

    def serving_spec(self) -> dict[str, tuple]:
        out = {}
        for name, spec in self.manifest.inputs.items():
            out.update(self.modality(name).serving_spec(name, spec.options))
        return out

    def graph(self, encoders: Optional[dict[str, str]] = None) -> FeatureGraph:
        """The graph functions for the given encoder choice (default: every candidate)."""
        return FeatureGraph(self, encoders)

    # === Raw values and datasets ===

    def raw_values(self, frame, root: Path) -> dict[str, np.ndarray]:
        out = {}
        for name, spec in self.manifest.inputs.items():
            out.update(self.modality(name).raw_values(name, spec.options, frame, root))
        return out

    def serving_values(self, frame, root: Path) -> dict[str, np.ndarray]:
        out = {}
        for name, spec in self.manifest.inputs.items():
            out.update(self.modality(name).serving_values(name, spec.options, frame, root))
        return out

    def read_targets(self, frame) -> tuple:
        """(values, problems): the rows' parsed target values (labels, label lists or numbers),
        as the head takes them: a list with one target, {column: list, None where the row has
        no value} with several."""
        m = self.manifest
        if m.retrieval:  # the rows are the matching pairs: no target, nothing to check
            return self.presence(frame), []
        if len(m.targets) == 1:
            return target_values(m.target, frame)
        # A table without an auxiliary target's column (evaluation) is read without it: only
        # training encodes it.
        read = table_targets(m, frame, auxiliary=False)
        return {t.column: target_values(t, frame)[0] for t in read}, targets_problems(m, frame, auxiliary=False)

    def presence(self, frame) -> list[list[float]]:
        """Per row, 1.0 or 0.0 per input (manifest order): whether any of its cells holds a
        value (an empty cell is a missing input). A retrieval model's "targets": its loss and
        metrics leave out the pairs a row does not have."""
        from mmauto.modalities.base import cell_is_missing

        def missing(v) -> bool:
            return cell_is_missing(v) or (isinstance(v, (bytes, bytearray)) and not len(v))

        cols = []
        for name, spec in self.manifest.inputs.items():
            names = self.modality(name).columns(spec.options)
            have = np.zeros(len(frame), bool)
            for c in names:
                have |= ~np.array([missing(v) for v in frame[c].tolist()], bool)
            cols.append(have)
        return np.stack(cols, axis=1).astype("float32").tolist() if cols else [[] for _ in range(len(frame))]

    def target_values(self, frame):
        """The rows' parsed target values (`read_targets`); a bad row raises DataError."""
        values, problems = self.read_targets(frame)
        if problems:
            from mmauto.errors import DataError

            row, reason, detail = problems[0]
            raise DataError(f"row {row + 1}: {reason}: {detail}")
        return values

    def targets(self, frame) -> np.ndarray:
        """The rows' targets as the model trains on them."""
        return self.head.encode(self.target_values(frame))

    def decoded_dataset(self, frame, root: Path, with_targets: bool = True, cache: Optional[str] = None):
        """Unbatched (features, target) or features: decoded once, cached."""
        import tensorflow as tf

        graph = self.graph({})  # decoding only: encoder preprocessing runs per batch later
        raw = self.raw_values(frame, root)
        ds = tf.data.Dataset.from_tensor_slices(raw)
        ds = ds.map(plain(graph.load), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        ds = ds.batch(DECODE_BATCH).map(plain(graph.decode), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).unbatch()
        if with_targets:
            ds = tf.data.Dataset.zip((ds, tf.data.Dataset.from_tensor_slices(self.targets(frame))))
        return ds.cache(cache or "")

    def batches(self, decoded, batch_size: int, encoders: dict[str, str], keys=None, shuffle_seed=None, size=None, augment=()):
        """Batched model inputs for one encoder choice, from a decoded (cached) dataset.
        Training (`shuffle_seed` set) augments the decoded features of the inputs in `augment`."""
        import tensorflow as tf

        graph = self.graph(encoders)
        ds = decoded
        if shuffle_seed is not None:
            ds = ds.shuffle(shuffle_buffer(ds.element_spec, size), seed=shuffle_seed, reshuffle_each_iteration=True)
        ds = ds.batch(batch_size)
        if shuffle_seed is not None and augment:
            # One seed per batch, new ones every epoch; stateless ops draw per example from it.
            seeds = tf.data.Dataset.random(seed=shuffle_seed, rerandomize_each_iteration=True).batch(2)
            names = [n for n in self.manifest.inputs if n in set(augment)]

            def augmented(item, seed):
                if isinstance(item, tuple):  # (features, targets)
                    return (self.augment(item[0], seed, names), *item[1:])
                return self.augment(item, seed, names)

            ds = tf.data.Dataset.zip((ds, seeds)).map(plain(augmented), num_parallel_calls=tf.data.AUTOTUNE)

        def prep(*item):
            feats = graph.prep(item[0])
            if keys is not None:
                feats = {k: feats[k] for k in keys}
            return (feats, *item[1:]) if len(item) > 1 else feats

        return ds.map(plain(prep), num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)

    def augment(self, decoded: dict, seed, names: list[str]) -> dict:
        """A decoded training batch with each named input's features augmented by its modality."""
        from mmauto.modalities._augment import split

        out = dict(decoded)
        for name, s in zip(names, split(seed, max(len(names), 1))):
            keys = {split_feature_key(k)[1]: k for k in decoded if split_feature_key(k)[0] == name and k != present_key(name)}
            done = self.modality(name).augment(self.manifest.inputs[name].options, {f: decoded[k] for f, k in keys.items()}, s)
            out.update({keys[f]: v for f, v in done.items()})
        return out


def shuffle_buffer(element_spec, size: Optional[int] = None) -> int:
    """Rows in the shuffle buffer: the split (at most SHUFFLE_ROWS), fewer when rows are large."""
    import tensorflow as tf

    row = 0
    for spec in tf.nest.flatten(element_spec):
        if spec.dtype != tf.string and spec.shape.is_fully_defined():
            row += spec.shape.num_elements() * spec.dtype.size
    return max(1, min(size or SHUFFLE_ROWS, SHUFFLE_ROWS, SHUFFLE_BYTES // max(row, 1)))


def plain(fn):
    """`fn` traced as written. The graph code uses tf.cond where it branches on tensors, so
    autograph has nothing to convert; its rewriting re-reads source files at trace time, which
    has mis-traced code that changed on disk during a run."""
    import tensorflow as tf

    return tf.autograph.experimental.do_not_convert(fn)


def candidates(spec) -> list[str]:
    t = spec.encoder.type
    if t is None:
        return list(MODALITIES.get(spec.modality).default_encoders)
    return list(dict.fromkeys(t if isinstance(t, list) else [t]))


def encoder_list(choice) -> list[str]:
    """An input's encoder choice as a list: one model's (a name) or an ensemble's (a list)."""
    if choice is None:
        return []
    return [choice] if isinstance(choice, str) else list(dict.fromkeys(choice))


class FeatureGraph:
    """Decoders and encoder preprocessors for one encoder choice (per input, a name, or a list
    for an ensemble whose members chose differently); holds the TF resources (lookup tables,
    tokenizers) that export tracks."""

    def __init__(self, prep: Preprocessing, encoders: Optional[dict]):
        self.p = prep
        m = prep.manifest
        self.decoders = {}
        self.preps = {}  # (input, prep key) -> callable
        for name, spec in m.inputs.items():
            mstate = prep.state["inputs"][name]["modality"]
            self.decoders[name] = prep.modality(name).make_decoder(name, spec.options, mstate)
            chosen = prep.candidates(name) if encoders is None else encoder_list(encoders.get(name))
            for etype in chosen:
                enc = prep.encoder(name, etype)
                key = enc.prep_key()
                if key and (name, key) not in self.preps:
                    self.preps[(name, key)] = enc.make_prep(enc.prep_state)

    def resources(self) -> list:
        """Every object holding TF state, for export to track."""
        import tensorflow as tf

        out = []
        for obj in [*self.decoders.values(), *self.preps.values()]:
            for v in vars(obj).values():
                out.extend(x for x in (v if isinstance(v, list) else [v]) if isinstance(x, tf.__internal__.tracking.Trackable))
        return out

    def load(self, raw: dict) -> dict:
        for name, spec in self.p.manifest.inputs.items():
            raw = self.p.modality(name).load(name, spec.options, raw)
        return raw

    def decode(self, raw: dict, skip=()) -> dict:
        out = {}
        for name, dec in [(n, d) for n, d in self.decoders.items() if n not in skip]:
            feats, present = dec(raw)
            out.update({feature_key(name, f): v for f, v in feats.items()})
            out[present_key(name)] = present
        return out

    def prep(self, decoded: dict) -> dict:
        out = dict(decoded)
        for (name, key), fn in self.preps.items():
            feats = {split_feature_key(f)[1]: v for f, v in decoded.items() if split_feature_key(f)[0] == name}
            out.update({feature_key(name, f, key): v for f, v in fn(feats).items()})
        return out

    def __call__(self, raw: dict) -> dict:
        return self.prep(self.decode(raw))
