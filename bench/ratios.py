"""The ratio benchmarks. Every timing ratio compares two figures measured in the same run on the
same machine, so it says something about mmauto rather than about the hardware.

- trial_speedup_cached      end-to-end trial / trial on the frozen-feature cache (>= 10)
- pipeline_overhead_ratio   steady-state epoch from files via tf.data / from in-memory tensors (<= 1.15)
- cli_help_seconds          median `mmauto --help` wall time (< 0.3)
- serving_overhead_ratio    SavedModel serving_default / bare model call, batch of one (<= 1.3)
- rss_ratio_100k_vs_10k     peak RSS of a one-epoch fit on 100k rows / on 10k rows (<= 1.3)
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from common import MMAUTO, PYTHON, log, median, ratio_entry, run_child, run_peak_rss, trials_only, write_manifest


def _demo(folder: Path, rows: int) -> Path:
    from mmauto import api

    return api.demo(folder, rows=rows, seed=0)


def _pinned_space(**extra) -> dict:
    """Everything that changes a trial's compute, pinned."""
    return {"fusion": "concat", "width": 32, "dropout": 0.1, "learning_rate": 0.001, "batch_size": 32,
            "modality_dropout": 0.0, "hybrid": False, "contrastive_weight": 0.0, "reconstruction_weight": 0.0, **extra}


# === CLI start-up ===


def cli_help(runs: int = 7) -> dict:
    run_child([MMAUTO, "--help"])  # warm the page cache; not counted
    times = []
    for _ in range(runs):
        r = run_child([MMAUTO, "--help"])
        if r["rc"] != 0:
            raise RuntimeError(f"mmauto --help exited {r['rc']}: {r['stderr'][-500:]}")
        times.append(r["seconds"])
    probe = ("import sys, time; t = time.perf_counter(); import mmauto_cli.main; "
             "print(round(time.perf_counter() - t, 4), sorted({k.split('.')[0] for k in sys.modules} & "
             "{'tensorflow', 'keras', 'keras_hub', 'keras_tuner', 'pandas', 'numpy', 'yaml', 'pydantic', 'rich', 'typer'}))")
    imports = run_child([PYTHON, "-c", probe])
    return ratio_entry(median(times), "< 0.3", {
        "what": "median wall seconds of `mmauto --help` in a fresh process (one warm-up run not counted)",
        "runs": runs, "seconds": [round(t, 4) for t in times], "min": round(min(times), 4), "max": round(max(times), 4),
        "import_mmauto_cli_main_seconds_and_modules": imports["stdout"].strip(),
    })


# === Frozen-feature cache ===


def trial_speedup_cached(tmp: Path, quick: bool) -> dict:
    """Two fits of one pinned configuration with a frozen keras-hub ViT: `train.feature_cache`
    false, then true. Per-trial seconds come from RUN_DIR/leaderboard.json (`seconds`, measured
    by the tuner from model build to the end of model.fit, so it includes build, tracing, every
    epoch and validation, and for a cached trial the cache lookup). Trial 0 of each run is
    cold (it fills the decode cache; in the cached run it also computes the frozen features),
    so the ratio compares the medians of the warm trials (1, 2, ...)."""
    from presets import small_vit

    # --quick keeps the full run's data size (the ratio is about per-trial work, which tiny data
    # hides under the fixed per-trial floor) and saves time with one trial fewer.
    rows, trials, epochs = (1200, 2, 3) if quick else (1200, 3, 3)
    folder = tmp / "cache_bench"
    demo = _demo(folder / "demo", rows)
    vit = small_vit(folder / "vit", size=64, patch=8, layers=6, hidden=192, mlp=384, heads=6)
    results = {}
    for cached in (False, True):
        data = {
            "name": f"cache_{'on' if cached else 'off'}",
            "task": "classification",
            "data": {"train": str(demo.parent / "train.csv"), "split": {"validation": 0.2, "test": 0.1, "seed": 42}},
            "target": "label",
            "inputs": {"photo": {"modality": "image", "column": "image", "size": [64, 64], "channels": 3,
                                 "encoder": {"preset": vit["folder"], "trainable": False}}},
            # dropout stays a range so the random oracle can make distinct trials of one configuration
            "search": {"tuner": "random", "max_trials": trials, "space": _pinned_space(dropout={"min": 0.0, "max": 0.3})},
            "train": {"epochs": epochs, "early_stopping": False, "feature_cache": cached, "seed": 42},
        }
        m = write_manifest(folder / f"manifest_{'on' if cached else 'off'}.yaml", data)
        run = folder / f"run_{'on' if cached else 'off'}"
        log(f"trial_speedup_cached: fit with feature_cache={cached} ({trials} trials x {epochs} epochs)")
        r = run_child([MMAUTO, "fit", m, "--out", run, "--json"], timeout=1200)
        if r["rc"] != 0:
            raise RuntimeError(f"fit (feature_cache={cached}) exited {r['rc']}: {r['stderr'][-1500:]}")
        board = json.loads((run / "leaderboard.json").read_text())
        secs = [row["seconds"] for row in sorted(trials_only(board), key=lambda x: int(x["trial"]))]
        summary = json.loads(r["stdout"])
        results[cached] = {"trial_seconds": secs, "warm_median": median(secs[1:]), "fit_wall_seconds": round(r["seconds"], 1),
                           "feature_cache": summary.get("feature_cache"), "test_accuracy": summary["metrics"].get("test", {}).get("accuracy")}
    off, on = results[False], results[True]
    value = off["warm_median"] / on["warm_median"] if on["warm_median"] else None
    return ratio_entry(value, ">= 10", {
        "what": "median seconds of warm trials (trial 1+) without / with train.feature_cache; trial seconds are the "
                "tuner's (model build + model.fit incl. validation), from RUN_DIR/leaderboard.json",
        "backbone": vit, "rows": rows, "train_rows": int(rows * 0.7), "epochs": epochs, "trials": trials,
        "feature_cache_off": off, "feature_cache_on": on,
        "cold_ratio": round(off["trial_seconds"][0] / on["trial_seconds"][0], 3) if on["trial_seconds"][0] else None,
        "conservative_ratio": round(min(off["trial_seconds"]) / on["warm_median"], 3) if on["warm_median"] else None,
        "note": ("the ratio grows with the backbone's work per trial (rows x epochs x backbone cost) over a fixed "
                 "per-trial floor (model build, tf.function tracing, checkpoint writes); "
                 + ("--quick runs 2 trials instead of 3 (one warm trial each)" if quick else
                    "a pretrained ResNet/ViT at 224x224 costs 10-100x this backbone per image")),
    })


