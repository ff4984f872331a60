"""The search runner: keras-tuner's Tuner with mmauto's data, a hard time budget, resume checks,
failed-trial accounting and a leaderboard. The space lives in hypermodel.py; the strategy is a
keras-tuner Oracle chosen by `search.tuner`."""

from __future__ import annotations

import gc
import json
import math
import os
import statistics
import time
from pathlib import Path
from typing import Callable, Optional

import keras
import keras_tuner as kt
import numpy as np

from mmauto import portfolio
from mmauto.heads import objective_direction
from mmauto.data.pipeline import plain
from mmauto.hypermodel import MultimodalHyperModel


# === Callbacks ===


class Deadline(keras.callbacks.Callback):
    """Stops training at a wall-clock deadline (the running epoch still validates)."""

    def __init__(self, deadline: Optional[float]):
        super().__init__()
        self.deadline = deadline
        self.hit = False

    def on_train_batch_end(self, batch, logs=None):
        if self.deadline is not None and time.time() >= self.deadline:
            self.model.stop_training = True
            self.hit = True


class BestEpoch(keras.callbacks.Callback):
    """Keeps the weights of the best epoch by the objective; on a tie, the lower val_loss.

    A rank metric saturates (val_auc reaches 1.0 while the probabilities still sit near 0.5):
    keras-tuner's SaveBestEpoch then keeps that first, barely trained epoch. The weights stay in
    memory and are written once when training ends, and only when `worth_writing(best)` says the
    trial can still be the search's best: an HDF5 write per improving epoch was a third of a small
    trial's fixed cost.
    """

    def __init__(self, objective, filepath: str, worth_writing: Callable[[float], bool] = lambda best: True):
        super().__init__()
        self.objective, self.filepath, self.worth_writing = objective, filepath, worth_writing
        self.best, self.best_loss, self.weights = None, math.inf, None
        self.written = False

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        value = logs.get(self.objective.name)
        if value is None:
            return
        loss = logs.get("val_loss", math.inf)
        if self.best is None or self.objective.better_than(value, self.best) or (value == self.best and loss < self.best_loss):
            self.best, self.best_loss = value, loss
            self.weights = self.model.get_weights()

    def on_train_end(self, logs=None):
        if self.weights is None or not self.worth_writing(self.best):
            return
        self.model.set_weights(self.weights)
        self.model.save_weights(self.filepath)
        self.written = True


class EpochReport(keras.callbacks.Callback):
    def __init__(self, fn: Callable[[int, dict], None]):
        super().__init__()
        self.fn = fn

    def on_epoch_end(self, epoch, logs=None):
        self.fn(epoch, dict(logs or {}))


# === Oracle ===


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
        write_json_atomic(self._get_oracle_fname(), self.get_state())

    def _save_trial(self, trial):
        write_json_atomic(os.path.join(self._get_trial_dir(trial.trial_id), "trial.json"), trial.get_state())


class PortfolioFirst:
    """Mixed into the oracles: the first trials are the portfolio's configurations
    (mmauto/portfolio.py), then the oracle's own choices. `portfolio` ([(name, full hp
    values)]) is set by the tuner once the space is known; `portfolio_used` counts the entries
    taken (run, or skipped as already tried) and is kept in oracle.json, so a resumed search
    goes on with the next entry or with the oracle's choices."""

    portfolio: tuple | list = ()
    portfolio_used = 0
    _portfolio_offer = None

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


class RandomOracle(PortfolioFirst, AtomicSaves, kt.oracles.RandomSearchOracle):
    pass


class BayesianOracle(PortfolioFirst, AtomicSaves, kt.oracles.BayesianOptimizationOracle):
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


# === Tuner ===


