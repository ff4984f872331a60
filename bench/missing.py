"""Answers with an input missing, against a model of the remaining input trained alone, and
calibration (issue 16). Not a test: pytest never collects it.

    python bench/missing.py [--budget 240] [--test-pairings 1] [--out DIR]

On the degraded AV-digits (`datasets.av_digits_degraded`: MNIST digit + FSDD spoken digit,
label = the digit, both inputs degraded), three fits under the same time budget: image+audio,
image only, audio only. The image+audio model is scored on the test split with each input
missing (its ablation: the input blanked as a client would send it, through the SavedModel) and
compared with the unimodal model of the input that is left. Each fit's test expected
calibration error (ECE, 15 bins on the top-class probability) is reported with the
temperature scaling the calibrate stage fitted (the ECE before and after on validation).
`--test-pairings 5` pairs each spoken test digit with five images, as bench/quality.py does:
1,500 test rows, on which an ECE can be read to about 0.008 (300 rows: not below 0.02).

Prints a markdown table and writes it, with the JSON, to --out (a temporary folder unless given).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import log, machine


def _fit(manifest: Path, out: Path, budget: float) -> dict:
    from mmauto import api

    t0 = time.perf_counter()
    summary = api.fit(manifest, out, time_budget=budget, max_trials=1000, overwrite=True)
    card = json.loads((out / "mmauto.json").read_text())
    ablation = json.loads((out / "ablation.json").read_text()) if (out / "ablation.json").exists() else None
    return {"test": summary["metrics"].get("test") or {}, "calibration": card.get("calibration"), "ablation": ablation,
            "trials": summary["trials"], "wall_seconds": round(time.perf_counter() - t0, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=float, default=240.0, help="seconds per fit")
    ap.add_argument("--test-pairings", type=int, default=1, help="images per spoken test digit (5: 1,500 test rows)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    import datasets

    out = args.out or Path(tempfile.mkdtemp(prefix="mmauto_missing_"))
    made = datasets.av_digits_degraded(out / "data", test_pairings=args.test_pairings)
    fits = {}
    for name, manifest in made["manifests"].items():
        log(f"{name}: fit, budget {args.budget:.0f}s")
        fits[name] = _fit(Path(manifest), out / f"run_{name.replace(' ', '_').replace('+', '_')}", args.budget)
        log(f"{name}: test accuracy {fits[name]['test'].get('accuracy')}, ece {fits[name]['test'].get('ece')}")
    both = fits["image+audio"]
    rows = []
    abl = both["ablation"] or {}
    for r in abl.get("rows", []):
        (removed,) = r["removed"]
        left = "audio" if removed == "image" else "image"
        alone = fits[f"{left} only"]["test"].get("accuracy")
        rows.append({"served": f"{left} (with {removed} missing)", "image+audio model": r["score"], f"{left}-only model": alone,
                     "gap": None if r["score"] is None or alone is None else round(alone - r["score"], 4)})
    lines = ["| served | image+audio model, test accuracy | unimodal model of what is left | gap (unimodal - multimodal) |",
             "|---|---|---|---|"]
    f = lambda x: "-" if x is None else f"{x:.4f}"  # noqa: E731
    lines.append(f"| both inputs | {f(both['test'].get('accuracy'))} | - | - |")
    for r in rows:
        lines.append(f"| {r['served']} | {f(r['image+audio model'])} | {f(next(v for k, v in r.items() if k.endswith('-only model')))} | {f(r['gap'])} |")
    lines += ["", "| fit | test accuracy | test ECE (its floor) | validation ECE before -> after | calibration served | trials |",
              "|---|---|---|---|---|---|"]
    for name, got in fits.items():
        c = got["calibration"] or {}
        lines.append(f"| {name} | {f(got['test'].get('accuracy'))} | {f(got['test'].get('ece'))} ({f(got['test'].get('ece_floor'))}) | "
                     f"{f(c.get('ece_before'))} -> {f(c.get('ece_after'))} | {c.get('method') if c.get('applied') else 'none'} | "
                     f"{got['trials']} |")
    md = "\n".join(lines)
    (out / "missing.md").write_text(md + "\n")
    (out / "missing.json").write_text(json.dumps({"machine": machine(), "budget": args.budget, "test_pairings": args.test_pairings, "fits": fits, "rows": rows}, indent=2, default=str))
    print(md)


if __name__ == "__main__":
    main()
