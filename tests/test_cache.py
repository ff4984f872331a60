"""The frozen-feature cache's storage: memory-mapped files, streamed when a split is large."""

import json

import numpy as np

from mmauto.search import feature_cache as cache_mod


def _write_split(folder, arrays):
    folder.mkdir(parents=True)
    for k, v in arrays.items():
        (folder / f"{k}.f32").write_bytes(v.astype("float32").tobytes())
    meta = {"rows": len(arrays["pooled"]), "shapes": {k: list(v.shape[1:]) for k, v in arrays.items()}}
    (folder / "meta.json").write_text(json.dumps(meta))


def test_large_splits_stream_from_disk_in_row_order(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    rows = 2 * cache_mod.CHUNK_ROWS + 7  # a short last chunk
    arrays = {"pooled": rng.normal(size=(rows, 8)), "tokens": rng.normal(size=(rows, 5, 8)),
              "mask": (rng.random((rows, 5)) > 0.3).astype("float32")}
    monkeypatch.setattr(cache_mod, "cache_key", lambda prep, name, etype: "key")
    _write_split(tmp_path / "key" / "train", arrays)
    fc = cache_mod.FeatureCache(tmp_path, prep=None, decoded={})

    read = cache_mod.read_split(tmp_path / "key" / "train")
    assert isinstance(read["tokens"], np.memmap) and read["tokens"].shape == (rows, 5, 8)

    def rows_of(ds):
        out = {}
        for batch in ds.batch(100):
            for k, v in batch.items():
                out.setdefault(k, []).append(v.numpy())
        return {k: np.concatenate(v) for k, v in out.items()}

    whole = rows_of(fc.dataset("photo", "keras_hub", "train"))
    monkeypatch.setattr(cache_mod, "IN_MEMORY_BYTES", 0)  # as if the split were larger than memory
    streamed = rows_of(fc.dataset("photo", "keras_hub", "train"))
    assert set(whole) == {"photo__cached_pooled", "photo__cached_tokens", "photo__cached_mask"}
    for k in whole:
        np.testing.assert_array_equal(whole[k], streamed[k])
    np.testing.assert_allclose(whole["photo__cached_tokens"], arrays["tokens"].astype("float32"))
    assert fc.specs("photo", "keras_hub") == {"pooled": (8,), "tokens": (5, 8), "mask": (5,)}
    assert fc.hits == 3 and fc.misses == 0


def test_shuffle_buffer_is_bounded_in_bytes():
    import tensorflow as tf

    from mmauto.data.pipeline import SHUFFLE_BYTES, SHUFFLE_ROWS, shuffle_buffer

    small = {"x": tf.TensorSpec((4,), tf.float32), "s": tf.TensorSpec((), tf.string)}
    assert shuffle_buffer(small, 300) == 300 and shuffle_buffer(small, 10**6) == SHUFFLE_ROWS
    tokens = ({"t": tf.TensorSpec((197, 768), tf.float32)}, tf.TensorSpec((), tf.int64))
    n = shuffle_buffer(tokens, 10**6)
    assert 100 < n and n * 197 * 768 * 4 <= SHUFFLE_BYTES


def test_a_killed_computation_leaves_no_half_split(tmp_path, monkeypatch):
    monkeypatch.setattr(cache_mod, "cache_key", lambda prep, name, etype: "key")
    fc = cache_mod.FeatureCache(tmp_path, prep=None, decoded={})
    split = tmp_path / "key" / "train"
    abandoned = split.with_name(f".train.tmp-{cache_mod._HOST}-999999999")  # no such process
    abandoned.mkdir(parents=True)
    other_host = split.with_name(".train.tmp-elsewhere-1")
    other_host.mkdir()

    def compute(name, etype, split_name, out):
        (out / "pooled.f32").write_bytes(b"\0" * 8)
        raise RuntimeError("killed")

    monkeypatch.setattr(fc, "_compute", compute)
    try:
        fc.arrays("photo", "keras_hub", "train")
    except RuntimeError:
        pass
    assert not split.exists() and not abandoned.exists() and other_host.exists()
    assert [p.name for p in split.parent.iterdir()] == [other_host.name]
