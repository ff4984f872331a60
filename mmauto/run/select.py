"""Stage `select`: the best finished trial, rebuilt as the whole graph with its weights."""

from __future__ import annotations

from mmauto.errors import SearchError
from mmauto.run.context import Run, Searched, Selected


def select(run: Run, searched: Searched) -> Selected:
    done = [r for r in searched.leaderboard if r["status"] == "completed" and r["score"] is not None]
    if not done:
        raise SearchError(_nothing_finished(run, searched.leaderboard))
    best = searched.tuner.oracle.get_trial(done[0]["trial"])
    model, encoders, keys = whole_model(searched, best)
    return Selected(best.trial_id, best.score, best.hyperparameters, model, encoders, keys)


def whole_model(searched: Searched, trial):
    """A finished trial's model with every encoder in the graph (a trial trained on cached
    features gets its encoders back), its encoder per input and its input keys."""
    from mmauto.model import hardware
    from mmauto.search.feature_cache import transfer_weights

    tuner, hm, hp = searched.tuner, searched.hypermodel, trial.hyperparameters
    model = tuner.load_model(trial)
    whole = hm.whole_graph()
    if hm.cached(hp):
        full = hardware.build_in_scope(whole, hp, tuner.distribution_strategy)
        transfer_weights(model, full)
        model = full
    return model, whole.encoders(hp), whole.input_keys(hp)


def _nothing_finished(run: Run, rows) -> str:
    from mmauto.search.leaderboard import last_failure

    failed = [r for r in rows if r["status"] == "failed"]
    if failed:
        return f"all {len(failed)} trial(s) failed; the last: {last_failure(rows)}; nothing was exported"
    if run.budget:
        return f"no trial finished within the budget ({run.budget:.0f}s); give a larger --time-budget"
    return "no trial finished"
