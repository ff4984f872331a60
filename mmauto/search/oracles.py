"""The search strategies: keras-tuner's oracles, with state files replaced whole."""

from __future__ import annotations

import json
import os

import keras_tuner as kt

from mmauto.heads import objective_direction
from mmauto.search import kt_private


def write_json_atomic(path: str, state) -> None:
    """keras-tuner writes its state files in place: a kill during the write leaves a truncated
    oracle.json or trial.json that resume cannot read. Write beside it and rename instead."""
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump(state, f)
    os.replace(tmp, path)


class AtomicSaves:
    """Mixed into keras-tuner's oracles: oracle.json and each trial.json are replaced whole."""

    def save(self):
        write_json_atomic(kt_private.oracle_state_file(self), self.get_state())

    def _save_trial(self, trial):  # overrides keras-tuner's (kt_private.ORACLE_METHODS)
        write_json_atomic(os.path.join(kt_private.trial_dir(self, trial.trial_id), "trial.json"), trial.get_state())


class RandomOracle(AtomicSaves, kt.oracles.RandomSearchOracle):
    pass


class BayesianOracle(AtomicSaves, kt.oracles.BayesianOptimizationOracle):
    pass


class HyperbandOracle(AtomicSaves, kt.oracles.HyperbandOracle):
    pass


def make_oracle(kind: str, objective: str, max_trials: int, epochs: int, seed: int, max_failures: int):
    obj = kt.Objective(objective, objective_direction(objective))
    common = dict(objective=obj, seed=seed, max_consecutive_failed_trials=max_failures)
    if kind == "random":
        return RandomOracle(max_trials=max_trials, **common)
    if kind == "bayesian":
        return BayesianOracle(max_trials=max_trials, num_initial_points=2, **common)
    return HyperbandOracle(max_epochs=max(2, epochs), factor=3, **common)
