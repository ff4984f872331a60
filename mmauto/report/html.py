"""The run report, RUN_DIR/report/index.html: one self-contained page (inline CSS, plots as PNG
data URIs, no scripts or external assets) that `mmauto fit` writes last and `mmauto report`
rewrites. The PNGs are also kept beside it, for slides and docs. Every input file is optional:
a missing one turns its section into a one-line note, so a partial run still gets a page."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from mmauto.errors import RunError
from mmauto.heads.calibration import ECE_BINS, ece_floor

PLOTS = ("trials.png", "learning_curves.png", "confusion_matrix.png", "residuals.png", "calibration.png", "ablation.png")
DPI = 110

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1f2328;margin:0;background:#f6f8fa}
main{max-width:1120px;margin:0 auto;padding:24px 28px 48px;background:#fff;min-height:100vh;box-sizing:border-box}
h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:32px 0 10px;padding-bottom:4px;border-bottom:1px solid #d0d7de}
h3{font-size:15px;margin:18px 0 6px}.sub{color:#59636e;margin:0 0 14px}
.facts{display:grid;grid-template-columns:repeat(auto-fill,minmax(200px,1fr));gap:8px;margin:12px 0}
.fact{background:#f6f8fa;border:1px solid #d0d7de;border-radius:6px;padding:8px 10px}
.fact b{display:block;font-size:11px;text-transform:uppercase;letter-spacing:.04em;color:#59636e}
table{border-collapse:collapse;margin:6px 0 10px;font-size:13px}
th,td{border:1px solid #d0d7de;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f6f8fa}td.num{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}
tr.best td{background:#dafbe1}tr.failed td{color:#8c959f}
.scroll{overflow-x:auto}figure{margin:8px 0 14px}figure img{max-width:100%;height:auto;border:1px solid #eaeef2}
figcaption,.note{color:#59636e;font-size:13px}.note{font-style:italic}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(420px,1fr));gap:16px;align-items:start}
pre{background:#f6f8fa;border:1px solid #d0d7de;border-radius:6px;padding:10px 12px;overflow-x:auto;font-size:12.5px}
footer{margin-top:36px;color:#59636e;font-size:12px}
"""


def write_report(run_dir: Path) -> Path:
    """Write RUN_DIR/report/index.html and its PNGs from the files `mmauto fit` left in RUN_DIR
    (leaderboard, history, metrics, eval predictions, ablation, model card); returns the path."""
    run_dir = Path(run_dir)
    out = run_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    for name in PLOTS:  # a section skipped this time must not leave the last run's plot behind
        (out / name).unlink(missing_ok=True)
    board = _read_json(run_dir / "leaderboard.json")
    metrics = _read_json(run_dir / "metrics.json") or {}
    card = _read_json(run_dir / "mmauto.json") or {}
    history = _read_json(run_dir / "history.json")
    ablation = _read_json(run_dir / "ablation.json")
    preds = _read_predictions(run_dir / "eval_predictions.csv", card.get("prefix") or "")
    head = card.get("head") or _guess_head(metrics)
    split = "test" if metrics.get("test") else "validation"
    objective = card.get("objective") or (board[0].get("objective") if board else None) or "score"
    name = (card.get("manifest") or {}).get("name") or run_dir.resolve().name
    parts = [
        f"<h1>mmauto report: {_e(name)}</h1>",
        f'<p class="sub">{_e(run_dir.resolve())}</p>',
        _overview(card, board, head, objective),
        "<h2>Metrics</h2>", _metrics_table(metrics), _targets_table(metrics, card),
        "<h2>Search</h2>", _search(board, out, objective),
        "<h2>Training of the best trial</h2>", _curves(history, objective, out),
        "<h2>Errors</h2>", _errors(head, metrics, preds, split, out),
        "<h2>Calibration</h2>", _fitted_calibration(card), _calibration(head, preds, split, out),
        "<h2>Modality ablation</h2>", _ablation(ablation, out),
        "<h2>Serving</h2>", _serving(card, run_dir, name),
        _footer(card),
    ]
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>mmauto report: {_e(name)}</title>'
            f"<style>{CSS}</style></head><body><main>\n" + "\n".join(parts) + "\n</main></body></html>\n")
    path = out / "index.html"
    path.write_text(page, encoding="utf-8")
    return path