# === tf.data pipeline overhead ===


def epoch_timer():
    """A Keras callback collecting each epoch's wall seconds in `.seconds`."""
    import keras

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds, self._t = [], None

        def on_epoch_begin(self, epoch, logs=None):
            self._t = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self._t)

    return EpochTimer()


def _pinned_setup(manifest_path: Path, overrides: dict):
    """Manifest, splits, fitted preprocessing, hypermodel and a default hp set (all pinned)."""
    import keras_tuner as kt

    from mmauto.config.manifest import load_manifest
    from mmauto.data.checks import load_splits
    from mmauto.data.pipeline import Preprocessing
    from mmauto.model import hardware
    from mmauto.model.hypermodel import MultimodalHyperModel

    m = load_manifest(manifest_path, overrides)
    splits = load_splits(m)
    hardware.configure(False, m.train.seed)
    prep = Preprocessing.fit(m, splits)
    hm = MultimodalHyperModel(prep)
    hp = kt.HyperParameters()
    hm.build(hp)  # registers every hp at its default
    return m, splits, prep, hm, hp


DEMO_ENCODERS = {"photo": {"type": "cnn", "width": 16, "depth": 2}, "review": {"type": "tfidf", "width": 32},
                 "voice": {"type": "cnn", "width": 16, "depth": 2}, "meta": {"type": "mlp", "width": 32, "depth": 1}}


def _encoder_overrides(names) -> dict:
    return {"inputs": {n: {"encoder": DEMO_ENCODERS[n]} for n in names}}


