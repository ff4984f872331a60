"""Several targets in one model against one model per target (issue 15). Not a test: pytest
never collects it.

    python bench/multitarget.py [--budget 240] [--reviews-rows 6000] [--reviews-more-test 0] [--parts reviews same_digit] [--out DIR]

- reviews: the women's clothing reviews with `Recommended_IND` (binary) and `Rating` (5 classes)
  fitted jointly (one model, Recommended_IND primary) and each alone, every fit under the same
  time budget; test metrics per target.
- same_digit: "same digit?" from an MNIST image and an FSDD recording (`datasets.same_digit`),
  fitted alone and with the two digits (`image_digit`, `audio_digit`) as auxiliary targets.

Prints a markdown table and writes it, with the JSON, to --out (a temporary folder unless given).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import log, machine


def _variant(manifest: Path, name: str, target, train=None) -> Path:
    data = yaml.safe_load(manifest.read_text())
    data["target"] = target
    data["train"] = {**data.get("train", {}), **(train or {})}
    data["name"] = f"{data['name']}_{name}"
    path = manifest.with_name(f"manifest_{name}.yaml")
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _fit(manifest: Path, out: Path, budget: float, trials: int) -> dict:
    from mmauto import api

    t0 = time.perf_counter()
    summary = api.fit(manifest, out, max_trials=trials, time_budget=budget, overwrite=True)
    metrics = json.loads((out / "metrics.json").read_text())
    return {"metrics": metrics, "trials": summary["trials"], "wall_seconds": round(time.perf_counter() - t0, 1)}


def _scores(metrics: dict, column: str) -> dict:
    test = metrics.get("test") or {}
    got = (test.get("targets") or {}).get(column) or test
    return {k: got.get(k) for k in ("accuracy", "macro_f1", "roc_auc", "ece", "ece_floor")}


def reviews(out: Path, rows: int, budget: float, trials: int, fits_wanted=None, more_test: int = 0) -> list[dict]:
    import datasets

    made = datasets.clothing(out / "data", rows=rows, more_test=more_test)
    # One table with both targets: the binary manifest's folder, Rating put back.
    folder = Path(made["manifests"]["Recommended_IND"]).parent
    other = Path(made["manifests"]["Rating"]).parent
    for split in ("train", "test"):
        t = pd.read_csv(folder / f"{split}.csv")
        t["Rating"] = pd.read_csv(other / f"{split}.csv")["Rating"].values
        t.to_csv(folder / f"{split}.csv", index=False)
    base = Path(made["manifests"]["Recommended_IND"])
    fits = {
        "Recommended_IND alone": (_variant(base, "rec", "Recommended_IND"), ["Recommended_IND"]),
        "Rating alone": (_variant(base, "rating", "Rating"), ["Rating"]),
        "joint": (_variant(base, "joint", ["Recommended_IND", "Rating"]), ["Recommended_IND", "Rating"]),
        "joint auto-weighted": (_variant(base, "joint_auto", ["Recommended_IND", "Rating"], {"loss_weights": "auto"}),
                                ["Recommended_IND", "Rating"]),
    }
    fits = {k: v for k, v in fits.items() if not fits_wanted or k in fits_wanted}
    rows_out = []
    for name, (manifest, targets) in fits.items():
        log(f"reviews: {name}, budget {budget:.0f}s")
        got = _fit(manifest, out / f"run_{name.replace(' ', '_').lower()}", budget, trials)
        for t in targets:
            rows_out.append({"task": "reviews", "fit": name, "target": t, **_scores(got["metrics"], t),
                             "trials": got["trials"], "wall_seconds": got["wall_seconds"], "budget": budget})
            log(f"  {t}: {rows_out[-1]}")
    return rows_out


def same_digit(out: Path, budget: float, trials: int, fits_wanted=None) -> list[dict]:
    import datasets

    made = datasets.same_digit(out / "data")
    base = Path(made["manifest"])
    fits = {
        "same alone": _variant(base, "alone", "same"),
        "same + auxiliary digits": _variant(base, "aux", ["same", {"column": "image_digit", "auxiliary": True},
                                                          {"column": "audio_digit", "auxiliary": True}]),
    }
    fits = {k: v for k, v in fits.items() if not fits_wanted or k in fits_wanted}
    rows_out = []
    for name, manifest in fits.items():
        log(f"same_digit: {name}, budget {budget:.0f}s")
        got = _fit(manifest, out / f"run_{name.split()[0]}_{len(rows_out)}", budget, trials)
        rows_out.append({"task": "same_digit", "fit": name, "target": "same", **_scores(got["metrics"], "same"),
                         "trials": got["trials"], "wall_seconds": got["wall_seconds"], "budget": budget})
        log(f"  {rows_out[-1]}")
    return rows_out


def table(rows: list[dict]) -> str:
    f = lambda x: "-" if x is None else f"{x:.4f}"  # noqa: E731
    lines = ["| data | fit | target | test accuracy | test macro-F1 | test ROC-AUC | test ECE (floor) | trials | wall s (budget) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['task']} | {r['fit']} | {r['target']} | {f(r['accuracy'])} | {f(r['macro_f1'])} | {f(r['roc_auc'])} | "
                     f"{f(r.get('ece'))} ({f(r.get('ece_floor'))}) | "
                     f"{r['trials']} | {r['wall_seconds']:.0f} ({r['budget']:.0f}) |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=float, default=240.0, help="seconds per fit")
    ap.add_argument("--trials", type=int, default=30)
    ap.add_argument("--reviews-rows", type=int, default=6000)
    ap.add_argument("--reviews-more-test", type=int, default=0,
                    help="reviews outside the subsample added to its 1,200 test rows (2300: an ECE floor near 0.013)")
    ap.add_argument("--parts", nargs="+", default=["reviews", "same_digit"])
    ap.add_argument("--fits", nargs="+", default=None, help="only these fits (e.g. 'joint auto-weighted', 'same + auxiliary digits')")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="mmauto_multitarget_"))
    rows: list[dict] = []
    if "reviews" in args.parts:
        rows += reviews(out / "reviews", args.reviews_rows, args.budget, args.trials, args.fits, args.reviews_more_test)
    if "same_digit" in args.parts:
        rows += same_digit(out / "same_digit", args.budget, args.trials, args.fits)
    md = table(rows)
    (out / "multitarget.md").write_text(md + "\n")
    (out / "multitarget.json").write_text(json.dumps({"machine": machine(), "rows": rows}, indent=2, default=str))
    print(md)


if __name__ == "__main__":
    main()
