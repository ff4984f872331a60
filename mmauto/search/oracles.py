"""The search strategies: keras-tuner's oracles, with state files replaced whole, a
portfolio of strong configurations tried first and replicas of the best one last."""

from __future__ import annotations

import json
import os
from pathlib import Path

import keras_tuner as kt
import numpy as np

from mmauto.heads import objective_direction
from mmauto.search import kt_private


def write_json_atomic(path: str, state) -> None:
    """keras-tuner writes its state files in place: a kill during the write leaves a truncated
    oracle.json or trial.json that resume cannot read. Write beside it and rename instead."""
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump(state, f)
    os.replace(tmp, path)


def save_npy_atomic(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        np.save(f, array)
    os.replace(tmp, path)


# Validation predictions kept per trial for ensembling are skipped above this (one trial's file).
PREDICTIONS_MAX_BYTES = 50 << 20


class AtomicSaves:
    """Mixed into keras-tuner's oracles: oracle.json and each trial.json are replaced whole."""

    def save(self):
        write_json_atomic(kt_private.oracle_state_file(self), self.get_state())

    def _save_trial(self, trial):  # overrides keras-tuner's (kt_private.ORACLE_METHODS)
        write_json_atomic(os.path.join(kt_private.trial_dir(self, trial.trial_id), "trial.json"), trial.get_state())


class PortfolioFirst:
    """Mixed into the oracles: the first trials are the portfolio's configurations
    (mmauto/search/portfolio.py), then the oracle's own choices. `portfolio` ([(name, full hp
    values)]) is set by the tuner once the space is known; `portfolio_used` counts the entries
    taken (run, or skipped as already tried) and is kept in oracle.json, so a resumed search
    goes on with the next entry or with the oracle's choices."""

    portfolio: tuple | list = ()
    portfolio_used = 0
    _portfolio_offer = None

    def portfolio_pending(self) -> bool:
        """Whether an entry not yet tried remains."""
        return self._next_portfolio_values() is not None

    def _next_portfolio_values(self) -> dict | None:
        while self.portfolio_used < len(self.portfolio):
            values = self.portfolio[self.portfolio_used][1]
            if not self._duplicate(values):
                return dict(values)
            self.portfolio_used += 1
        return None

    def populate_space(self, trial_id):
        values = self._next_portfolio_values()
        if values is None:
            return super().populate_space(trial_id)
        if isinstance(self, kt.oracles.HyperbandOracle):
            # Hyperband's brackets and epochs stay its own: a first-round trial takes its values
            # from _random_values, where the entry waits; a continued trial leaves it for later.
            self._portfolio_offer = values
            try:
                return super().populate_space(trial_id)
            finally:
                if self._portfolio_offer is None:
                    self.portfolio_used += 1
                self._portfolio_offer = None
        self.portfolio_used += 1
        return {"status": "RUNNING", "values": values}

    def _random_values(self):
        if self._portfolio_offer is not None:
            values, self._portfolio_offer = self._portfolio_offer, None
            return values
        return super()._random_values()

    def get_state(self):
        return {**super().get_state(), "portfolio_used": self.portfolio_used}

    def set_state(self, state):
        super().set_state(state)
        self.portfolio_used = state.get("portfolio_used", 0)


# The trial value that marks a replica: its number (1, 2, ...) among the replicas of one
# configuration. Not a hyperparameter of the space: the build ignores it and the Bayesian
# oracle's model does not see it; the tuner seeds the trial with it.
REPLICA = "replica"


class RepeatBest:
    """Mixed into the oracles: while `replicate` is set (by the tuner, for the last trials the
    budget leaves), a new trial re-trains the best configuration so far, the same values with
    `REPLICA` = its replica number, once the portfolio has no entry left. The tuner trains it
    with its own seed (weights, data order, augmentation draws): replicas of one strong model
    are members an ensemble can average (deep ensembles, Lakshminarayanan et al., 2017), where a
    last exploratory draw is usually weaker than the best trial and gets little weight."""

    replicate = False

    def populate_space(self, trial_id):
        values = self._replica_values() if self.replicate and not self.portfolio_pending() else None
        if values is None:
            return super().populate_space(trial_id)
        return {"status": "RUNNING", "values": values}

    def replicas_run(self) -> int:
        """Replicas among this search's trials (run, running or failed)."""
        return sum(bool(t.hyperparameters.values.get(REPLICA)) for t in self.trials.values())

    def _replica_values(self) -> dict | None:
        best = [t for t in self.get_best_trials(1) if t.score is not None]
        if not best:
            return None
        base = base_values(best[0].hyperparameters.values)
        used = [t.hyperparameters.values.get(REPLICA, 0) for t in self.trials.values()
                if base_values(t.hyperparameters.values) == base]
        return {**base, REPLICA: max(used, default=0) + 1}


def base_values(values: dict) -> dict:
    """A trial's values without its replica number: equal for a configuration and its replicas."""
    return {k: v for k, v in values.items() if k != REPLICA}


def replica_of(trials: dict, trial) -> str | None:
    """The id of the trial whose configuration `trial` repeats; None if it is not a replica."""
    if not trial.hyperparameters.values.get(REPLICA):
        return None
    base = base_values(trial.hyperparameters.values)
    firsts = [tid for tid, t in trials.items() if not t.hyperparameters.values.get(REPLICA)
              and base_values(t.hyperparameters.values) == base]
    return min(firsts, default=None)


class RandomOracle(RepeatBest, PortfolioFirst, AtomicSaves, kt.oracles.RandomSearchOracle):
    pass


class BayesianOracle(RepeatBest, PortfolioFirst, AtomicSaves, kt.oracles.BayesianOptimizationOracle):
    pass


class HyperbandOracle(PortfolioFirst, AtomicSaves, kt.oracles.HyperbandOracle):
    pass


def make_oracle(kind: str, objective: str, max_trials: int, epochs: int, seed: int, max_failures: int):
    obj = kt.Objective(objective, objective_direction(objective))
    common = dict(objective=obj, seed=seed, max_consecutive_failed_trials=max_failures)
    if kind == "random":
        return RandomOracle(max_trials=max_trials, **common)
    if kind == "bayesian":
        return BayesianOracle(max_trials=max_trials, num_initial_points=2, **common)
    return HyperbandOracle(max_epochs=max(2, epochs), factor=3, **common)