def pipeline_overhead(tmp: Path, quick: bool) -> tuple[dict, dict]:
    """The demo data (image, text, audio, table) and one pinned model architecture, trained twice
    for a few epochs: (A) from the files through mmauto's tf.data pipeline
    (Preprocessing.decoded_dataset, not cached yet, then batches: shuffle, batch, per-batch encoder
    preprocessing, prefetch), and (B) from the same model inputs materialised first in memory
    (from_tensor_slices, shuffle, batch, prefetch). Two models built with the same seed, trained
    in interleaved one-epoch fit() calls; no validation. The key is the steady state (median of
    epochs 2+: A reads its decode cache); the first epoch (A decodes every file, both trace) is
    reported under its own key."""
    import keras
    import numpy as np
    import tensorflow as tf

    rows, epochs = (600, 3) if quick else (3000, 6)
    demo = _demo(tmp / "pipe_demo", rows)
    overrides = {**_encoder_overrides(["photo", "review", "voice", "meta"]), "search": {"space": _pinned_space()}}
    m, splits, prep, hm, hp = _pinned_setup(demo, overrides)
    enc, keys, bs = hm.encoders(hp), hm.input_keys(hp), hm.batch_size(hp)
    train = splits["train"]
    seed = m.train.seed

    # (B) materialise the model inputs once (outside the timing)
    t0 = time.perf_counter()
    feats, ys = {}, []
    for x, y in prep.batches(prep.decoded_dataset(train.frame, train.root), bs, enc, keys):
        for k, v in x.items():
            feats.setdefault(k, []).append(v.numpy())
        ys.append(y.numpy())
    feats = {k: np.concatenate(v) for k, v in feats.items()}
    y = np.concatenate(ys)
    materialise_s = time.perf_counter() - t0
    mem_bytes = int(sum(v.nbytes for v in feats.values()) + y.nbytes)
    in_memory = (tf.data.Dataset.from_tensor_slices((feats, y)).shuffle(min(len(y), 10000), seed=seed, reshuffle_each_iteration=True)
                 .batch(bs).prefetch(tf.data.AUTOTUNE))

    # (A) from files, exactly as a trial builds it (decode cache empty)
    from_files = prep.batches(prep.decoded_dataset(train.frame, train.root), bs, enc, keys, shuffle_seed=seed, size=train.rows)

    # Interleaved one-epoch fit() calls (A, B, A, B, ...) so that drifts and bursts of other load
    # hit both sides alike; each model keeps its traced train function across the calls.
    models, callbacks = {}, {}
    for name in ("files", "memory"):
        keras.utils.set_random_seed(seed)
        models[name] = hm.build(hp)
        callbacks[name] = epoch_timer()
    log(f"pipeline_overhead: {epochs} interleaved epochs from files and from memory")
    for _ in range(epochs):
        for name, ds in (("files", from_files), ("memory", in_memory)):
            models[name].fit(ds, epochs=1, verbose=0, callbacks=[callbacks[name]])
    times = {name: cb.seconds for name, cb in callbacks.items()}
    steady = median(times["files"][1:]) / median(times["memory"][1:])
    first = times["files"][0] / times["memory"][0]
    detail = {
        "what": "median epoch seconds of epochs 2+ (steady state), files / memory; same pinned model, same rows, "
                "epochs interleaved (one-epoch fit calls, A B A B ...)",
        "data": "mmauto demo (image 32x32 PNG, text, 16 kHz WAV 0.5 s, 4 table columns)", "rows": rows, "train_rows": train.rows,
        "batch_size": bs, "encoders": enc, "epochs": epochs,
        "epoch_seconds_files": [round(t, 3) for t in times["files"]],
        "epoch_seconds_memory": [round(t, 3) for t in times["memory"]],
        "materialise_seconds": round(materialise_s, 2), "in_memory_bytes": mem_bytes,
    }
    first_detail = {"what": "epoch 1 from files (decodes every PNG/WAV, fills the cache, traces) / epoch 1 in memory (traces)",
                    "epoch_seconds_files": detail["epoch_seconds_files"][:1], "epoch_seconds_memory": detail["epoch_seconds_memory"][:1]}
    return ratio_entry(steady, "<= 1.15", detail), ratio_entry(first, "info", first_detail)


# === Serving overhead ===


