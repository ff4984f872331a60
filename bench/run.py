"""mmauto benchmark suite (GitHub issue 7). Not a test: pytest never collects it.

    python bench/run.py [--quick] --out results.json [--only NAME ...]

Runs the accuracy benchmarks on real data (../shared/data; each is skipped with a message when
the data is absent) and the ratio benchmarks, writes JSON to --out and a markdown report next
to it (same stem, .md), and prints the markdown. Generated data and run folders live in a
temporary folder that is removed at the end (--keep keeps it). Full run: under 30 minutes on a
2-core machine; --quick: under 5 minutes (small subsets, fewer trials).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import LoadMonitor, library_fingerprint, log, machine  # noqa: E402

ACCURACY = ("av_digits", "clothing")
RATIOS = ("cli_help_seconds", "pipeline_overhead_ratio", "serving_overhead_ratio", "trial_speedup_cached",
          "rss_ratio_100k_vs_10k")
NAMES = ACCURACY + RATIOS


def run_ratio(name: str, tmp: Path, quick: bool) -> dict:
    """One ratio benchmark -> {json key: entry}; some benchmarks report a second, informational key."""
    import ratios

    if name == "cli_help_seconds":
        return {name: ratios.cli_help()}
    if name == "pipeline_overhead_ratio":
        steady, first = ratios.pipeline_overhead(tmp, quick)
        return {name: steady, "pipeline_overhead_ratio_first_epoch": first}
    if name == "serving_overhead_ratio":
        tab, full = ratios.serving_overhead(tmp, quick)
        return {name: tab, "serving_overhead_ratio_image_audio": full}
    if name == "trial_speedup_cached":
        return {name: ratios.trial_speedup_cached(tmp, quick)}
    if name == "rss_ratio_100k_vs_10k":
        return {name: ratios.rss_ratio(tmp, quick)}
    raise KeyError(name)


def wait_quiet(monitor: LoadMonitor, max_wait: float, threshold: float = 0.25, window: int = 10) -> float:
    """Wait (up to max_wait s) until other processes use < threshold cores for `window` seconds."""
    t0 = time.time()
    while time.time() - t0 < max_wait:
        time.sleep(window)
        busy = monitor.summary(time.time() - window)["other_cores"]
        if busy is not None and busy < threshold:
            break
        log(f"other processes use {busy} cores; waiting for a quiet machine")
    return time.time() - t0


def run_all(names, quick: bool, tmp: Path, monitor: LoadMonitor) -> dict:
    from accuracy import run_accuracy

    results = {"suite": "mmauto bench", "mode": "quick" if quick else "full",
               "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
               "machine": machine(), "accuracy": {}, "ratios": {}, "seconds": {}, "load": {}, "errors": {}}
    for name in names:
        t0, wall0 = time.perf_counter(), time.time()
        log(f"=== {name}")
        try:
            if name in ACCURACY:
                results["accuracy"][name] = run_accuracy(name, tmp / name, quick)
            else:
                results["ratios"].update(run_ratio(name, tmp / name, quick))
        except Exception as exc:  # one broken benchmark must not lose the others' figures
            log(f"{name} failed: {exc}")
            results["errors"][name] = "".join(traceback.format_exception(exc))[-4000:]
        results["seconds"][name] = round(time.perf_counter() - t0, 1)
        results["load"][name] = monitor.summary(wall0, time.time())
        other = results["load"][name]["other_cores"]
        log(f"=== {name} done in {results['seconds'][name]:.0f}s" + (f" (other processes used {other} cores on average)" if other else ""))
    results["total_seconds"] = round(sum(results["seconds"].values()), 1)
    end = library_fingerprint()
    results["library_changed_during_run"] = end != results["machine"]["library_fingerprint"]
    if results["library_changed_during_run"]:
        log("WARNING: mmauto's source changed while the benchmarks ran; the figures mix two versions")
    return results


# === Markdown ===


def _f(x, digits=3):
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def markdown(res: dict) -> str:
    m = res["machine"]
    lines = [
        f"# mmauto benchmarks ({res['mode']} run)",
        "",
        f"Date: {res['date']}. Total benchmark time: {res['total_seconds'] / 60:.1f} min.",
        "",
        f"Machine: {m['nproc']} CPUs ({m['cpu']}), {m['ram_gb']} GB RAM, no GPU; {m['platform']}; "
        f"Python {m['python']}, TensorFlow {m['tensorflow']}, Keras {m['keras']}, keras-hub {m['keras_hub']}, "
        f"keras-tuner {m['keras_tuner']}. mmauto at commit {m.get('git_commit') or '?'}"
        + (f" with {len(m['git_uncommitted_library_files'])} uncommitted library file(s)" if m.get("git_uncommitted_library_files") else "") + ".",
        "",
        *(["**Warning: mmauto's source changed while these benchmarks ran; the figures mix two versions.**", ""]
          if res.get("library_changed_during_run") else []),
        "## Accuracy on real data",
        "",
        "Each row is one `mmauto.api.fit` search under the time budget (the tuner is in the last column); metrics are "
        "on the test table through the exported SavedModel.",
        "",
        "| data set | inputs | rows (train/test) | test accuracy | test ROC-AUC | wall s (budget) | trials | best fusion | encoders | tuner |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    notes = []
    for key, block in res["accuracy"].items():
        if "skipped" in block and "results" not in block:
            lines.append(f"| {key} | skipped: {block['skipped']} | | | | | | | | |")
            continue
        for name, r in block["results"].items():
            label = {"av_digits": "AV-digits", "clothing": "Clothing reviews"}.get(key, key)
            target = f" / {name}" if key == "clothing" else ""
            inputs = name if key == "av_digits" else "review + title text, table"
            encs = ", ".join(f"{k}={v}" for k, v in (r["encoders"] or {}).items())
            lines.append(
                f"| {label}{target} | {inputs} | {block['train_rows']}/{block['test_rows']} | {_f(r['accuracy'])} | "
                f"{_f(r['roc_auc'])} | {r['wall_seconds']:.0f} ({r['time_budget']:.0f}) | {r['trials']} | {r['best_fusion']} | {encs} | "
                f"{r.get('tuner', '')} |")
        notes.append(f"- {block['dataset']}: {block['note']}.")
        for what, why in (block.get("skipped") or {}).items():
            notes.append(f"- {what}: skipped ({why}).")
    lines += ["", *notes, "", "## Ratios", "", "| key | value | goal | met |", "|---|---|---|---|"]
    for key, e in res["ratios"].items():
        met = {True: "yes", False: "**no**", None: "(info)"}[e["met"]]
        lines.append(f"| `{key}` | {_f(e['value'])} | {e['goal']} | {met} |")
    lines += ["", "### What the ratios measure", ""]
    for key, e in res["ratios"].items():
        d = e["detail"]
        lines.append(f"- `{key}`: {d.get('what', '')}. " + _ratio_facts(key, d))
    if res["errors"]:
        lines += ["", "## Errors", ""]
        for name, tb in res["errors"].items():
            lines.append(f"- `{name}`: {tb.strip().splitlines()[-1]}")
    lines += ["", "## Time and load", "",
              "Seconds per benchmark, and the CPU cores used on average by this run and by other processes meanwhile "
              "(timings taken while other processes were busy are less trustworthy):", "",
              "| benchmark | seconds | cores used by the bench | cores used by other processes (mean / max) |", "|---|---|---|---|"]
    for k, v in res["seconds"].items():
        ld = res.get("load", {}).get(k) or {}
        lines.append(f"| {k} | {v:.0f} | {_f(ld.get('own_cores'), 2)} | {_f(ld.get('other_cores'), 2)} / {_f(ld.get('other_cores_max'), 2)} |")
    return "\n".join(lines) + "\n"


def _ratio_facts(key: str, d: dict) -> str:
    if key == "trial_speedup_cached":
        off, on = d["feature_cache_off"], d["feature_cache_on"]
        b = d["backbone"]
        return (f"Frozen {b['kind']} ({b['num_layers']} layers, hidden {b['hidden_dim']}, {b['image_size']}x{b['image_size']}, "
                f"{b['params']:,} params), {d['rows']} demo rows, {d['epochs']} epochs, {d['trials']} trials each. "
                f"Trial seconds without cache {off['trial_seconds']}, with cache {on['trial_seconds']} "
                f"(trial 0 computes the cache; cold ratio {d['cold_ratio']}; fastest uncached trial / warm cached median "
                f"{d['conservative_ratio']}).")
    if key == "pipeline_overhead_ratio":
        return (f"{d['train_rows']} training rows, batch {d['batch_size']}; epoch seconds from files {d['epoch_seconds_files']}, "
                f"in memory {d['epoch_seconds_memory']}.")
    if key == "pipeline_overhead_ratio_first_epoch":
        return f"Files {d['epoch_seconds_files']} s, memory {d['epoch_seconds_memory']} s."
    if key.startswith("serving_overhead_ratio"):
        return (f"Inputs {', '.join(d['inputs'])}; serving_default {d['serving_default_ms']} ms, bare model {d['bare_model_ms']} ms, "
                f"preprocessing graph alone {d['preprocessing_graph_only_ms']} ms, in-process serve tf.function "
                f"{d['in_process_serve_fn_ms']} ms, call_signature from numpy {d['call_signature_from_numpy_ms']} ms "
                f"(median of {d['calls']} calls, batch of one).")
    if key == "rss_ratio_100k_vs_10k":
        return (f"Peak RSS {d['big']['peak_rss_mb']} MB ({d['rows_big']} rows, {d['big']['wall_seconds']} s) vs "
                f"{d['small']['peak_rss_mb']} MB ({d['rows_small']} rows, {d['small']['wall_seconds']} s). {d.get('note', '')}")
    if key == "cli_help_seconds":
        return f"Runs {d['seconds']} s; importing mmauto_cli.main: {d['import_mmauto_cli_main_seconds_and_modules']}."
    return ""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="mmauto benchmark suite (writes JSON and a markdown table)")
    ap.add_argument("--quick", action="store_true", help="small subsets and fewer trials (under 5 minutes)")
    ap.add_argument("--out", type=Path, default=Path("results.json"), help="JSON results; the markdown goes next to it (.md)")
    ap.add_argument("--only", nargs="+", choices=NAMES, metavar="NAME", help=f"run only these ({', '.join(NAMES)})")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder (its path is logged)")
    ap.add_argument("--wait-quiet", type=float, default=0, metavar="SECONDS",
                    help="first wait up to this long for other processes to leave the CPUs alone")
    args = ap.parse_args(argv)

    monitor = LoadMonitor().start()
    if args.wait_quiet:
        waited = wait_quiet(monitor, args.wait_quiet)
        log(f"waited {waited:.0f}s for a quiet machine")
    tmp = Path(tempfile.mkdtemp(prefix="mmauto-bench-"))
    log(f"work folder {tmp}")
    try:
        res = run_all(args.only or NAMES, args.quick, tmp, monitor)
    finally:
        monitor.stop()
        if args.keep:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2, default=str))
    md = markdown(res)
    args.out.with_suffix(".md").write_text(md)
    print(md)
    log(f"wrote {args.out} and {args.out.with_suffix('.md')} in {res['total_seconds'] / 60:.1f} min")
    return 1 if res["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
