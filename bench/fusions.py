"""Fusions compared on the same-digit task (issue 14). Not a test: pytest never collects it.

    python bench/fusions.py [--budget 180] [--trials 20] [--fusions search concat pairwise ...] [--test-pairings 1] [--out DIR]

(`search`: no fusion pinned, the default search space, as a user would run it.)

An MNIST image and an FSDD recording per row; the label says only whether they show the same
digit (`datasets.same_digit`; chance 0.5). The manifest is fitted once per fusion, with the
search's fusion pinned (`search.space.fusion`) and everything else searched, each under the same
time budget through `mmauto.api.fit`. Prints a markdown table of test accuracy, ROC-AUC and
expected calibration error (with its floor) per fusion and writes it, with the JSON, to --out (a
temporary folder unless given). `--test-pairings 5` pairs each of the 300 test recordings five
times: 1,500 test rows, on which an ECE can be read to about 0.015 (300 rows: about 0.03).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import log, machine

FUSIONS = ("concat", "pairwise", "low_rank", "tensor", "perceiver")


def pinned(manifest: Path, fusion: str, space: dict | None = None) -> Path:
    data = yaml.safe_load(manifest.read_text())
    # "search": the fusion left unset, as a user would: the search picks it.
    data.setdefault("search", {}).setdefault("space", {}).update({**(space or {}), **({} if fusion == "search" else {"fusion": fusion})})
    path = manifest.with_name(f"manifest_{fusion}.yaml")
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def fit_fusion(manifest: Path, fusion: str, out: Path, budget: float, trials: int, epochs=None, space=None) -> dict:
    from mmauto import api

    def on_event(event):  # mmauto.events.Event objects
        if event.kind == "trial_end":
            t = event.trial
            score = f"{t.score:.4f}" if t.score is not None else "-"
            fused = t.hyperparameters.values.get("fusion", fusion)
            log(f"  {fusion}: trial {t.trial_id} ({fused}) {str(t.status).lower()} score={score} in {event.seconds or 0:.0f}s")

    log(f"{fusion}: fit, budget {budget:.0f}s, up to {trials} trials")
    t0 = time.perf_counter()
    summary = api.fit(pinned(manifest, fusion, space), out, max_trials=trials, time_budget=budget, epochs=epochs, overwrite=True,
                      on_event=on_event)
    board = json.loads((out / "leaderboard.json").read_text())
    best = next((r for r in board if r.get("rank") == 1), {})  # the leaderboard is sorted best first
    test = summary["metrics"].get("test") or {}
    return {
        "fusion": fusion,
        **{k: test.get(k) for k in ("accuracy", "roc_auc", "ece", "ece_floor")},
        "validation_accuracy": (summary["metrics"].get("validation") or {}).get("accuracy"),
        "trials": summary["trials"],
        "failed_trials": summary["failed_trials"],
        "wall_seconds": round(time.perf_counter() - t0, 1),
        "budget": budget,
        "best_hp": {k: v for k, v in (best.get("hyperparameters") or {}).items() if not k.startswith("tuner/")},
    }


def _f(x) -> str:
    return "-" if x is None else f"{x:.3f}"


def table(rows: list[dict]) -> str:
    lines = ["| fusion | test accuracy | test ROC-AUC | test ECE (floor) | validation accuracy | trials (failed) | wall s (budget) |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        f = _f
        ece = f"{r['ece']:.4f} ({r['ece_floor']:.4f})" if r.get("ece") is not None else "-"
        lines.append(f"| {r['fusion']} | {f(r['accuracy'])} | {f(r['roc_auc'])} | {ece} | {f(r['validation_accuracy'])} | "
                     f"{r['trials']} ({r['failed_trials']}) | {r['wall_seconds']:.0f} ({r['budget']:.0f}) |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=float, default=180.0, help="seconds per fusion")
    ap.add_argument("--trials", type=int, default=20, help="most trials per fusion")
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--fusions", nargs="+", default=list(FUSIONS))
    ap.add_argument("--train-rows", type=int, default=None, help="subsample the 2,700 training recordings")
    ap.add_argument("--space", action="append", default=[], metavar="KEY=YAML",
                    help="also set search.space.KEY (e.g. learning_rate='{min: 1e-4, max: 1e-3}'); repeatable")
    ap.add_argument("--test-pairings", type=int, default=1, help="pairings per test recording (5: 1,500 test rows)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    import datasets

    out = args.out or Path(tempfile.mkdtemp(prefix="mmauto_fusions_"))
    made = datasets.same_digit(out / "data", seed=args.seed, train_rows=args.train_rows, test_pairings=args.test_pairings)
    log(f"same-digit: {made['train_rows']} train / {made['test_rows']} test rows in {out / 'data'}")
    space = {k: yaml.safe_load(v) for k, v in (kv.split("=", 1) for kv in args.space)}
    rows = []
    for fusion in args.fusions:
        try:
            rows.append(fit_fusion(made["manifest"], fusion, out / f"run_{fusion}", args.budget, args.trials, args.epochs, space))
        except Exception as exc:  # noqa: BLE001 -- one failing fusion must not lose the others' figures
            log(f"{fusion} failed: {exc}")
            rows.append({"fusion": fusion, "accuracy": None, "roc_auc": None, "validation_accuracy": None, "trials": 0,
                         "failed_trials": 0, "wall_seconds": 0.0, "budget": args.budget, "error": str(exc)})
        log(f"{fusion}: test accuracy {rows[-1]['accuracy']}")
        (out / "fusions.json").write_text(json.dumps({"machine": machine(), "data": made | {"manifest": str(made["manifest"])},
                                                      "space": space, "rows": rows}, indent=2, default=str))
    md = table(rows)
    (out / "fusions.md").write_text(md + "\n")
    print(md)
    for r in rows:
        print(f"{r['fusion']}: best {r.get('best_hp')}")


if __name__ == "__main__":
    main()