class MmautoTuner(kt.Tuner):
    """Runs one trial: batches the cached decoded data for the trial's encoders and batch
    size, trains with early stopping and the deadline, keeps the best epoch's weights."""

    def __init__(self, hypermodel: MultimodalHyperModel, oracle, data: dict, *, epochs: int, patience,
                 deadline: Optional[float], reserve: float, max_trials: int, cache=None, on_event=None, **kwargs):
        super().__init__(oracle=oracle, hypermodel=hypermodel, **kwargs)
        self.data = data
        self.cache = cache
        self.epochs = epochs
        self.patience = patience
        self.deadline = deadline
        self.reserve = reserve
        self.cap = max_trials
        self.on_event = on_event or (lambda *a, **k: None)
        self.seconds: dict[str, float] = {}
        self.histories: dict[str, dict] = {}
        self.stop_reason: Optional[str] = None
        self._targets: np.ndarray | None = None
        # Set by _check_budget when a full trial no longer fits: the next trial's epochs at most.
        self.epoch_cap: int | None = None
        self.epochs_run: dict[str, int] = {}
        self.clock: Callable[[], float] = time.time
        self._predictions_skipped = False
        if isinstance(self.oracle, PortfolioFirst):  # the space is known once the tuner has built it
            inputs = {n: spec.modality for n, spec in hypermodel.manifest.inputs.items()}
            self.oracle.portfolio = portfolio.values_for(inputs, self.oracle.get_space())

    def save(self):
        if not self._is_worker():
            self.oracle.save()
        write_json_atomic(self._get_tuner_fname(), self.get_state())

    # === Frozen-feature cache ===

    def use_cache(self, hp) -> dict[str, str]:
        """Point the hypermodel at cached features for this hp set's frozen encoders."""
        hm: MultimodalHyperModel = self.hypermodel
        frozen = hm.frozen(hp) if self.cache is not None else {}
        hm.cached = {n: self.cache.specs(n, e) for n, e in frozen.items()}
        return frozen

    def _batches(self, split: str, hp, frozen: dict, shuffle: bool):
        hm: MultimodalHyperModel = self.hypermodel
        prep = hm.prep
        ds = self.data[split]
        if frozen:
            import tensorflow as tf

            extra = tuple(self.cache.dataset(n, e, split) for n, e in frozen.items())
            ds = tf.data.Dataset.zip((ds, *extra)).map(plain(lambda fy, *es: ({**fy[0], **{k: v for e in es for k, v in e.items()}}, fy[1])))
        encoders = {n: e for n, e in hm.encoders(hp).items() if n not in frozen}
        seed = prep.manifest.train.seed if shuffle else None
        return prep.batches(ds, hm.batch_size(hp), encoders, hm.input_keys(hp), shuffle_seed=seed, size=self.data["train_rows"])

    # === Trials ===

    def run_trial(self, trial, *args, **kwargs):
        hp = trial.hyperparameters
        t0 = time.time()
        frozen = self.use_cache(hp)
        # keras-tuner's build: a fresh Keras session per trial, inside the distribution strategy.
        model = self._try_build(hp)
        if "tuner/trial_id" in hp.values:
            self._continue_from(model, hp.values["tuner/trial_id"])
        train = self._batches("train", hp, frozen, shuffle=True)
        val = self._batches("validation", hp, frozen, shuffle=False)
        objective = self.oracle.objective
        initial, epochs = self.trial_epochs(hp)
        best = BestEpoch(objective, self._get_checkpoint_fname(trial.trial_id), self._may_be_best)
        callbacks = [
            best,
            Deadline(self.deadline),
            keras.callbacks.TensorBoard(str(Path(self.project_dir) / "logs" / f"trial_{trial.trial_id}"), write_graph=False, profile_batch=0),
            EpochReport(lambda e, logs: self._epoch_end(trial, e, epochs, logs)),
        ]
        if self.patience:
            callbacks.append(keras.callbacks.EarlyStopping(monitor=objective.name, mode=objective.direction, patience=int(self.patience)))
        self.on_event("trial_start", trial=trial, hp=hp, epochs=epochs, shortened=self.epoch_cap is not None)
        history = model.fit(train, validation_data=val, epochs=epochs, initial_epoch=initial, callbacks=callbacks,
                            verbose=0, class_weight=self.data.get("class_weight"))
        losses = history.history.get("loss", [])
        if not losses or any(not math.isfinite(x) for x in losses):
            raise kt.errors.FailedTrialError("the loss became NaN or infinite")
        if objective.name not in history.history:
            raise kt.errors.FailedTrialError(f"the trial reported no '{objective.name}' (metrics: {', '.join(history.history)})")
        try:
            self._save_val_predictions(trial.trial_id, model, best, val)
        except OSError as exc:  # a full disk must not fail a trial that trained
            self.on_event("warning", text=f"trial {trial.trial_id}: validation predictions not written ({exc})")
        self.seconds[trial.trial_id] = time.time() - t0
        self.epochs_run[trial.trial_id] = len(losses)
        self.histories[trial.trial_id] = {k: [float(v) for v in vals] for k, vals in history.history.items()}
        return history

    def _val_targets(self) -> np.ndarray:
        """The validation targets (rows, units) as the model trains on them; read once per
        process from the decoded split (no encoder preprocessing) and written once per run."""
        if self._targets is None:
            ys = self.data["validation"].map(lambda f, y: y).batch(8192)
            y = np.concatenate([np.asarray(b) for b in ys], axis=0)
            self._targets = y.astype("float32").reshape(len(y), -1)
            path = Path(self.project_dir) / "val_targets.npy"
            if not path.exists():
                save_npy_atomic(path, self._targets)
        return self._targets

    def _continue_from(self, model, past_id: str) -> None:
        """A later Hyperband round continues an earlier trial: same hp values, so the same
        architecture (and the same frozen inputs served from the feature cache), and that
        trial's best-epoch weights, which `_may_be_best` always writes under Hyperband. The
        optimizer starts afresh, as in keras-tuner's own Hyperband tuner."""
        path = self._get_checkpoint_fname(past_id)
        if not os.path.exists(path):  # e.g. written by a run whose folder was partly removed
            self.on_event("warning", text=f"trial {past_id}'s weights are missing ({path}); its continuation starts from fresh weights")
            return
        with kt.engine.tuner.maybe_distribute(self.distribution_strategy):
            model.load_weights(path)

    def _save_val_predictions(self, trial_id: str, model, best: BestEpoch, val) -> None:
        """The validation split's predictions with the best epoch's weights, for ensemble
        selection: `trial_<id>/val_predictions.npy`, float32 (rows, head units): probabilities
        for classification ((rows, 1) sigmoid for binary), standardised values for regression.
        The targets, encoded as the model was trained on them, go once to `val_targets.npy`.
        A trial's file is rows x units x 4 bytes (10k rows x 10 classes: 400 kB); above
        PREDICTIONS_MAX_BYTES they are not kept (said once)."""
        units = self.hypermodel.prep.head.units
        rows = len(self._val_targets())
        if rows * units * 4 > PREDICTIONS_MAX_BYTES:
            if not self._predictions_skipped:
                self._predictions_skipped = True
                self.on_event("warning", text=f"validation predictions not kept for ensembling: {rows} rows x {units} outputs "
                              f"is over {PREDICTIONS_MAX_BYTES >> 20} MB per trial")
            return
        if best.weights is not None:
            model.set_weights(best.weights)
        pred = model.predict(val, verbose=0)
        save_npy_atomic(Path(self.project_dir) / f"trial_{trial_id}" / "val_predictions.npy", np.asarray(pred, "float32").reshape(len(pred), -1))

    def _may_be_best(self, score: float) -> bool:
        """Only the best trial's weights are ever loaded, except under Hyperband, whose later
        rounds continue from earlier trials' checkpoints."""
        if isinstance(self.oracle, kt.oracles.HyperbandOracle):
            return True
        try:
            best = self.oracle.get_best_trials(1)
        except Exception:  # a chief that cannot answer: keep the weights rather than lose them
            return True
        if not best or best[0].score is None:
            return True
        return not self.oracle.objective.better_than(best[0].score, score)

    def _epoch_end(self, trial, epoch, epochs, logs):
        # Reporting each epoch to the oracle is also the heartbeat a distributed chief watches.
        name = self.oracle.objective.name
        if name in logs:
            self.oracle.update_trial(trial.trial_id, {name: float(logs[name])}, step=epoch)
        self.on_event("epoch", trial=trial, epoch=epoch, epochs=epochs, logs=logs)

    def on_trial_end(self, trial):
        super().on_trial_end(trial)
        self.on_event("trial_end", trial=self.oracle.get_trial(trial.trial_id), seconds=self.seconds.get(trial.trial_id))
        self._save_seconds()
        self._check_budget()

    def _save_seconds(self):
        # One file per trial: distributed workers share RUN_DIR and must not overwrite each other.
        for tid, secs in self.seconds.items():
            folder = Path(self.project_dir) / f"trial_{tid}"
            if folder.exists():
                epochs = {"epochs": self.epochs_run[tid]} if tid in self.epochs_run else {}
                write_json_atomic(str(folder / "seconds.json"), {"seconds": round(secs, 3), **epochs})

    def all_seconds(self) -> dict:
        out = {}
        for f in Path(self.project_dir).glob("trial_*/seconds.json"):
            out[f.parent.name[len("trial_"):]] = json.loads(f.read_text())["seconds"]
        return out

    def trial_costs(self) -> list[tuple[float, int]]:
        """(seconds, epochs run) of every finished trial of the run, from seconds.json (a file
        from before epochs were recorded counts the configured epochs)."""
        out = []
        for f in Path(self.project_dir).glob("trial_*/seconds.json"):
            d = json.loads(f.read_text())
            out.append((float(d["seconds"]), int(d.get("epochs", self.epochs))))
        return out

    def trial_epochs(self, hp) -> tuple[int, int]:
        """(initial epoch, last epoch) of a trial: Hyperband's when it sets them, else 0 and
        train.epochs; no more than `epoch_cap` epochs when the budget left is short."""
        epochs = hp.values.get("tuner/epochs", self.epochs)
        initial = hp.values.get("tuner/initial_epoch", 0)
        if self.epoch_cap is not None:
            epochs = min(epochs, initial + self.epoch_cap)
        return initial, epochs

    def _check_budget(self):
        """Before each trial: stop at max_trials; with a deadline, run the next trial in full
        when the median trial fits in the time left, else a shorter one (as many epochs as the
        median seconds per epoch, trial overheads included, fit), and stop only when not even
        one epoch does. The Deadline callback still ends any trial at the deadline."""
        self.epoch_cap = None
        if not isinstance(self.oracle, kt.Oracle):
            return  # a distributed worker: the chief's oracle keeps the budget
        done = len(self.oracle.trials)
        if done >= self.cap:
            self.oracle.max_trials = done
            return
        if self.deadline is None:
            return
        costs = self.trial_costs()
        estimate = statistics.median(s for s, _ in costs) if costs else 0.0
        left = self.deadline - self.clock() - self.reserve
        if estimate <= left:
            return
        per_epoch = statistics.median(s / max(e, 1) for s, e in costs)
        epochs = int(left // per_epoch) if per_epoch > 0 else 0
        if epochs >= 1:
            self.epoch_cap = epochs
            return
        self.oracle.max_trials = done
        self.stop_reason = (f"time budget: {max(left, 0):.0f}s left, less than one epoch (about {per_epoch:.0f}s) "
                            f"of the next trial (about {estimate:.0f}s in full)")

    def search(self, *args, **kwargs):
        # keras-tuner collects garbage twice before every trial. With TensorFlow's ~450k
        # long-lived objects each pass took 0.1-0.2 s, a fifth of a trial on cached features;
        # frozen, they are skipped and each pass scans only what was made since.
        gc.collect()
        gc.freeze()
        try:
            return super().search(*args, **kwargs)
        finally:
            gc.unfreeze()

    def on_search_begin(self):
        super().on_search_begin()
        self.limit_trials()
        self._check_budget()

    def limit_trials(self):
        if isinstance(self.oracle, kt.Oracle) and not isinstance(self.oracle, kt.oracles.HyperbandOracle):
            self.oracle.max_trials = self.cap


# === Leaderboard ===


def leaderboard(tuner: MmautoTuner, objective: str) -> list[dict]:
    seconds = tuner.all_seconds()
    rows = []
    for tid, trial in sorted(tuner.oracle.trials.items(), key=lambda kv: int(kv[0]) if kv[0].isdigit() else kv[0]):
        hp = trial.hyperparameters.values
        score = trial.score
        status = str(trial.status).lower()
        fusion = hp.get("fusion")
        row = {
            "trial": tid,
            "status": "completed" if status == "completed" else status,
            "score": None if score is None or (isinstance(score, float) and math.isnan(score)) else float(score),
            "objective": objective,
            "seconds": seconds.get(tid),
            "fusion": fusion,
            "depth": hp.get(f"{fusion}/depth"),
            "heads": hp.get(f"{fusion}/heads"),
            "width": hp.get("width"),
            "learning_rate": hp.get("learning_rate"),
            "batch_size": hp.get("batch_size"),
            "encoders": {k.split("/")[0]: v for k, v in hp.items() if k.endswith("/encoder")},
            "hyperparameters": {k: v for k, v in hp.items()},
            "message": trial.message if status == "failed" else None,
        }
        rows.append(row)
    sign = -1 if objective_direction(objective) == "max" else 1
    rows.sort(key=lambda r: (r["score"] is None, sign * (r["score"] or 0.0)))
    for rank, r in enumerate(rows, 1):
        r["rank"] = rank if r["score"] is not None else None
    return rows


def write_leaderboard(rows: list[dict], run_dir: Path) -> None:
    import csv

    (run_dir / "leaderboard.json").write_text(json.dumps(rows, indent=2, default=str))
    cols = ["rank", "trial", "status", "score", "objective", "seconds", "fusion", "depth", "heads", "width", "learning_rate", "batch_size", "encoders", "message"]
    with open(run_dir / "leaderboard.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({**r, "encoders": ";".join(f"{k}={v}" for k, v in r["encoders"].items())})


def class_weights(y: np.ndarray, n: int) -> dict:
    y = np.asarray(y).reshape(-1).astype(int)
    counts = np.bincount(y, minlength=n).astype(float)
    return {i: (len(y) / (n * c) if c else 0.0) for i, c in enumerate(counts)}
