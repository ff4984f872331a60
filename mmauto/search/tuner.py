"""The search runner: keras-tuner's Tuner with mmauto's data, a hard time budget, resume checks,
failed-trial accounting and a leaderboard. The space lives in hypermodel.py; the strategy is a
keras-tuner Oracle chosen by `search.tuner`."""

from __future__ import annotations

import contextlib
import gc
import json
import math
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Optional

import keras
import keras_tuner as kt
import numpy as np

from mmauto import events
from mmauto.data.keys import present_key
from mmauto.data.pipeline import plain
from mmauto.model.hypermodel import MultimodalHyperModel
from mmauto.search import kt_private, portfolio
from mmauto.search.callbacks import BestEpoch, CosineDecay, Deadline, DeferredInterrupt, EpochReport, ReduceLROnPlateau
from mmauto.search.oracles import PREDICTIONS_MAX_BYTES, REPLICA, PortfolioFirst, RepeatBest, replica_of, save_npy_atomic, write_json_atomic

# A replica's seed is train.seed + REPLICA_SEED_STEP * its number.
REPLICA_SEED_STEP = 1009
# A warm replica's epochs (search.warm_replicas): on degraded AV-digits (bench/RESULTS.md) five
# annealed epochs from the first trial's best weights scored 0.950-0.970 on validation against
# its 0.955, at a quarter of a fresh replica's 16 epochs.
WARM_EPOCHS = 5


# The first quarter of a trial's epochs is a warm-up: no early stop and no plateau lowers its
# rate there. A model that must compare its inputs starts on the chance plateau and leaves it
# after a few epochs: on the same-digit task (20 epochs) the pairwise entry's validation ROC-AUC
# rose from epoch 4-5 at a constant rate, but the rate halved after each of the first epochs
# that did not improve on noise kept it at chance (bench/RESULTS.md, issue 16).
WARM_UP_SHARE = 4


def warm_up_epochs(epochs: int) -> int:
    """The epochs at the start of a trial of `epochs` in which neither early stopping nor a
    plateau acts."""
    return max(0, epochs) // WARM_UP_SHARE