# === Inputs ===


def _read_json(path: Path):
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError as exc:
        raise RunError(f"{path}: not valid JSON ({exc}); rerun `mmauto fit` to rewrite it") from None


def _read_predictions(path: Path, prefix: str = ""):
    """The eval predictions; a multi-target model's primary target's columns (`<prefix>prediction`,
    `<prefix>prob_<class>`...) under the plain names the plots read."""
    if not path.exists():
        return None
    import pandas as pd

    # Labels stay strings as written, so "01" or "1" compare with the target column verbatim.
    frame = pd.read_csv(path, dtype={"prediction": str, f"{prefix}prediction": str, "target": str, "split": str}, keep_default_na=False)
    if prefix:
        frame = frame.rename(columns={c: c[len(prefix):] for c in frame.columns if c.startswith(prefix)})
    return frame


def _guess_head(metrics: dict) -> str:
    """The head from the metric names, for a run folder without its model card."""
    m = next(iter(metrics.values()), {}) if metrics else {}
    return "regression" if "rmse" in m else "multilabel" if "subset_accuracy" in m else "multiclass"


def _split_rows(preds, split: str):
    return preds[preds["split"] == split] if "split" in preds.columns else preds


# === HTML helpers ===


def _e(x) -> str:
    return html.escape(str(x))


def _note(text: str) -> str:
    return f'<p class="note">{_e(text)}</p>'


def _num(v) -> str:
    """Floats with 4 decimals, None as a dash, anything else as written."""
    return "—" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)


def _shape(shape) -> str:
    return "[" + ", ".join("N" if d is None else str(d) for d in shape or []) + "]"


def _numeric(c) -> bool:
    """Numbers, blanks and numbers already formatted as text ("4.9e-03") align right, unbroken."""
    if c is None or isinstance(c, (int, float)):
        return True
    try:
        float(c)
    except ValueError:
        return False
    return any(ch.isdigit() for ch in c)  # "NaN" and "inf" are words here, not numbers


def _table(headers, rows, row_classes=None) -> str:
    """A table; numbers are right-aligned and floats shown with 4 decimals."""
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = []
    for i, row in enumerate(rows):
        cls = f' class="{row_classes[i]}"' if row_classes and row_classes[i] else ""
        cells = "".join(f'<td class="num">{_e(_num(c))}</td>' if _numeric(c) else f"<td>{_e(c)}</td>" for c in row)
        body.append(f"<tr{cls}>{cells}</tr>")
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def _figure(width: float, height: float, **kw):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # A bare Figure on an Agg canvas, not pyplot: the caller's global backend (a notebook, a
    # GUI) is left alone and nothing needs a display.
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained", **kw)
    FigureCanvasAgg(fig)
    return fig


def _embed(fig, path: Path, caption: str) -> str:
    fig.savefig(path, format="png")
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{_e(caption)}">'
            f"<figcaption>{_e(caption)}</figcaption></figure>")


# === Sections ===


