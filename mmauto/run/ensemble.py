"""Stage `ensemble`: greedy ensemble selection (Caruana et al., 2004) over the trials'
validation predictions, each candidate's probabilities first rescaled by its own temperature
(heads/scaling.py `member_temperature`); when it beats the best single trial on validation, the
members are rebuilt and joined into one Keras model that averages their (rescaled) outputs, which
the export stage serves behind the same raw-input signatures as a single model. The linear model
fitted before the search (stage `linear`), when there is one, is a candidate beside the trials,
and so is each trial's product of its inputs' own heads (model/experts.py), where the model has
them."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from mmauto import events
from mmauto.heads import calibration
from mmauto.model import experts
from mmauto.run.context import Prepared, Run, Searched, Selected
from mmauto.run.linear import LINEAR_ID, LinearMember

# Passes over the validation and test splits that the stages after this one make with the
# exported model (calibration, evaluation, parity and the report's predictions), in units of
# the one timed here: the ensemble is skipped when they would not end before the deadline.
LATER_PASSES = 2.0
# Each member is rebuilt (as the select stage rebuilt the best trial) and traced once more by
# the export, about as long again: in units of the select stage's measured time.
BUILDS_PER_MEMBER = 2.0
# Members the search keeps time for at its end (`search.end_cost`): the ensembles chosen on the
# quality bench had 3 or 4. Without it the search used the whole budget and the reviews' 4-member
# ensemble (validation ROC-AUC 0.9585 against the best trial's 0.9524) was skipped for time.
RESERVED_MEMBERS = 4


def member_seconds(build: float, splits_pass: float) -> float:
    """What one more member costs the stages after the search: its rebuild (and the export's
    trace) and the later passes over validation and test, from one model's build seconds and
    one pass over those splits."""
    return LATER_PASSES * splits_pass + BUILDS_PER_MEMBER * build


def ensemble(run: Run, data: Prepared, searched: Searched, selected: Selected, linear: LinearMember | None = None) -> Selected:
    from mmauto.config.manifest import ENSEMBLE_STEPS
    from mmauto.search import ensemble as selection

    setting = run.manifest.train.ensemble
    if setting is False:
        return selected
    if run.manifest.retrieval:
        # Averaging members' normalised embeddings mixes spaces that were never aligned with
        # each other; nothing here scores a retrieval ensemble either.
        if len(_candidates(searched)) > 1:
            run.emit(events.Notice(text="ensemble selection skipped: a retrieval model's embeddings are not averaged "
                                        "across trials; exporting the best trial"))
        return selected
    size = ENSEMBLE_STEPS if setting is True else int(setting)
    candidates = _candidates(searched)
    if not candidates:
        return selected
    preds, targets = selection.load(Path(searched.tuner.project_dir), candidates)
    heads = experts.input_heads(data.prep.head)
    prior = _prior(run, data, heads) if heads is not None else None
    preds.update(_products(searched, heads, data.prep.head.units, preds, prior))
    if linear is not None and preds and linear.val_predictions.shape == next(iter(preds.values())).shape:
        preds[LINEAR_ID] = linear.val_predictions
    if len(preds) < 2:
        return selected
    scalings = _member_scalings(run, data.prep.head, preds, targets)
    preds = {k: calibration.scaled_blocks(p, scalings[k]) if k in scalings else p for k, p in preds.items()}
    info = choose(data.prep.head, preds, targets, size)
    members = info["members"]
    # One member: the best trial, exported as selected, unless it is a trial's product of
    # experts; the linear model alone has no fused vector to serve.
    if len(members) < 2 and not experts.is_product(members[0]):
        return selected
    # The exported model will be the ensemble: score the best trial (the search's, by its
    # objective) now, on the same splits, so the report and the bench can compare the two. Its
    # own key: `best_single` (lowest validation loss) may be another trial or the linear model.
    # That pass also times one model's predictions: the ensemble costs about that per member.
    t0 = time.time()
    best_trial = {"trial": selected.trial_id, "metrics": _scores(data, selected)}
    per_member = member_seconds(run.stage_seconds.get("select", 0.0), time.time() - t0)
    # What costs is each model the members read: a trial and its product share one.
    models = len({experts.trial_of(m) for m in members})
    affordable = models if run.deadline is None else int(max(run.deadline - time.time(), 0.0) // max(per_member, 1e-9))
    if affordable < models:
        # The search kept time for RESERVED_MEMBERS; a larger ensemble is chosen again among
        # its heaviest members that fit, rather than dropped (on the reviews, 6 members chosen,
        # validation log loss 0.192 against the best trial's 0.202, were all skipped).
        cost = models * per_member
        keep = heaviest(info, affordable)
        if len(keep) < 2 and not (keep and experts.is_product(keep[0])):
            run.emit(events.Notice(text=f"ensemble of trials {', '.join(members)} skipped to keep the time budget "
                                        f"(about {cost:.0f}s more); exporting the best trial alone"))
            return selected
        run.emit(events.Notice(text=f"ensemble cut from {models} to {affordable} models (members {', '.join(keep)}) "
                                    f"to keep the time budget (all {models}: about {cost:.0f}s more)"))
        info = {**choose(data.prep.head, {k: preds[k] for k in keep}, targets, size), "best_single": info["best_single"]}
        members = info["members"]
        if len(members) < 2 and not experts.is_product(members[0]):
            return selected
    if any(experts.is_product(m) for m in members):
        info["prior"] = prior  # what the products divide out, in the card
    info["member_scaling"] = {m: scalings[m] for m in members if m in scalings}
    info["best_trial"] = best_trial
    run.emit(events.EnsembleChosen(members=members, weights=info["weights"], metric=info["metric"],
                                   validation=info["validation"], best_single=info["best_single"]["validation"]))
    return _build(searched, selected, data.prep.head, info, linear)


def choose(head, preds: dict, targets, size: int) -> dict:
    """Greedy selection on the trials' validation predictions: members, the primary target's
    weights over them, its validation loss and best single trial; with several served
    targets, `targets`: each one's weights, chosen on its own validation loss (the search
    ranked the trials by the primary target alone), over the union of the members."""
    from mmauto.search import ensemble as selection

    views = head.target_views(preds, targets)  # primary first
    per_target = {t: selection.select(p, y, selection.scorer(kind), size=size) for t, (kind, p, y) in views.items()}
    # The best single model is a trial's own (or the linear model): a product is a way of
    # combining a trial's answers, and the report compares the ensemble with what one model serves.
    singles = {t: selection.select({k: v for k, v in p.items() if not experts.is_product(k)}, y, selection.scorer(kind), size=1)
               for t, (kind, p, y) in views.items()}
    chosen, single = next(iter(per_target.values())), next(iter(singles.values()))
    members = list(dict.fromkeys(m for c in per_target.values() for m in c.members))
    info = {"members": members, "weights": _weights_over(chosen, members), "metric": chosen.metric,
            "validation": chosen.score, "best_single": {"trial": single.best_single, "validation": single.best_single_score}}
    if len(per_target) > 1:
        info["targets"] = {t: {"weights": _weights_over(c, members), "metric": c.metric, "validation": c.score,
                               "best_single": {"trial": singles[t].best_single, "validation": singles[t].best_single_score}}
                           for t, c in per_target.items()}
    return info


def heaviest(info: dict, k: int) -> list[str]:
    """The members with the largest weight for any served target (ties: the earlier) that read
    at most `k` models (a trial and its product share one), in their order."""
    rows = [t["weights"] for t in info["targets"].values()] if info.get("targets") else [info["weights"]]
    models, top = set(), []
    for i in sorted(range(len(info["members"])), key=lambda i: -max(r[i] for r in rows)):
        model = experts.trial_of(info["members"][i])
        if model in models or len(models) < k:
            models.add(model)
            top.append(i)
    return [info["members"][i] for i in sorted(top)]


def _weights_over(chosen, members: list[str]) -> list[float]:
    """A selection's weights over `members` (0 for a member it did not pick)."""
    got = dict(zip(chosen.members, chosen.weights))
    return [round(got.get(m, 0.0), 6) for m in members]


