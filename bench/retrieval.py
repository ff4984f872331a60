"""Cross-modal retrieval (issue 17). Not a test: pytest never collects it.

    python bench/retrieval.py [--budget 300] [--reviews-rows 6000] [--parts av reviews] [--out DIR]

- av: AV-digits pairs (`datasets.av_digits`: an FSDD recording and an MNIST image of the same
  digit per row), `task: retrieval`; on the test split each recording queries every test image
  (`mmauto search`): how often the top image shows the spoken digit (chance 10%), and how often
  the paired image itself is ranked 1st / in the top 10. The paired image can only be told from
  the other images of its digit by chance: with n test images per digit its recall@10 is bounded
  by about min(1, 10 / n) even for a perfect digit matcher, which the table prints beside it.
- reviews: the women's clothing reviews, title -> review text over the test rows that have both.

Prints a markdown table and writes it, with the JSON, to --out (a temporary folder unless given).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import log, machine


def _retrieval_manifest(manifest: Path, inputs: dict, name: str) -> Path:
    data = yaml.safe_load(manifest.read_text())
    data.pop("target", None)
    data["task"], data["name"], data["inputs"] = "retrieval", name, inputs
    data["data"]["split"].pop("stratify", None)
    data["data"]["on_error"] = "skip"  # a review with neither title nor text pairs nothing
    path = manifest.with_name(f"manifest_{name}.yaml")
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _fit_and_search(manifest: Path, out: Path, budget: float, trials: int, table: Path, query: str, cand: str, keep) -> tuple:
    from mmauto import api

    t0 = time.perf_counter()
    summary = api.fit(manifest, out / "run", time_budget=budget, max_trials=trials, overwrite=True)
    wall = round(time.perf_counter() - t0, 1)
    frame = pd.read_csv(table, keep_default_na=False)
    rows = frame[keep(frame)].reset_index(drop=True)
    pairs = table.parent / "pairs.csv"  # beside the table: its media paths are relative to it
    rows.to_csv(pairs, index=False)
    ranked = api.search(out / "run", pairs, pairs, top_k=10, query_input=query, candidate_input=cand)
    return summary, rows, ranked, wall


def _recall(ranked: pd.DataFrame) -> dict:
    hit = ranked[ranked["candidate_row"] == ranked["query_row"]]
    n = ranked["query_row"].nunique()
    return {"recall_at_1": float((hit["rank"] == 1).sum() / n), "recall_at_10": float(len(hit) / n), "queries": int(n)}


def av(out: Path, budget: float, trials: int) -> dict:
    import datasets

    made = datasets.av_digits(out / "data")
    base = Path(made["manifests"]["image+audio"])
    inputs = yaml.safe_load(base.read_text())["inputs"]
    manifest = _retrieval_manifest(base, {"audio": inputs["audio"], "image": inputs["image"]}, "av_retrieval")
    summary, rows, ranked, wall = _fit_and_search(manifest, out, budget, trials, base.parent / "test.csv", "audio", "image",
                                                  lambda f: np.ones(len(f), bool))
    digits = rows["digit"].to_numpy()
    top = ranked[ranked["rank"] == 1]
    per_digit = np.bincount(digits).max()
    return {"data": "av_digits", "direction": "speech -> image", **_recall(ranked),
            "top1_digit_match": float((digits[top["candidate_row"].to_numpy() - 1] == digits[top["query_row"].to_numpy() - 1]).mean()),
            "recall_at_10_bound": min(1.0, 10 / per_digit), "trials": summary["trials"], "wall_seconds": wall, "budget": budget}


def reviews(out: Path, rows: int, budget: float, trials: int) -> dict:
    import datasets

    made = datasets.clothing(out / "data", rows=rows)
    base = Path(made["manifests"]["Recommended_IND"])
    inputs = yaml.safe_load(base.read_text())["inputs"]
    manifest = _retrieval_manifest(base, {"title": inputs["title"], "review": inputs["review"]}, "reviews_retrieval")
    summary, _, ranked, wall = _fit_and_search(manifest, out, budget, trials, base.parent / "test.csv", "title", "review",
                                               lambda f: (f["Title"].astype(str).str.strip() != "") & (f["Review_Text"].astype(str).str.strip() != ""))
    return {"data": "reviews", "direction": "title -> review", **_recall(ranked), "top1_digit_match": None, "recall_at_10_bound": None,
            "trials": summary["trials"], "wall_seconds": wall, "budget": budget}


def table(rows: list[dict]) -> str:
    f = lambda x: "-" if x is None else f"{x:.3f}"  # noqa: E731
    lines = ["| data | direction | queries | recall@1 | recall@10 (bound) | top-1 shows the digit | trials | wall s (budget) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['data']} | {r['direction']} | {r['queries']} | {f(r['recall_at_1'])} | {f(r['recall_at_10'])} ({f(r['recall_at_10_bound'])}) | "
                     f"{f(r['top1_digit_match'])} | {r['trials']} | {r['wall_seconds']:.0f} ({r['budget']:.0f}) |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=float, default=300.0, help="seconds per fit")
    ap.add_argument("--trials", type=int, default=30)
    ap.add_argument("--reviews-rows", type=int, default=6000)
    ap.add_argument("--parts", nargs="+", default=["av", "reviews"])
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="mmauto_retrieval_"))
    rows = []
    if "av" in args.parts:
        (out / "av").mkdir(parents=True, exist_ok=True)
        rows.append(av(out / "av", args.budget, args.trials))
        log(f"av: {rows[-1]}")
    if "reviews" in args.parts:
        (out / "reviews").mkdir(parents=True, exist_ok=True)
        rows.append(reviews(out / "reviews", args.reviews_rows, args.budget, args.trials))
        log(f"reviews: {rows[-1]}")
    md = table(rows)
    (out / "retrieval.md").write_text(md + "\n")
    (out / "retrieval.json").write_text(json.dumps({"machine": machine(), "rows": rows}, indent=2, default=str))
    print(md)


if __name__ == "__main__":
    main()