def _time_calls(fn, n: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def _serving_case(tmp: Path, demo: Path, names: list[str], calls: int) -> tuple[float, dict]:
    import numpy as np
    import tensorflow as tf
    import yaml

    from mmauto.export.saved_model import build_module, call_signature

    raw_manifest = yaml.safe_load(demo.read_text())
    raw_manifest["inputs"] = {n: {**raw_manifest["inputs"][n], "encoder": DEMO_ENCODERS[n]} for n in names}
    raw_manifest["search"] = {"tuner": "random", "max_trials": 1, "space": _pinned_space()}
    tag = "_".join(names)
    mpath = write_manifest(demo.parent / f"manifest_serve_{tag}.yaml", raw_manifest)
    m, splits, prep, hm, hp = _pinned_setup(mpath, None)
    model = hm.build(hp)
    enc, keys = hm.encoders(hp), hm.input_keys(hp)
    val = splits["validation"]
    one = val.frame.iloc[:1]

    mod, signatures = build_module(model, prep, enc, keys)
    out_dir = tmp / f"serve_{tag}"
    tf.saved_model.save(mod, str(out_dir), signatures=signatures)
    sig = tf.saved_model.load(str(out_dir)).signatures["serving_default"]

    # The exact tensors the signature takes, built once (as call_signature does).
    raw = prep.serving_values(one, val.root)
    feed = {}
    for k, spec in sig.structured_input_signature[1].items():
        v = raw[k]
        feed[k] = (tf.constant([x if isinstance(x, bytes) else str(x).encode() for x in v], tf.string) if spec.dtype == tf.string
                   else tf.constant(np.asarray(v, dtype=spec.dtype.as_numpy_dtype)))
    # Features for the bare model: the same graph functions the SavedModel runs, on the same row.
    graph = prep.graph(enc)
    prep_fn = tf.function(lambda r: graph(r))
    feats = prep_fn(feed)
    feats = {k: feats[k] for k in keys}
    bare = tf.function(lambda f: model(f, training=False))

    got_sig = sig(**feed)
    got_bare = bare(feats)
    p_sig = got_sig["probabilities"].numpy()
    diff = float(np.max(np.abs(p_sig - np.asarray(got_bare))))

    t_sig = _time_calls(lambda: sig(**feed), calls, 50)
    t_bare = _time_calls(lambda: bare(feats), calls, 50)
    t_prep = _time_calls(lambda: prep_fn(feed), calls, 50)
    t_inproc = _time_calls(lambda: mod.serve(feed), calls, 50)
    t_numpy = _time_calls(lambda: call_signature(sig, raw), max(calls // 4, 50), 10)
    def ms(xs):
        return round(1000 * median(xs), 4)
    value = median(t_sig) / median(t_bare)
    return value, {
        "inputs": names, "encoders": enc, "calls": calls, "rows_per_call": 1,
        "serving_default_ms": ms(t_sig), "bare_model_ms": ms(t_bare),
        "preprocessing_graph_only_ms": ms(t_prep), "in_process_serve_fn_ms": ms(t_inproc),
        "call_signature_from_numpy_ms": ms(t_numpy),
        "max_abs_diff_probabilities": diff,
    }


def serving_overhead(tmp: Path, quick: bool) -> tuple[dict, dict]:
    """SavedModel `serving_default` (raw inputs, in-graph preprocessing) / the bare Keras model
    (a tf.function of model(features, training=False)) on features computed by the same graph
    functions from the same row; batch of one; medians of many calls after warm-up. Untrained
    pinned models: weights do not change the timing. Main key: text + table (the demo without
    image and audio); second key: all four demo inputs (PNG and WAV decoding in the graph)."""
    calls = 300 if quick else 1000
    demo = _demo(tmp / "serve_demo", 120)
    log("serving_overhead: text + table")
    v1, d1 = _serving_case(tmp, demo, ["review", "meta"], calls)
    log("serving_overhead: image + text + audio + table")
    v2, d2 = _serving_case(tmp, demo, ["photo", "review", "voice", "meta"], calls)
    what = "median serving_default call / median bare model call (features precomputed by the same graph)"
    return (ratio_entry(v1, "<= 1.3", {"what": what, **d1}), ratio_entry(v2, "info", {"what": what, **d2}))


# === Memory vs data size ===


def rss_ratio(tmp: Path, quick: bool) -> dict:
    """Peak RSS (ru_maxrss of exactly that child, via wait4) of `mmauto fit --max-trials 1
    --epochs 1` on a generated tabular + text table of N rows vs N/10 rows; each in its own
    process. The fit includes data checks, preprocessing, the epoch, export and evaluation."""
    from datasets import tabular_text, tabular_text_manifest

    big, small = (20000, 2000) if quick else (100000, 10000)
    out = {}
    for rows in (small, big):
        folder = tmp / f"rss_{rows}"
        table = tabular_text(folder / "data.csv", rows)
        m = tabular_text_manifest(folder / "manifest.yaml", table)
        log(f"rss: mmauto fit on {rows} rows")
        r = run_peak_rss([MMAUTO, "fit", m, "--out", folder / "run", "--max-trials", "1", "--epochs", "1", "--json"],
                         folder / "fit.out", timeout=1500)
        if r["rc"] != 0:
            raise RuntimeError(f"fit on {rows} rows exited {r['rc']}: {r['output'][-1500:]}")
        text = r["output"]
        summary = json.loads(text[text.index("{"):]) if "{" in text else {}
        out[rows] = {"peak_rss_mb": round(r["rss_mb"], 1), "wall_seconds": round(r["seconds"], 1),
                     "csv_mb": round(table.stat().st_size / 2**20, 1),
                     "test_accuracy": (summary.get("metrics", {}).get("test") or {}).get("accuracy")}
    base = run_peak_rss([PYTHON, "-c", "import tensorflow, keras, keras_tuner"], tmp / "rss_import.out")
    value = out[big]["peak_rss_mb"] / out[small]["peak_rss_mb"]
    return ratio_entry(value, "<= 1.3", {"what": f"peak RSS of a one-epoch fit on {big} rows / on {small} rows",
                                         "rows_big": big, "rows_small": small, "big": out[big], "small": out[small],
                                         "import_tensorflow_keras_rss_mb": round(base["rss_mb"], 1) if base["rss_mb"] else None,
                                         "note": "--quick uses 20k vs 2k rows" if quick else ""})
