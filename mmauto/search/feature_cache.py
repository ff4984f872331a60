"""The frozen-feature cache.

A frozen encoder (a keras-hub backbone with `trainable: false`, the default for presets) is a
fixed function of its input, so its outputs (pooled vector, tokens, padding mask) are computed once per
split, stored in RUN_DIR/cache keyed by everything they depend on (read memory-mapped), and trials then train only
the fusion and the head on them. The exported model still holds the whole graph: after the
search the full model is rebuilt and receives the trained fusion/head weights by layer name.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
from pathlib import Path

import numpy as np

from mmauto import events
from mmauto.data.keys import mask_key, pooled_key, tokens_key

# Bumped when what the cache holds changes (2: text token masks; 3: raw float32 files read
# memory-mapped, so a split larger than memory trains without loading it whole).
FORMAT = 3

# A split's features up to this size are handed to tf.data whole (fastest); larger ones are
# streamed from the memory-mapped files in chunks. Frozen ViT-B tokens at 224x224 are 0.6 MB a row.
IN_MEMORY_BYTES = 1 << 30
CHUNK_ROWS = 256


def cache_key(prep, name: str, etype: str) -> str:
    spec = prep.manifest.inputs[name]
    enc = prep.encoder(name, etype)
    blob = json.dumps({"format": FORMAT, "input": spec.to_dict(), "encoder": etype, "prep": enc.prep_state,
                       "modality": prep.state["inputs"][name]["modality"]}, sort_keys=True, default=str)
    return f"{name}-{etype}-{hashlib.sha1(blob.encode()).hexdigest()[:12]}"


def read_split(folder: Path) -> dict[str, np.ndarray]:
    """One split's cached outputs ({pooled, tokens?, mask?}), memory-mapped read-only."""
    meta = json.loads((folder / "meta.json").read_text())
    return {k: np.memmap(folder / f"{k}.f32", dtype="float32", mode="r", shape=(meta["rows"], *shape))
            for k, shape in meta["shapes"].items()}


_HOST = socket.gethostname().replace("-", "_")


def _remove_abandoned(folder: Path) -> None:
    """Delete temporary folders of `folder` left by this machine's processes that no longer run
    (a killed fit); workers on other machines sharing RUN_DIR keep theirs."""
    for tmp in folder.parent.glob(f".{folder.name}.tmp-{_HOST}-*"):
        pid = int(tmp.name.rsplit("-", 1)[1])
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(tmp, ignore_errors=True)
        except PermissionError:
            pass  # alive, another user's


class FeatureCache:
    """Per-split outputs of frozen encoders under RUN_DIR/cache/<key>/<split>/: one raw float32
    file per output (pooled, tokens, mask) and meta.json with the row count and shapes."""

    def __init__(self, root: Path, prep, decoded: dict, on_event=None):
        self.root = Path(root)
        self.prep = prep
        self.decoded = decoded  # split -> decoded (cached) tf.data of (features, target)
        self.on_event = on_event or events.ignore
        self.hits = 0
        self.misses = 0

    def arrays(self, name: str, etype: str, split: str) -> dict[str, np.ndarray]:
        folder = self.root / cache_key(self.prep, name, etype) / split
        if (folder / "meta.json").exists():
            self.hits += 1
            return read_split(folder)
        self.misses += 1
        self.on_event(events.CacheFill(input=name, encoder=etype, split=split))
        _remove_abandoned(folder)
        # One temporary folder per process: distributed workers may compute the same split at once.
        tmp = folder.with_name(f".{split}.tmp-{_HOST}-{os.getpid()}")
        tmp.mkdir(parents=True)
        try:
            self._compute(name, etype, split, tmp)
            tmp.rename(folder)  # atomic: a killed run never leaves half a split
        except OSError:
            if not (folder / "meta.json").exists():
                raise
        finally:  # another worker finished first, or the computation failed
            shutil.rmtree(tmp, ignore_errors=True)
        return read_split(folder)

    def _compute(self, name: str, etype: str, split: str, out: Path) -> None:
        """Runs the frozen encoder batch by batch, appending each output to its file, so the
        outputs never sit in memory all at once."""
        import keras
        import keras_tuner as kt

        enc = self.prep.encoder(name, etype)
        feeds = {}
        inputs = {}
        for feat, (key, shape, dtype) in self.prep.encoder_inputs(name, etype).items():
            inputs[key] = feeds[feat] = keras.Input(shape, dtype=dtype, name=key)
        got = enc.build(kt.HyperParameters(), feeds, name)
        outputs = {"pooled": got.pooled}
        if got.tokens is not None:
            outputs["tokens"] = got.tokens
            if got.mask is not None:
                outputs["mask"] = got.mask
        extractor = keras.Model(inputs, outputs)
        ds = self.prep.batches(self.decoded[split], 32, {name: etype}, keys=list(inputs))
        files = {k: open(out / f"{k}.f32", "wb") for k in outputs}
        rows, shapes = 0, {}
        try:
            for x in ds.map(lambda x, *rest: x):
                batch = {k: np.asarray(v, dtype="float32") for k, v in extractor.predict_on_batch(x).items()}
                for k, v in batch.items():
                    files[k].write(v.tobytes())
                shapes = {k: list(v.shape[1:]) for k, v in batch.items()}
                rows += len(batch["pooled"])
        finally:
            for f in files.values():
                f.close()
        (out / "meta.json").write_text(json.dumps({"rows": rows, "shapes": shapes}))

    def dataset(self, name: str, etype: str, split: str):
        """A tf.data of {pooled_key, tokens_key, mask_key} rows in the decoded dataset's order."""
        import tensorflow as tf

        a = self.arrays(name, etype, split)
        keys = {"pooled": pooled_key(name), "tokens": tokens_key(name), "mask": mask_key(name)}
        feats = {keys[k]: v for k, v in a.items()}
        if sum(v.nbytes for v in feats.values()) <= IN_MEMORY_BYTES:
            return tf.data.Dataset.from_tensor_slices({k: np.asarray(v) for k, v in feats.items()})
        rows = len(a["pooled"])

        def chunks():
            for start in range(0, rows, CHUNK_ROWS):
                yield {k: np.asarray(v[start:start + CHUNK_ROWS]) for k, v in feats.items()}

        spec = {k: tf.TensorSpec((None, *v.shape[1:]), tf.float32) for k, v in feats.items()}
        return tf.data.Dataset.from_generator(chunks, output_signature=spec).unbatch()

    def specs(self, name: str, etype: str) -> dict:
        a = self.arrays(name, etype, "train")
        return {"pooled": a["pooled"].shape[1:], "tokens": a["tokens"].shape[1:] if "tokens" in a else None,
                "mask": a["mask"].shape[1:] if "mask" in a else None}


def transfer_weights(source, target) -> int:
    """Copy weights from the cached-feature model into the full model, layer by layer, by name."""
    by_name = {layer.name: layer for layer in target.layers}
    copied = 0
    for layer in source.layers:
        if layer.weights and layer.name in by_name:
            by_name[layer.name].set_weights(layer.get_weights())
            copied += 1
    return copied