def _overview(card: dict, board, head: str, objective: str) -> str:
    ens = next((r for r in board or [] if r["trial"] == "ensemble"), None)
    board = None if board is None else [r for r in board if r["trial"] != "ensemble"]
    best = next((r for r in board or [] if r.get("rank") == 1), None)
    done = sum(r.get("status") == "completed" for r in board or [])
    failed = sum(r.get("status") == "failed" for r in board or [])
    parity = (card.get("parity") or {}).get("max_abs_diff")
    facts = [
        ("task", f"{card['task']} ({head})" if card.get("task") else head),
        ("best trial", f"{best['trial']}: {objective} {_num(best.get('score'))}" if best else "none finished"),
        ("fusion", card.get("fusion") or (best or {}).get("fusion") or "—"),
        ("encoders", ", ".join(f"{k}={v}" for k, v in (card.get("encoders") or (best or {}).get("encoders") or {}).items()) or "—"),
        ("trials", f"{done} completed, {failed} failed" if board is not None else "no leaderboard.json"),
        ("labels", ", ".join(map(str, card["labels"])) if card.get("labels") else "—"),
        ("export parity", f"max |diff| {parity:.2e}" if isinstance(parity, (int, float)) else "—"),
    ]
    if ens:  # the exported model is an ensemble: compare it with the best single trial
        facts.insert(2, ("exported ensemble", f"{objective} {_num(ens.get('score'))} on validation; {ens.get('message')}"))
        alone = (card.get("ensemble") or {}).get("best_trial") or {}
        single = alone.get("metrics") or {}
        if single:
            main = next((k for k in ("accuracy", "rmse", "macro_f1") if k in next(iter(single.values()))), None)
            facts.insert(3, (f"best trial alone ({alone.get('trial')})", ", ".join(f"{s} {main} {_num(m.get(main))}" for s, m in single.items())))
    cells = "".join(f'<div class="fact"><b>{_e(k)}</b>{_e(v)}</div>' for k, v in facts)
    return f'<div class="facts">{cells}</div>' + ("" if card else _note("No mmauto.json (model card): some facts are missing."))


def _metrics_table(metrics: dict) -> str:
    if not metrics:
        return _note("No metrics.json: the fit did not get to evaluation.")
    splits = [s for s in ("validation", "test") if metrics.get(s)] + [s for s in metrics if s not in ("validation", "test")]
    names = [k for s in splits for k, v in metrics[s].items() if not isinstance(v, dict)]
    names = list(dict.fromkeys(n for n in names if n != "rows")) + ["rows"]
    return _table(["metric", *splits], [[n, *(metrics[s].get(n) for s in splits)] for n in names])


def _targets_table(metrics: dict, card: dict) -> str:
    """A multi-target model: each served target's main metrics per split."""
    targets = card.get("targets") or {}
    if not targets:
        return ""
    splits = [s for s in ("validation", "test") if (metrics.get(s) or {}).get("targets")]
    rows = []
    for col, t in targets.items():
        if t.get("auxiliary"):
            rows.append([col, t.get("task"), "auxiliary (trained, not served)", *["—"] * len(splits)])
            continue
        for name in ("accuracy", "macro_f1", "roc_auc", "subset_accuracy", "rmse", "mae", "r2"):
            got = [((metrics[s]["targets"].get(col) or {}).get(name)) for s in splits]
            if any(g is not None for g in got):
                rows.append([col, t.get("task"), name, *got])
    return "<h3>Per target</h3>" + _table(["target", "task", "metric", *splits], rows)