class MmautoTuner(kt.Tuner):
    """Runs one trial: batches the cached decoded data for the trial's encoders and batch
    size, trains with early stopping and the deadline, keeps the best epoch's weights."""

    # The budget's clock (the deadline's checks and the Deadline callback); a test sets a fake.
    clock: Callable[[], float] = staticmethod(time.time)

    def __init__(self, hypermodel: MultimodalHyperModel, oracle, data: dict, *, epochs: int, patience,
                 lr_factor: Optional[float] = None, cosine: Optional[str] = None, deadline: Optional[float], reserve: float, max_trials: int, cache=None, on_event=None,
                 keep_weights: int = 1, end_cost=None, replicas: int = 0, warm_replicas=False, **kwargs):
        super().__init__(oracle=oracle, hypermodel=hypermodel, **kwargs)
        self.keep_weights = max(1, keep_weights)  # the best trials whose weights stay on disk
        self.data = data
        self.cache = cache
        self.epochs = epochs
        self.patience = patience
        self.lr_factor = lr_factor
        self.cosine = cosine  # the trials whose rate follows a cosine: "all", "chosen" (see `anneals`) or None
        self.deadline = deadline
        self.reserve = reserve
        # (build seconds, validation-pass seconds) -> seconds the stages after the search need
        # beyond the fixed reserve (run/search.py end_cost); trials end that much earlier.
        self.end_cost = end_cost
        self.build_seconds: dict[str, float] = {}
        self.pass_seconds: dict[str, float] = {}
        self.cap = max_trials
        self.replicas = replicas  # the last trials that fit re-train the best configuration (oracles.RepeatBest)
        self.warm_replicas = warm_replicas  # True, False or "auto" (search.warm_replicas)
        self.on_event = on_event or events.ignore
        self.seconds: dict[str, float] = {}
        self.histories: dict[str, dict] = {}
        self.stop_reason: Optional[str] = None
        self._targets: np.ndarray | None = None
        # Set by _check_budget when a full trial no longer fits: the next trial's epochs at most.
        self.epoch_cap: int | None = None
        self.epochs_run: dict[str, int] = {}
        self.epochs_planned: dict[str, int] = {}
        self.cut: set[str] = set()  # trials the deadline stopped before their last epoch
        self.warmed: dict[str, str] = {}  # warm replica -> the trial whose weights it started from
        self.annealed: set[str] = set()  # trials whose rate followed a cosine
        self._predictions_skipped = False
        if isinstance(self.oracle, PortfolioFirst):  # the space is known once the tuner has built it
            inputs = {n: spec.modality for n, spec in hypermodel.manifest.inputs.items()}
            self.oracle.portfolio = portfolio.values_for(inputs, self.oracle.get_space(), head=hypermodel.prep.head.name)

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
        seed = self.trial_seed(hp) if shuffle else None
        # Only what the model decodes itself: a frozen encoder's cached outputs are fixed.
        augment = [n for n in encoders if prep.modality(n).augments] if shuffle and hm.augment(hp) else []
        return prep.batches(ds, hm.batch_size(hp), encoders, hm.input_keys(hp), shuffle_seed=seed, size=self.data["train_rows"],
                            augment=augment)

    # === Trials ===

    def trial_seed(self, hp) -> int:
        """train.seed; a replica's own (its initial weights, data order and augmentation draws)."""
        return self.hypermodel.prep.manifest.train.seed + REPLICA_SEED_STEP * int(hp.values.get(REPLICA, 0))

    def run_trial(self, trial, *args, **kwargs):
        hp = trial.hyperparameters
        t0 = time.time()
        if hp.values.get(REPLICA):
            keras.utils.set_random_seed(self.trial_seed(hp))
        # The hypermodel feeds these inputs from the cache: the datasets must carry them too.
        frozen = self.hypermodel.frozen(hp) if self.cache is not None else {}
        # keras-tuner's build: a fresh Keras session per trial, inside the distribution strategy.
        model = kt_private.build_trial_model(self, hp)
        self.build_seconds[trial.trial_id] = time.time() - t0
        if "tuner/trial_id" in hp.values:
            self._continue_from(model, hp.values["tuner/trial_id"])
        warm_from = self.warm_from(trial)
        if warm_from is not None:
            self._continue_from(model, warm_from)
            self.warmed[trial.trial_id] = warm_from
        train = self._batches("train", hp, frozen, shuffle=True)
        val = self._batches("validation", hp, frozen, shuffle=False)
        objective = self.oracle.objective
        initial, epochs = self.trial_epochs(hp)
        cosine = self.anneals(hp)
        if cosine:
            self.annealed.add(trial.trial_id)
        if warm_from is not None:
            epochs = min(epochs, initial + WARM_EPOCHS)
        elif cosine and hp.values.get(REPLICA):
            epochs = min(epochs, initial + self.epochs_needed(trial))
        best = BestEpoch(objective, kt_private.checkpoint_file(self, trial.trial_id), self._may_be_best)
        deadline = Deadline(self.trials_deadline(), self.clock)
        self.cut.discard(trial.trial_id)  # a trial run again is judged by its new run
        # With a moving average of the weights, every later callback (validation, the best epoch
        # kept, early stopping) sees the average: it goes first.
        optimizer = getattr(model.optimizer, "inner_optimizer", model.optimizer)  # mixed precision wraps it
        ema = [keras.callbacks.SwapEMAWeights(swap_on_epoch=True)] if getattr(optimizer, "use_ema", False) else []
        callbacks = [
            *ema,
            best,
            deadline,
            keras.callbacks.TensorBoard(str(Path(self.project_dir) / "logs" / f"trial_{trial.trial_id}"), write_graph=False, profile_batch=0),
            EpochReport(lambda e, logs: self._epoch_end(trial, e, epochs, logs)),
        ]
        if cosine:  # the schedule sets the trial's length: no early stopping, no plateaus
            steps = math.ceil(self.data["train_rows"] / self.hypermodel.batch_size(hp))
            callbacks.append(CosineDecay((epochs - initial) * steps, deadline=deadline.deadline, clock=self.clock))
        warm_up = initial + warm_up_epochs(epochs - initial)
        if self.patience and not cosine:
            callbacks.append(keras.callbacks.EarlyStopping(monitor=objective.name, mode=objective.direction,
                                                           patience=int(self.patience), start_from_epoch=warm_up))
        if self.lr_factor and not cosine:
            # A constant rate leaves the last epochs bouncing around the optimum, and early
            # stopping then ends a trial on that noise (bench/RESULTS.md, AV-digits).
            callbacks.append(ReduceLROnPlateau(monitor=objective.name, mode=objective.direction, factor=self.lr_factor,
                                               patience=1, min_lr=0.0, start_from_epoch=warm_up))
        interrupt = DeferredInterrupt()
        callbacks.append(interrupt)
        self.on_event(events.TrialStart(trial=trial, hp=hp, epochs=epochs, shortened=self.epoch_cap is not None, annealed=cosine))
        with interrupt.installed():
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
            self.on_event(events.Notice(text=f"trial {trial.trial_id}: validation predictions not written ({exc})"))
        self.seconds[trial.trial_id] = time.time() - t0
        self.epochs_run[trial.trial_id] = len(losses)
        self.epochs_planned[trial.trial_id] = epochs - initial
        if deadline.hit and len(losses) < epochs - initial:
            self.cut.add(trial.trial_id)
        self.histories[trial.trial_id] = {k: [float(v) for v in vals] for k, vals in history.history.items()}
        return history

    def _val_targets(self) -> np.ndarray:
        """The validation targets (rows, units) as the model trains on them; read once per
        process from the decoded split (no encoder preprocessing) and written once per run."""
        if self._targets is None:
            import tensorflow as tf

            # Each input's presence too, (rows, inputs) in the manifest's order: the ensemble
            # stage's view of a trial's product of input heads (model/experts.py) reads it.
            names = list(self.hypermodel.prep.manifest.inputs)
            keys = [present_key(n) for n in names if present_key(n) in self.data["validation"].element_spec[0]]

            def split(f, y):
                return y, tf.stack([tf.cast(f[k], tf.float32) for k in keys], -1) if keys else tf.zeros((0,))

            parts = [(np.asarray(y), np.asarray(p)) for y, p in self.data["validation"].map(split).batch(8192)]
            y = np.concatenate([y for y, _ in parts], axis=0)
            self._targets = y.astype("float32").reshape(len(y), -1)
            folder = Path(self.project_dir)
            if not (folder / "val_targets.npy").exists():
                save_npy_atomic(folder / "val_targets.npy", self._targets)
            if len(keys) == len(names) > 1 and not (folder / "val_present.npy").exists():
                save_npy_atomic(folder / "val_present.npy", np.concatenate([p for _, p in parts], axis=0))
        return self._targets

    def _continue_from(self, model, past_id: str) -> None:
        """A later Hyperband round continues an earlier trial, and a warm replica its original:
        same hp values, so the same architecture (and the same frozen inputs served from the
        feature cache), and that trial's best-epoch weights, which `_may_be_best` always writes
        under Hyperband (and keeps for the best trials). The optimizer starts afresh, as in
        keras-tuner's own Hyperband tuner."""
        path = kt_private.checkpoint_file(self, past_id)
        if not os.path.exists(path):  # e.g. written by a run whose folder was partly removed
            self.on_event(events.Notice(text=f"trial {past_id}'s weights are missing ({path}); its continuation starts from fresh weights"))
            return
        with self.distribution_strategy.scope() if self.distribution_strategy is not None else contextlib.nullcontext():
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
                self.on_event(events.Notice(text=f"validation predictions not kept for ensembling: {rows} rows x {units} outputs "
                                            f"is over {PREDICTIONS_MAX_BYTES >> 20} MB per trial"))
            return
        if best.weights is not None:
            model.set_weights(best.weights)
        t0 = time.time()
        pred = model.predict(val, verbose=0)
        self.pass_seconds[trial_id] = time.time() - t0
        save_npy_atomic(Path(self.project_dir) / f"trial_{trial_id}" / "val_predictions.npy", np.asarray(pred, "float32").reshape(len(pred), -1))

    def _may_be_best(self, score: float) -> bool:
        """Only the best `keep_weights` trials' weights are ever loaded (the export's, and the
        ensemble's candidates), except under Hyperband, whose later rounds continue from
        earlier trials' checkpoints."""
        if isinstance(self.oracle, kt.oracles.HyperbandOracle):
            return True
        try:
            best = self.oracle.get_best_trials(self.keep_weights)
        except Exception:  # a chief that cannot answer: keep the weights rather than lose them
            return True
        scores = [t.score for t in best if t.score is not None]
        if len(scores) < self.keep_weights:
            return True
        return not self.oracle.objective.better_than(scores[-1], score)

    def _prune_weights(self) -> None:
        """Disk stays bounded: checkpoints of trials no longer among the best `keep_weights` go,
        but for the originals of those that are replicas (warm replicas start from them)."""
        if isinstance(self.oracle, kt.oracles.HyperbandOracle) or not isinstance(self.oracle, kt.Oracle):
            return
        best = self.oracle.get_best_trials(self.keep_weights)
        keep = {t.trial_id for t in best} | {replica_of(self.oracle.trials, t) for t in best}
        for tid in self.oracle.trials:
            path = kt_private.checkpoint_file(self, tid)
            if tid not in keep and os.path.exists(path):
                os.remove(path)

    def _epoch_end(self, trial, epoch, epochs, logs):
        # Reporting each epoch to the oracle is also the heartbeat a distributed chief watches.
        name = self.oracle.objective.name
        if name in logs:
            self.oracle.update_trial(trial.trial_id, {name: float(logs[name])}, step=epoch)
        self.on_event(events.EpochEnd(trial=trial, epoch=epoch, epochs=epochs, logs=logs))

    def on_trial_begin(self, trial):
        # A trial run again (interrupted by Ctrl-C or a kill, or retried after a crash) starts
        # with no metrics: keras-tuner would average the new epochs with the old run's.
        if trial.metrics.metrics:
            trial.metrics = type(trial.metrics)()
        super().on_trial_begin(trial)

    def trials_done(self) -> int:
        """Trials finished (completed or failed) by earlier runs of this search. An interrupted
        trial (keras-tuner reloads it as RUNNING and queues it to run again) is not done."""
        trials = getattr(self.oracle, "trials", None) or {}
        return sum(str(t.status).upper() in ("COMPLETED", "FAILED") for t in trials.values())

    def on_trial_end(self, trial):
        super().on_trial_end(trial)
        tid = trial.trial_id
        note = (f"cut by the time budget after {self.epochs_run[tid]} of {self.epochs_planned[tid]} epochs"
                if tid in self.cut else None)
        self.on_event(events.TrialEnd(trial=self.oracle.get_trial(tid), seconds=self.seconds.get(tid), note=note))
        self._save_seconds()
        self._prune_weights()
        self._check_budget()

    def _save_seconds(self):
        # One file per trial: distributed workers share RUN_DIR and must not overwrite each other.
        for tid, secs in self.seconds.items():
            folder = Path(self.project_dir) / f"trial_{tid}"
            if folder.exists():
                epochs = {"epochs": self.epochs_run[tid], "of": self.epochs_planned[tid]} if tid in self.epochs_run else {}
                cut = {"cut": "time budget"} if tid in self.cut else {}
                warm = {"warm_from": self.warmed[tid]} if tid in self.warmed else {}
                annealed = {"annealed": True} if tid in self.annealed else {}
                write_json_atomic(str(folder / "seconds.json"), {"seconds": round(secs, 3), **epochs, **cut, **warm, **annealed})

    def trial_records(self) -> dict:
        """trial id -> its seconds.json: {seconds, epochs (run), of (planned), cut (when the
        deadline stopped it), warm_from (the trial whose weights it started from), annealed (its
        rate followed a cosine)}; every trial of the run, workers' included."""
        out = {}
        for f in Path(self.project_dir).glob("trial_*/seconds.json"):
            out[f.parent.name[len("trial_"):]] = json.loads(f.read_text())
        return out

    def all_seconds(self) -> dict:
        return {tid: d["seconds"] for tid, d in self.trial_records().items()}

    def trial_costs(self) -> list[tuple[float, int]]:
        """(seconds, epochs run) of every finished trial of the run, from seconds.json (a file
        from before epochs were recorded counts the configured epochs)."""
        out = []
        for f in Path(self.project_dir).glob("trial_*/seconds.json"):
            d = json.loads(f.read_text())
            out.append((float(d["seconds"]), int(d.get("epochs", self.epochs))))
        return out

    def anneals(self, hp) -> bool:
        """Whether the trial's rate follows a cosine: every trial's with `train.reduce_lr:
        cosine`; by default a replica's and a portfolio entry's that anneals (not Hyperband's:
        its rounds continue trials)."""
        if self.cosine == "all":
            return True
        chosen = hp.values.get(REPLICA) or (hp.values.get(portfolio.ANNEAL) and "tuner/epochs" not in hp.values)
        return self.cosine == "chosen" and bool(chosen)

    def trial_epochs(self, hp) -> tuple[int, int]:
        """(initial epoch, last epoch) of a trial: Hyperband's when it sets them, else 0 and
        train.epochs; no more than `epoch_cap` epochs when the budget left is short."""
        epochs = hp.values.get("tuner/epochs", self.epochs)
        initial = hp.values.get("tuner/initial_epoch", 0)
        if self.epoch_cap is not None:
            epochs = min(epochs, initial + self.epoch_cap)
        return initial, epochs

    def epochs_needed(self, trial) -> int:
        """The epochs the first trial of a replica's configuration took to reach its best one
        (all of them when it is not found: a distributed worker sees no oracle's trials)."""
        trials = getattr(self.oracle, "trials", None) or {}
        first = trials.get(replica_of(trials, trial)) if isinstance(trials, dict) else None
        if first is None or first.status != "COMPLETED":
            return self.epochs
        return int(first.best_step) + 1

    def warm_from(self, trial) -> Optional[str]:
        """The trial whose best weights a replica starts from (search.warm_replicas), or None
        for fresh weights: not a replica, warm replicas off, its original or its weights not
        found (a distributed worker sees no oracle's trials), or ("auto") an original that
        needed fewer than twice WARM_EPOCHS epochs."""
        trials = getattr(self.oracle, "trials", None)
        if not isinstance(trials, dict) or not self.warm_replicas:
            return None
        first = replica_of(trials, trial)
        if first is None or not self._warm(trials[first]):
            return None
        return first if os.path.exists(kt_private.checkpoint_file(self, first)) else None

    def _warm(self, original) -> bool:
        if original.status != "COMPLETED":
            return False
        return self.warm_replicas is True or (self.cosine is not None and int(original.best_step) + 1 >= 2 * WARM_EPOCHS)

    def end_reserve(self) -> float:
        """Seconds kept after the trials for the stages after the search (`end_cost` of the
        median measured build and validation pass); the first trial, built but not yet passed
        over validation, counts its build alone; 0 before any build."""
        if self.end_cost is None or not self.build_seconds:
            return 0.0
        passes = statistics.median(self.pass_seconds.values()) if self.pass_seconds else 0.0
        return float(self.end_cost(statistics.median(self.build_seconds.values()), passes))

    def trials_deadline(self) -> Optional[float]:
        """When trials must end: the deadline less the reserve for the stages after them."""
        return None if self.deadline is None else self.deadline - self.end_reserve()

    def _check_budget(self):
        """Before each trial: stop at max_trials; with a deadline, run the next trial in full
        when the median trial fits in the time left, else a shorter one (as many epochs as the
        median seconds per epoch, trial overheads included, fit), and stop only when not even
        one epoch does. The Deadline callback still ends any trial at the deadline. The last
        `replicas` trials that fit (in max_trials, or in the time left) are replicas."""
        self.epoch_cap = None
        if not isinstance(self.oracle, kt.Oracle):
            return  # a distributed worker: the chief's oracle keeps the budget
        done = len(self.oracle.trials)
        if done >= self.cap:
            self.oracle.max_trials = done
            return
        self._plan_replica(min(self.cap - done, self._fit_time_left(done)))

    def _fit_time_left(self, done: int) -> float:
        """Full trials that fit in the time left (infinite without a deadline or before a
        trial ended); none when the next one must be shortened (`epoch_cap`) or the search
        stops (`stop_reason`)."""
        if self.deadline is None:
            return math.inf
        costs = self.trial_costs()
        if not costs:  # nothing measured yet: the first trial runs, and the Deadline callback bounds it
            return math.inf
        estimate = statistics.median(s for s, _ in costs)
        left = self.trials_deadline() - self.clock() - self.reserve
        if estimate <= left:
            return int(left // estimate) if estimate > 0 else math.inf
        per_epoch = statistics.median(s / max(e, 1) for s, e in costs)
        epochs = int(left // per_epoch) if per_epoch > 0 else 0
        if epochs >= 1:
            self.epoch_cap = epochs
            return 0
        self.oracle.max_trials = done
        self.stop_reason = (f"time budget: {max(left, 0):.0f}s left, less than one epoch (about {per_epoch:.0f}s) "
                            f"of the next trial (about {estimate:.0f}s in full)")
        return 0

    def _plan_replica(self, fits: float) -> None:
        """The next trial repeats the best configuration when at most `replicas` trials fit,
        `replicas` times in a search: trials that end early leave time for more than the
        estimate said, which goes back to the oracle. Warm replicas, once started, fill the
        time left: the estimate (a median over trials of both lengths) says nothing about an
        exploring trial then, and a member more is worth more than a trial cut short."""
        if not isinstance(self.oracle, RepeatBest):
            return
        run = self.oracle.replicas_run()
        if self.replicas and self._warm_next():
            self.oracle.replicate = (fits <= self.replicas or run > 0) and (run < self.replicas or self.deadline is not None)
        else:
            self.oracle.replicate = run < self.replicas and fits <= self.replicas

    def _warm_next(self) -> bool:
        """Whether a replica of the best trial so far would start from its weights."""
        if not self.warm_replicas or not self.oracle.trials:
            return False
        best = [t for t in self.oracle.get_best_trials(1) if t.score is not None]
        if not best:
            return False
        first = replica_of(self.oracle.trials, best[0]) or best[0].trial_id
        return self._warm(self.oracle.trials[first])

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