def _column_weights(head, info: dict):
    """Per member, one weight per output column from each column's target's weights; None
    for one served target (the members' weights apply to every column)."""
    targets = info.get("targets")
    if not targets:
        return None
    columns = head.column_targets()
    return [[targets[t]["weights"][i] for t in columns] for i in range(len(info["members"]))]


def _scores(data: Prepared, selected: Selected) -> dict:
    """The selected (single) model's metrics on validation and test, from its in-process outputs."""
    prep, out = data.prep, {}
    head = prep.head
    for name in ("validation", "test"):
        if name in data.splits.splits and data.splits[name].rows:
            sp = data.splits[name]
            decoded = prep.decoded_dataset(sp.frame, sp.root, with_targets=False)
            y = selected.model.predict(prep.batches(decoded, 256, selected.encoders, selected.input_keys), verbose=0)
            values = prep.target_values(sp.frame)
            out[name] = head.score(values, head.numpy_outputs(y))
    return out


def _products(searched: Searched, heads, units: int, preds: dict, prior) -> dict:
    """Each trial's product of its inputs' heads (model/experts.py) as a candidate, from its
    kept validation outputs (`units` columns) and each validation row's presence; none where
    the head has no copies per input (`heads` None), or the search kept no presence (a run
    from before it did)."""
    present = Path(searched.tuner.project_dir) / "val_present.npy"
    if heads is None or not present.exists():
        return {}
    rows = np.load(present)
    return {experts.candidate(t): experts.view(heads, p, rows, prior) for t, p in preds.items()
            if p.shape == (len(rows), units)}