def _search(board, out: Path, objective: str) -> str:
    if not board:
        return _note("No leaderboard.json: no trials to show.")
    from matplotlib.transforms import blended_transform_factory

    from mmauto.heads import objective_direction

    trials = [r for r in board if r["trial"] != "ensemble"]  # the plot shows trials; the table the ensemble too
    order = sorted(trials, key=lambda r: (0, int(r["trial"])) if str(r["trial"]).isdigit() else (1, str(r["trial"])))
    x = {str(r["trial"]): i for i, r in enumerate(order)}
    done = [r for r in order if r.get("score") is not None]
    failed = [r for r in order if r.get("score") is None]
    fig = _figure(8, 3.6)
    ax = fig.add_subplot()
    fusions = list(dict.fromkeys(str(r.get("fusion")) for r in done))
    for i, f in enumerate(fusions):
        pts = [r for r in done if str(r.get("fusion")) == f]
        ax.scatter([x[str(r["trial"])] for r in pts], [r["score"] for r in pts], s=52, color=f"C{i % 10}",
                   edgecolor="white", zorder=3, label=f"fusion={f}")
    if len(done) > 1:
        pick = max if objective_direction(objective) == "max" else min
        running = [pick(r["score"] for r in done[: i + 1]) for i in range(len(done))]
        ax.plot([x[str(r["trial"])] for r in done], running, drawstyle="steps-post", color="0.55", lw=1, zorder=2, label="best so far")
    if failed:
        # Failed trials have no score: pin them to the bottom edge, whatever the y range.
        ax.plot([x[str(r["trial"])] for r in failed], [0.04] * len(failed), "x", color="C3", ms=8, mew=2, clip_on=False,
                transform=blended_transform_factory(ax.transData, ax.transAxes), label=f"failed ({len(failed)})")
    if not done:
        ax.set_yticks([])
        ax.text(0.5, 0.5, "no trial finished", transform=ax.transAxes, ha="center", color="0.4")
    step = max(1, len(order) // 25)
    ax.set_xticks(range(0, len(order), step), [str(r["trial"]) for r in order][::step])
    ax.set_xlim(-0.6, len(order) - 0.4)
    ax.set(xlabel="trial", ylabel=objective, title=f"{objective} per trial")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the axes: never over a point
    plot = _embed(fig, out / "trials.png", f"Objective ({objective}) of each trial, coloured by fusion; failed trials are x marks at the bottom.")
    from mmauto.search.leaderboard import DISPLAY_HEADERS, display_rows

    classes = ["best" if r.get("rank") == 1 else "failed" if r.get("status") == "failed" else "" for r in board]
    table = _table(DISPLAY_HEADERS, display_rows(board), classes)
    return plot + "<h3>Leaderboard</h3>" + table


def _curves(history, objective: str, out: Path) -> str:
    hist = (history or {}).get("history") or {}
    if not hist:
        why = "No history.json." if history is None else "history.json holds no epochs (a resumed run keeps no history of its best trial)."
        return _note(why + " Learning curves skipped.")
    base = objective[4:] if objective.startswith("val_") else objective
    metric = base if base != "loss" and (base in hist or f"val_{base}" in hist) else next(
        (k for k in hist if not k.startswith("val_") and not k.endswith("loss")), None)
    panels = [p for p in ("loss", metric) if p and (p in hist or f"val_{p}" in hist)]
    fig = _figure(4.2 * len(panels) + 0.6, 3.4)
    best_epoch = None
    if hist.get(objective):
        from mmauto.heads import objective_direction

        vals = hist[objective]
        best_epoch = 1 + (vals.index(max(vals)) if objective_direction(objective) == "max" else vals.index(min(vals)))
    for i, p in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        for key, label in ((p, "train"), (f"val_{p}", "validation")):
            if hist.get(key):
                ax.plot(range(1, len(hist[key]) + 1), hist[key], marker="o", ms=3, label=label)
        if best_epoch:
            ax.axvline(best_epoch, color="0.6", ls=":", lw=1, label=f"best epoch ({best_epoch})")
        ax.set(xlabel="epoch", ylabel=p, title=p)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _embed(fig, out / "learning_curves.png", f"Trial {history.get('trial', '?')}: {' and '.join(panels)} per epoch, on training and validation rows.")


def _errors(head: str, metrics: dict, preds, split: str, out: Path) -> str:
    m = metrics.get(split) or {}
    if head == "regression":
        if preds is None:
            return _note("No eval_predictions.csv: residuals skipped.")
        import pandas as pd

        rows = _split_rows(preds, split)
        y, p = pd.to_numeric(rows["target"], errors="coerce"), pd.to_numeric(rows["prediction"], errors="coerce")
        ok = y.notna() & p.notna()
        fig = _figure(6.5, 3.8)
        ax = fig.add_subplot()
        ax.scatter(y[ok], (p - y)[ok], s=16, alpha=0.7, color="C0")
        ax.axhline(0, color="0.4", lw=1)
        ax.set(xlabel="target", ylabel="prediction − target", title=f"residuals ({split}, {int(ok.sum())} rows)")
        ax.grid(alpha=0.3)
        return _embed(fig, out / "residuals.png", f"Residuals on the {split} split: above zero the model over-predicts.")
    cm = m.get("confusion_matrix")
    if not cm:
        return _note(f"No confusion matrix for a {head} head; see the metrics above." if m else f"No {split} metrics in metrics.json.")
    labels, mat = [str(x) for x in cm["labels"]], cm["matrix"]
    n = len(labels)
    side = min(max(3.6, 0.42 * n + 2.4), 12)
    fig = _figure(side + 1.0, side)
    ax = fig.add_subplot()
    im = ax.imshow(mat, cmap="Blues")
    top = max((v for row in mat for v in row), default=0)
    if n <= 25:
        for i, row in enumerate(mat):
            for j, v in enumerate(row):
                ax.text(j, i, str(v), ha="center", va="center", fontsize=9, color="white" if v > top / 2 else "#1f2328")
    long = n > 6 or max(map(len, labels), default=0) > 6
    ax.set_xticks(range(n), labels, rotation=45 if long else 0, ha="right" if long else "center")
    ax.set_yticks(range(n), labels)
    ax.set(xlabel="predicted", ylabel="true", title=f"confusion matrix ({split})")
    fig.colorbar(im, ax=ax, shrink=0.8)
    plot = _embed(fig, out / "confusion_matrix.png", f"Counts on the {split} split; rows are the true class.")
    per = m.get("per_class") or {}
    if not per:
        return plot
    table = _table(["class", "precision", "recall", "f1", "support"],
                   [[c, v.get("precision"), v.get("recall"), v.get("f1"), v.get("support")] for c, v in per.items()])
    return f'<div class="grid"><div>{plot}</div><div><h3>Per class ({_e(split)})</h3>{table}</div></div>'


def _fitted_calibration(card: dict) -> str:
    """One line on what stage `calibrate` fitted on validation (from the model card)."""
    said = []
    c = card.get("calibration")
    if c and c.get("method"):
        said.append(_scaling_line(c))
    how = f"chosen on validation for {card['threshold_chosen_for']}" if card.get("threshold_chosen_for") else "pinned by train.threshold"
    if card.get("thresholds"):
        said.append("Label thresholds (" + how + "): " + ", ".join(f"{k} {_num(v)}" for k, v in card["thresholds"].items()) + ".")
    elif card.get("head") == "binary" and card.get("threshold") is not None:
        said.append(f"Decision threshold on P({(card.get('labels') or ['', '?'])[-1]}): {_num(card['threshold'])} ({how}).")
    i = card.get("interval")
    if i:
        said.append(f"Served interval value_lower/value_upper: value -+ {_num(i.get('half_width'))}, a {i['coverage']:.0%} "
                    f"split-conformal interval from {i.get('rows')} validation rows (see interval_coverage in the metrics).")
    return f"<p>{_e(' '.join(said))}</p>" if said else ""


def _scaling_line(c: dict) -> str:
    """What the scaling (temperature, vector, beta) did on validation (the card's `calibration`)."""
    ece = f"validation ECE ({c.get('ece_bins', 15)} bins) {_num(c.get('ece_before'))} -> {_num(c.get('ece_after'))}"
    loss = f"log loss {_num(c.get('log_loss_before'))} -> {_num(c.get('log_loss_after'))}"
    cv = c.get("cross_validated_log_loss")
    lr, k = c.get("likelihood_ratio") or {}, (c.get("parameters") or {}).get(c["method"])
    chosen = "" if c.get("shrinkage") is None else (
        f" (chosen by its likelihood ratio on the validation rows, {_num(lr.get(c['method']))} for "
        f"{k} parameter{'' if k == 1 else 's'}, and served at {_num(c['shrinkage'])} of its fitted "
        f"change of the logits" + ("; held-out log loss of a cross-validation: "
                                   + ", ".join(f"{k} {_num(v)}" for k, v in cv.items()) if cv else "") + ")")
    what = {"vector": "Vector scaling", "matrix": "Matrix scaling", "beta": "Beta calibration"}.get(c["method"], "Temperature scaling")
    if not c.get("applied"):
        return (f"{what} not kept: {c.get('not_kept') or 'it did not lower the validation log loss'} "
                f"(fitted T = {_num(c.get('fitted_temperature'))}; {ece}).")
    if c["method"] == "vector":
        return f"Vector scaling (a scale and a bias per class logit){chosen}: {ece}, {loss}."
    if c["method"] == "matrix":
        return f"Matrix scaling (each class logit a weighted sum of every class's log-probability, plus a bias){chosen}: {ece}, {loss}."
    if c["method"] == "beta":
        a, b, bias = c["beta"]
        return (f"Beta calibration (logit = {_num(a)} ln p - {_num(b)} ln(1 - p) + {_num(bias)}){chosen}: {ece}, {loss}.")
    return f"Temperature scaling{chosen}: T = {_num(c['temperature'])}, {ece}, {loss}."


def _calibration(head: str, preds, split: str, out: Path) -> str:
    if head not in ("multiclass", "binary"):
        return _note(f"Not drawn for a {head} head.")
    if preds is None:
        return _note("No eval_predictions.csv: calibration skipped.")
    import numpy as np
    import pandas as pd

    rows = _split_rows(preds, split)
    cols = [c for c in rows.columns if c.startswith("prob_")]
    if not cols or rows.empty:
        return _note("eval_predictions.csv has no probabilities for this split: calibration skipped.")
    conf = rows[cols].apply(pd.to_numeric, errors="coerce").to_numpy().max(axis=1)
    correct = (rows["prediction"] == rows["target"]).to_numpy()
    bins = ECE_BINS
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(conf, edges) - 1, 0, bins - 1)
    counts = np.bincount(which, minlength=bins)
    used = counts > 0
    mean_conf = np.array([conf[which == b].mean() if used[b] else np.nan for b in range(bins)])
    acc = np.array([correct[which == b].mean() if used[b] else np.nan for b in range(bins)])
    ece = float(np.nansum(counts / counts.sum() * np.abs(acc - mean_conf)))
    fig = _figure(5.6, 4.6)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    top.plot([0, 1], [0, 1], ls="--", color="0.6", lw=1, label="perfectly calibrated")
    top.plot(mean_conf[used], acc[used], marker="o", color="C0", label="model")
    top.set(ylabel="accuracy", xlim=(0, 1), ylim=(0, 1.02), title=f"reliability ({split}, ECE {ece:.4f})")
    top.grid(alpha=0.3)
    top.legend(fontsize=8, loc="upper left")
    bottom.bar(edges[:-1], counts, width=1.0 / bins, align="edge", color="C0", alpha=0.5, edgecolor="white")
    bottom.set(xlabel="top-class probability", ylabel="rows")
    return _embed(fig, out / "calibration.png",
                  f"Accuracy against the top-class probability in {bins} bins on the {split} split ({len(rows)} rows); "
                  f"points under the diagonal are over-confident. On this many rows even a perfectly calibrated model "
                  f"would read an ECE of about {ece_floor(conf, bins):.4f} (the ECE's floor): an ECE near it cannot be "
                  f"told from calibrated.")


