"""Export: one SavedModel whose signatures take RAW inputs and run all preprocessing in-graph.

`serving_default`: image/audio as encoded bytes, text as strings, one tensor per tabular column.
`serving_explain`: the same inputs; adds each input's contribution to the answer.
`serving_embed`: the same inputs; answers L2-normalised embeddings, one per input and the fused
one (`mmauto.model.embedding`). `serving_waveform` (when there is an audio input): as
serving_default, but audio as float32 waveforms [N, S] at the model's sample rate.
Written to a temporary folder, parity-checked against the in-process model, then renamed into
place: a crash never leaves half a model.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np

from mmauto.data.keys import feature_key, present_key
from mmauto.data.pipeline import Preprocessing
from mmauto.errors import ExportError

PARITY_ROWS = 32
PARITY_TOL = 1e-4


def build_module(model, prep: Preprocessing, encoders: dict, keys: list[str], embedder=None):
    """`embedder`: the model serving_embed answers (default: `embedding_model` of the searched
    model's layers; a zero-shot classifier passes its own)."""
    import keras
    import tensorflow as tf

    from mmauto.model.attention import attention_probe
    from mmauto.model.embedding import embedding_model

    graph = prep.graph(encoders)
    spec = {k: tf.TensorSpec(shape, getattr(tf, dt), name=k) for k, (shape, dt) in prep.serving_spec().items()}

    class Serving(tf.Module):
        pass

    mod = Serving()
    mod.model = model
    mod.resources = graph.resources()
    head = prep.head

    def run(feats):
        y = model({k: feats[k] for k in keys}, training=False)
        return head.serve(tf.cast(y, tf.float32))

    def empty(extra=()):
        """serving_default's outputs for 0 rows; `extra`: more float32 [N] outputs."""
        return {**{k: tf.zeros([0, *s["shape"][1:]], getattr(tf, s["dtype"])) for k, s in head.output_specs().items()},
                **{k: tf.zeros([0]) for k in extra}}

    def rows_or_empty(raw, compute, nothing=empty):
        """A batch of 0 rows answers `nothing()`, empty outputs of the served shapes: the layers
        (batch normalisation after a convolution over 0 decoded clips) do not all take one."""
        n = tf.shape(next(iter(raw.values())))[0]
        return tf.cond(n > 0, compute, nothing)

    # autograph=False: as in tf.data (see pipeline.plain), the graph code needs no conversion.
    @tf.function(input_signature=[spec], autograph=False)
    def serve(raw):
        return rows_or_empty(raw, lambda: run(graph(raw)))

    names = list(prep.manifest.inputs)
    attention = attention_probe(model, names)
    extra = [f"contribution_{n}" for n in names] + ([f"attention_{n}" for n in names] if attention else [])

    def explain(raw):
        """serving_default's outputs plus `contribution_<input>` per row: the batch is repeated
        once per input with that input marked missing, all in one call of the model."""
        feats = graph(raw)
        feats = {k: feats[k] for k in keys}
        rows = tf.shape(feats[present_key(names[0])])[0]
        blocks = len(names) + 1
        tiled = {k: tf.concat([v] * blocks, axis=0) for k, v in feats.items()}
        for i, name in enumerate(names):  # block i + 1 has `name` missing
            keep = tf.concat([tf.fill([rows], 0.0 if b == i + 1 else 1.0) for b in range(blocks)], axis=0)
            tiled[present_key(name)] = tiled[present_key(name)] * keep
        parts = tf.split(tf.cast(model(tiled, training=False), tf.float32), blocks, axis=0)
        full = head.serve(parts[0])
        out = dict(full)
        for i, name in enumerate(names):
            out[f"contribution_{name}"] = head.contribution(full, head.serve(parts[i + 1]))
        if attention is not None:
            out.update({f"attention_{n}": v for n, v in attention.shares(feats).items()})
        return out

    @tf.function(input_signature=[spec], autograph=False)
    def serve_explain(raw):
        return rows_or_empty(raw, lambda: explain(raw), lambda: empty(extra))

    embedder = embedder or embedding_model(model, names)
    embed_keys = [t.name for t in keras.tree.flatten(embedder.input)]
    widths = {k: int(t.shape[-1]) for k, t in embedder.output.items()}

    def embed(feats):
        """The embeddings, L2-normalised (a zero vector, a missing embedding never trained,
        stays zero). A missing input is what the gate hands on: its learned missing embedding."""
        got = embedder({k: feats[k] for k in embed_keys}, training=False)
        return {k: tf.math.l2_normalize(tf.cast(v, tf.float32), axis=-1) for k, v in got.items()}

    @tf.function(input_signature=[spec], autograph=False)
    def serve_embed(raw):
        return rows_or_empty(raw, lambda: embed(graph(raw)), lambda: {k: tf.zeros([0, w]) for k, w in widths.items()})

    mod.serve = serve
    mod.serve_explain = serve_explain
    mod.serve_embed = serve_embed
    signatures = {"serving_default": serve, "serving_explain": serve_explain, "serving_embed": serve_embed}
    audio = [n for n, s in prep.manifest.inputs.items() if s.modality == "audio"]
    if audio:
        wspec = dict(spec)
        for n in audio:
            wspec[n] = tf.TensorSpec((None, None), tf.float32, name=n)

        @tf.function(input_signature=[wspec], autograph=False)
        def serve_waveform(raw):
            def compute():
                feats = graph.decode({k: v for k, v in raw.items()}, skip=set(audio))
                for n in audio:
                    f, present = graph.decoders[n].from_waveforms(raw[n])
                    feats.update({feature_key(n, k): v for k, v in f.items()})
                    feats[present_key(n)] = present
                return run(graph.prep(feats))

            return rows_or_empty(raw, compute)

        mod.serve_waveform = serve_waveform
        signatures["serving_waveform"] = serve_waveform
    return mod, signatures


def export_saved_model(model, prep: Preprocessing, encoders: dict, keys: list[str], out_dir: Path, parity_raw: dict, parity_expected,
                       embedder=None) -> tuple:
    """Write the SavedModel atomically; returns (the parity report, the loaded SavedModel the
    check ran on: its resources are initialised at load, so the caller uses it as is instead of
    loading the folder a second time). Raises ExportError."""
    import tensorflow as tf

    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        mod, signatures = build_module(model, prep, encoders, keys, embedder)
        tf.saved_model.save(mod, str(tmp / "model"), signatures=signatures)
        loaded = tf.saved_model.load(str(tmp / "model"))
        got = call_signature(loaded.signatures["serving_default"], parity_raw)
        got = prep.head.parity_values(got)
        diff = float(np.max(np.abs(got - parity_expected))) if len(parity_expected) else 0.0
        if not diff <= PARITY_TOL:
            raise ExportError(f"parity check failed: the SavedModel differs from the trained model by {diff:.2e} (> {PARITY_TOL}) on {len(parity_expected)} validation rows")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        (tmp / "model").rename(out_dir)
        return {"rows": int(len(parity_expected)), "max_abs_diff": diff, "tolerance": PARITY_TOL}, loaded
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def call_signature(fn, raw: dict) -> dict:
    """Call a serving signature with numpy raw values; returns numpy outputs."""
    import tensorflow as tf

    feed = {}
    for k, spec in fn.structured_input_signature[1].items():
        v = raw[k]
        if spec.dtype == tf.string:
            feed[k] = tf.constant([x if isinstance(x, bytes) else str(x).encode() for x in v], tf.string)
        else:
            feed[k] = tf.constant(np.asarray(v, dtype=spec.dtype.as_numpy_dtype))
    out = fn(**feed)
    return {k: v.numpy() for k, v in out.items()}