def _prior(run: Run, data: Prepared, heads) -> list[float]:
    """The training rows' label frequencies, as the inputs' heads learnt them."""
    train = data.splits["train"]
    balanced = run.manifest.train.class_weight == "balanced"
    return experts.prior(heads, data.prep.targets(train.frame), balanced)


def _member_scalings(run: Run, head, preds: dict, targets) -> dict[str, list[dict]]:
    """Each candidate's blocks of probabilities rescaled by its own temperature before the
    ensemble averages them (heads' `member_scaling`; why: heads/scaling.py), unless the manifest
    turns calibration off; candidates whose temperatures are all 1 are left out."""
    if run.manifest.train.calibrate is False:
        return {}
    out = {}
    for k, p in preds.items():
        blocks = [b for b in head.member_scaling(p, targets) if b["temperature"] != 1.0]
        if blocks:
            out[k] = blocks
    return out


def _candidates(searched: Searched) -> list[str]:
    """Completed trials whose best-epoch weights and validation predictions were kept."""
    from mmauto.search import kt_private

    out = []
    folder = Path(searched.tuner.project_dir)
    for r in searched.leaderboard:
        tid = r["trial"]
        if r["status"] != "completed" or r["score"] is None:
            continue
        if (folder / f"trial_{tid}" / "val_predictions.npy").exists() and Path(kt_private.checkpoint_file(searched.tuner, tid)).exists():
            out.append(tid)
    return out


def _build(searched: Searched, selected: Selected, head, info: dict, linear: LinearMember | None = None) -> Selected:
    from mmauto.model.ensemble import ensemble_model
    from mmauto.run.select import whole_model

    members, encoders, keys, built, products = {}, {}, [], {}, {}
    for tid in info["members"]:
        if tid == LINEAR_ID:
            model, enc, k = linear.model, linear.encoders, linear.input_keys
        else:
            trial = experts.trial_of(tid)  # a trial and its product share one model
            if trial not in built:
                built[trial] = whole_model(searched, searched.tuner.oracle.get_trial(trial))
            model, enc, k = built[trial]
        if experts.is_product(tid):
            heads = experts.input_heads(head)
            products[tid] = (experts.layer(heads, info["prior"], f"trial_{trial}", f"trial_{tid}"), experts.presence_keys(heads))
        members[tid] = (model, k)
        for name, etype in enc.items():
            encoders.setdefault(name, [])
            if etype not in encoders[name]:
                encoders[name].append(etype)
        keys += [x for x in k if x not in keys]
    model = ensemble_model(members, info["weights"], column_weights=_column_weights(head, info), products=products,
                           scalings=info.get("member_scaling"))
    encoders = {n: e[0] if len(e) == 1 else e for n, e in encoders.items()}
    return Selected(selected.trial_id, selected.score, selected.hp, model, encoders, keys, ensemble=info)
