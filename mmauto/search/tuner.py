"""The search runner: keras-tuner's Tuner with mmauto's data, a hard time budget, resume checks,
failed-trial accounting and a leaderboard. The space lives in hypermodel.py; the strategy is a
keras-tuner Oracle chosen by `search.tuner`."""

from __future__ import annotations

import gc
import json
import math
import statistics
import time
from pathlib import Path
from typing import Optional

import keras
import keras_tuner as kt

from mmauto import events
from mmauto.data.pipeline import plain
from mmauto.model.hypermodel import MultimodalHyperModel
from mmauto.search import kt_private
from mmauto.search.callbacks import BestEpoch, Deadline, EpochReport
from mmauto.search.oracles import write_json_atomic


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
        self.on_event = on_event or events.ignore
        self.seconds: dict[str, float] = {}
        self.histories: dict[str, dict] = {}
        self.stop_reason: Optional[str] = None

    def save(self):
        if not kt_private.is_worker(self):
            self.oracle.save()
        write_json_atomic(kt_private.tuner_state_file(self), self.get_state())

    # === Frozen-feature cache ===

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
        # The hypermodel feeds these inputs from the cache: the datasets must carry them too.
        frozen = self.hypermodel.frozen(hp) if self.cache is not None else {}
        # keras-tuner's build: a fresh Keras session per trial, inside the distribution strategy.
        model = kt_private.build_trial_model(self, hp)
        train = self._batches("train", hp, frozen, shuffle=True)
        val = self._batches("validation", hp, frozen, shuffle=False)
        objective = self.oracle.objective
        epochs = hp.values.get("tuner/epochs", self.epochs)
        initial = hp.values.get("tuner/initial_epoch", 0)
        callbacks = [
            BestEpoch(objective, kt_private.checkpoint_file(self, trial.trial_id), self._may_be_best),
            Deadline(self.deadline),
            keras.callbacks.TensorBoard(str(Path(self.project_dir) / "logs" / f"trial_{trial.trial_id}"), write_graph=False, profile_batch=0),
            EpochReport(lambda e, logs: self._epoch_end(trial, e, epochs, logs)),
        ]
        if self.patience:
            callbacks.append(keras.callbacks.EarlyStopping(monitor=objective.name, mode=objective.direction, patience=int(self.patience)))
        self.on_event(events.TrialStart(trial=trial, hp=hp, epochs=epochs))
        history = model.fit(train, validation_data=val, epochs=epochs, initial_epoch=initial, callbacks=callbacks,
                            verbose=0, class_weight=self.data.get("class_weight"))
        losses = history.history.get("loss", [])
        if not losses or any(not math.isfinite(x) for x in losses):
            raise kt.errors.FailedTrialError("the loss became NaN or infinite")
        if objective.name not in history.history:
            raise kt.errors.FailedTrialError(f"the trial reported no '{objective.name}' (metrics: {', '.join(history.history)})")
        self.seconds[trial.trial_id] = time.time() - t0
        self.histories[trial.trial_id] = {k: [float(v) for v in vals] for k, vals in history.history.items()}
        return history

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
        self.on_event(events.EpochEnd(trial=trial, epoch=epoch, epochs=epochs, logs=logs))

    def on_trial_end(self, trial):
        super().on_trial_end(trial)
        self.on_event(events.TrialEnd(trial=self.oracle.get_trial(trial.trial_id), seconds=self.seconds.get(trial.trial_id)))
        self._save_seconds()
        self._check_budget()

    def _save_seconds(self):
        # One file per trial: distributed workers share RUN_DIR and must not overwrite each other.
        for tid, secs in self.seconds.items():
            folder = Path(self.project_dir) / f"trial_{tid}"
            if folder.exists():
                write_json_atomic(str(folder / "seconds.json"), {"seconds": round(secs, 3)})

    def all_seconds(self) -> dict:
        out = {}
        for f in Path(self.project_dir).glob("trial_*/seconds.json"):
            out[f.parent.name[len("trial_"):]] = json.loads(f.read_text())["seconds"]
        return out

    def _check_budget(self):
        if not isinstance(self.oracle, kt.Oracle):
            return  # a distributed worker: the chief's oracle keeps the budget
        done = len(self.oracle.trials)
        if done >= self.cap:
            self.oracle.max_trials = done
            return
        if self.deadline is None:
            return
        times = list(self.all_seconds().values())
        estimate = statistics.median(times) if times else 0.0
        if time.time() + estimate + self.reserve > self.deadline:
            self.oracle.max_trials = done
            self.stop_reason = f"time budget: the next trial (about {estimate:.0f}s) would not end in time"

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