def _ablation(ablation, out: Path) -> str:
    if not ablation:
        return _note("No ablation.json (a run with one input has nothing to remove).")
    if ablation.get("skipped"):
        return _note(f"Modality ablation {ablation['skipped']}.")
    rows = sorted((r for r in ablation.get("rows", []) if r.get("drop") is not None), key=lambda r: r["drop"])
    if not rows:
        return _note("ablation.json has no scored rows.")
    metric = ablation.get("metric", "metric")
    fig = _figure(7, 0.36 * len(rows) + 1.4)
    ax = fig.add_subplot()
    drops = [r["drop"] for r in rows]
    bars = ax.barh([" + ".join(r["removed"]) for r in rows], drops, color=["C0" if d > 0 else "0.65" for d in drops])
    ax.bar_label(bars, fmt="%+.4f", fontsize=8, padding=3)
    ax.axvline(0, color="0.3", lw=1)
    lo, hi = min(0.0, *drops), max(0.0, *drops)
    pad = 0.25 * ((hi - lo) or 0.01)  # room on both sides for the value labels, zero bars included
    ax.set_xlim(lo - pad, hi + pad)
    worse = "rise" if metric == "rmse" else "drop"
    ax.set(xlabel=f"{worse} in {metric} without the input(s)", title=f"ablation ({ablation.get('split', '?')}, all inputs: {_num(ablation.get('full'))})")
    ax.grid(axis="x", alpha=0.3)
    return _embed(fig, out / "ablation.png", f"How much worse {metric} gets when the inputs are sent as missing; longer bars matter more.")


