"""Training callbacks of a trial: the wall-clock deadline, the best epoch's weights, and the
per-epoch report that feeds the oracle and the progress printers."""

from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
from collections.abc import Callable
from typing import Optional

import keras


class Deadline(keras.callbacks.Callback):
    """Stops training at a wall-clock deadline (the running epoch still validates); `hit` says
    it did. `clock` is the tuner's (a test's fake one)."""

    def __init__(self, deadline: Optional[float], clock: Callable[[], float] = time.time):
        super().__init__()
        self.deadline = deadline
        self.clock = clock
        self.hit = False

    def on_train_batch_end(self, batch, logs=None):
        if self.deadline is not None and self.clock() >= self.deadline:
            self.model.stop_training = True
            self.hit = True


class CosineDecay(keras.callbacks.Callback):
    """The learning rate along half a cosine, from the optimizer's rate at the trial's first
    step to 0 after `steps` (the trial's planned epochs, shortened ones included, so a trial
    cut to the time left still ends annealed). Set before each batch, as Keras' own
    LearningRateScheduler sets it before each epoch.

    With a `deadline`, after each epoch the horizon shrinks to the epochs that still fit at the
    last epoch's pace (validation included): a trial the deadline will stop ends annealed
    instead of at a high rate. It never grows back."""

    def __init__(self, steps: int, deadline: Optional[float] = None, clock: Callable[[], float] = time.time):
        super().__init__()
        self.steps = max(1, int(steps))
        self.step = 0
        self.base: Optional[float] = None
        self.deadline, self.clock = deadline, clock
        self._epoch_start: Optional[float] = None

    def on_train_begin(self, logs=None):
        self.base = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        self.step = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = self.clock()
        self._epoch_step = self.step

    def on_epoch_end(self, epoch, logs=None):
        if self.deadline is None or self._epoch_start is None:
            return
        now = self.clock()
        per_epoch, steps = now - self._epoch_start, self.step - self._epoch_step
        if per_epoch <= 0 or steps <= 0:
            return
        fit = int((self.deadline - now) / per_epoch * steps)  # steps, a last partial epoch's too
        self.steps = min(self.steps, self.step + max(fit, 1))

    def on_train_batch_begin(self, batch, logs=None):
        fraction = min(self.step, self.steps) / self.steps
        self.model.optimizer.learning_rate = self.base * 0.5 * (1.0 + math.cos(math.pi * fraction))

    def on_train_batch_end(self, batch, logs=None):
        # Counted here: on a dataset of unknown length Keras begins one more batch per epoch,
        # the one that finds the data exhausted.
        self.step += 1


class ReduceLROnPlateau(keras.callbacks.ReduceLROnPlateau):
    """Keras' ReduceLROnPlateau with EarlyStopping's `start_from_epoch`: the epochs before it
    neither count as a plateau nor set the best value, so a model still on its starting
    plateau (a comparison at chance) keeps its rate while it may leave it."""

    def __init__(self, *, start_from_epoch: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.start_from_epoch = int(start_from_epoch)

    def on_epoch_end(self, epoch, logs=None):
        if epoch >= self.start_from_epoch:
            super().on_epoch_end(epoch, logs)


class DeferredInterrupt(keras.callbacks.Callback):
    """Ctrl-C during training is raised between batches, in Python. Raised where it lands, it can
    land inside a TensorFlow op's Python code, which turns it into an ordinary error; keras-tuner
    then records a failed trial and searches on, and the fit ends with exit 0 (seen under load).
    A second Ctrl-C does not wait."""

    def __init__(self):
        super().__init__()
        self.requested = False

    def _request(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    @contextlib.contextmanager
    def installed(self):
        """The handler while the block runs (only the main thread can install one; a process
        that ignores SIGINT, e.g. started in the background, keeps ignoring it)."""
        if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
            yield
            return
        previous = signal.signal(signal.SIGINT, self._request)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)
        if self.requested:  # asked for after the last batch
            raise KeyboardInterrupt

    def _check(self, *args, **kwargs):
        if self.requested:
            self.requested = False
            raise KeyboardInterrupt

    on_train_batch_end = on_test_batch_end = _check


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