def _serving(card: dict, run_dir: Path, name: str) -> str:
    sig = (card.get("signatures") or {}).get("serving_default") or {}
    inputs = sig.get("inputs") or []
    if not inputs:
        return _note("No mmauto.json (model card): serving inputs unknown.")
    table = _table(["name", "input", "modality", "dtype", "shape", "missing value"],
                   [[i["name"], i.get("input", ""), i.get("modality", ""), i.get("dtype", ""), _shape(i.get("shape")), i.get("missing", "")] for i in inputs])
    instance = {}
    for i in inputs:
        ex = i.get("example")
        if i.get("modality") in ("image", "audio"):
            ex = ex if isinstance(ex, dict) and "b64" in ex else {"b64": f"<base64 of the {i['modality']} file>"}
        elif ex is None:
            ex = 0.0 if i.get("dtype") == "float32" else ""
        instance[i["name"]] = ex
    body = json.dumps({"instances": [instance]}, indent=2)
    model_dir = run_dir.resolve() / card.get("model", "model")
    lines = ["import tensorflow as tf"] + [f"import {lib.replace('-', '_')}  # registers ops the model uses" for lib in card.get("op_libraries") or []]
    lines += ["", f"model = tf.saved_model.load({json.dumps(str(model_dir))})",
              'serve = model.signatures["serving_default"]', "out = serve("]
    for i in inputs:
        ex, dtype, note = instance[i["name"]], i.get("dtype", "string"), ""
        if i.get("modality") in ("image", "audio"):
            value = f'tf.constant([open("{i["name"]}.{"jpg" if i["modality"] == "image" else "wav"}", "rb").read()])'
        elif isinstance(ex, str) and dtype != "string":
            # A described, not literal, example (e.g. video frames): a zero tensor of the shape.
            dims = [1] + [1 if d is None else d for d in (i.get("shape") or [None])[1:]]
            value, note = f"tf.zeros({dims}, tf.{dtype})", f"  # {ex}"
        else:
            value = f"tf.constant([{json.dumps(ex)}], tf.{dtype})"
        lines.append(f"    {i['name']}={value},{note}")
    lines += [")", "print({k: v.numpy() for k, v in out.items()})"]
    outputs = ", ".join(f"{k} ({v.get('dtype')} {_shape(v.get('shape'))})" for k, v in (sig.get("outputs") or {}).items())
    return (table + (f"<p>Outputs: {_e(outputs)}.</p>" if outputs else "")
            # TF Serving only loads numbered version folders, which the run folder does not have.
            + f"<h3>TF Serving REST request</h3><pre># BASE/1 is a copy of {_e(model_dir)}\n"
              f"tensorflow_model_server --rest_api_port=8501 --model_name={_e(name)} --model_base_path=BASE\n\n"
              f"POST /v1/models/{_e(name)}:predict\n\n{_e(body)}</pre>"
            + "<h3>Python</h3><pre>" + _e("\n".join(lines)) + "</pre>")


def _footer(card: dict) -> str:
    versions = ", ".join(f"{k} {v}" for k, v in (card.get("versions") or {}).items() if v)
    return f"<footer>Written by mmauto{_e(' — ' + versions) if versions else ''}.</footer>"
