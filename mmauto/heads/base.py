"""The head contract: everything about one task lives in its head class.

A head owns the model's last layer and activation, the loss and training metrics, the default
search objective, how targets are encoded for training, what the SavedModel serves, how served
outputs become prediction columns, and the evaluation metrics. Nothing else switches on the
task: adding a task is one new file here with `@HEADS.register(name)`.

A head serves one target. Its served outputs are named `probabilities`, `label`, `value`...;
`prefix` (the target's name plus "_") scopes them when a model carries several heads.
"""

from __future__ import annotations

import abc
from typing import ClassVar, Optional

import numpy as np

from mmauto.registry import HEADS


class Head(abc.ABC):
    """Base class; subclasses register with `@HEADS.register(name)`."""

    name: ClassVar[str]
    activation: ClassVar[str]
    default_objective: ClassVar[str]
    # The evaluation metric that summarises a model (the ablation's, the report's).
    main_metric: ClassVar[str]
    # Metric names (training or evaluation) where lower is better.
    lower_is_better: ClassVar[tuple[str, ...]] = ()
    # The served output the export's parity check compares.
    parity_output: ClassVar[str] = "probabilities"

    def __init__(self, target: str, classes: Optional[list[str]] = None, state: Optional[dict] = None,
                 threshold: float = 0.5, prefix: str = ""):
        self.target = target
        self.classes = classes
        self.state = state or {}
        self.threshold = threshold
        self.prefix = prefix

    @classmethod
    @abc.abstractmethod
    def accepts(cls, task: str, classes: Optional[list[str]]) -> bool:
        """Whether this head serves the manifest's `task` with these classes."""

    # === Model ===

    @property
    @abc.abstractmethod
    def units(self) -> int: ...

    def output(self, logits, name: str = "output", scope: str = ""):
        """The model's output tensor from the head's logits (float32 under mixed precision).
        `scope` prefixes the names of any inner layers (one head's copies: input_heads.py)."""
        from keras import layers

        return layers.Activation(self.activation, dtype="float32", name=name)(logits)

    @abc.abstractmethod
    def loss(self): ...

    @abc.abstractmethod
    def metrics(self) -> list: ...

    def training(self, hp, model, output: str = "output") -> tuple:
        """(loss, metrics) to compile `model` with (a multi-target model's differ: multi.py);
        `output`: the name of the head's output layer in `model`."""
        return self.loss(), self.metrics()

    def adopt(self, model) -> bool:
        """What the head records from the selected model before the export (retrieval: the
        embedding width); True when its state changed."""
        return False

    def class_weight(self, y: np.ndarray) -> Optional[dict]:
        """`train.class_weight: balanced`: weights per class index, or None where it means nothing."""
        return None

    # === Targets ===

    @abc.abstractmethod
    def encode(self, values) -> np.ndarray:
        """Parsed target values (labels, label lists or numbers) -> training arrays."""

    # === Serving ===

    @abc.abstractmethod
    def serve(self, y) -> dict:
        """The served outputs (TF tensors) from the model's float32 output `y`."""

    @abc.abstractmethod
    def expected(self, y: np.ndarray) -> np.ndarray:
        """What `serve(y)[parity_output]` must equal, computed in numpy from the model's output."""

    def parity_values(self, outputs: dict) -> np.ndarray:
        """The served output(s) `expected` describes (numpy)."""
        return np.asarray(outputs[self.key(self.parity_output)])

    def numpy_outputs(self, y: np.ndarray) -> dict:
        """Served outputs, as `score` reads them, computed in numpy from the model's output."""
        return {self.key(self.parity_output): self.expected(y)}

    def primary_view(self, preds: dict, targets: np.ndarray) -> tuple:
        """The trials' validation predictions and targets that ensemble selection scores."""
        return preds, targets

    def target_views(self, preds: dict, targets: np.ndarray) -> dict:
        """Per served target, primary first: (head name, predictions, targets) for ensemble
        selection. One target: the primary view."""
        return {self.target: (self.name, *self.primary_view(preds, targets))}

    def column_targets(self) -> list:
        """The served target each column of the model's output belongs to."""
        return [self.target] * self.units

    @abc.abstractmethod
    def output_specs(self) -> dict:
        """The model card's description of the served outputs."""

    @abc.abstractmethod
    def contribution(self, full: dict, without: dict):
        """Per row (TF, [N]): how much the served answer moves when one input is treated as
        missing; `full` and `without` are `serve` outputs with and without it."""

    def card(self) -> dict:
        return {"head": self.name, "labels": self.classes, "threshold": None}

    # === Calibration (after the search, on validation) ===

    def calibrate(self, y: np.ndarray, targets: np.ndarray, train) -> Optional[dict]:
        """Fit post-hoc calibration on the selected model's validation outputs `y` and encoded
        `targets` (`train`: the manifest's TrainSpec); the fitted values go into `state`, which
        `serve` and `expected` apply. Returns what was fitted (the run summary's entry), or None."""
        return None

    def member_scaling(self, y: np.ndarray, targets: np.ndarray) -> list[dict]:
        """How one ensemble member's output is rescaled before the ensemble averages it (stage
        `ensemble`): blocks `{kind, start, stop, temperature, eps}` of layers.ScaleProbabilities,
        fitted on the member's validation outputs `y` and encoded `targets`. No blocks here:
        outputs that are not probabilities."""
        return []

    @property
    def calibration(self) -> Optional[dict]:
        """The fitted scaling (see heads/calibration.py and heads/scaling.py), or None."""
        return self.state.get("calibration")

    @property
    def temperature(self) -> Optional[float]:
        """The temperature `serve` applies, or None (not fitted, not kept, or another scaling)."""
        c = self.calibration
        return float(c["temperature"]) if c and c.get("applied") and c.get("method", "temperature") == "temperature" else None

    @property
    def vector_scaling(self) -> Optional[tuple]:
        """The (scale, bias) float32 arrays `serve` applies to the logits, or None."""
        return self._served("vector", "scale", "bias")

    @property
    def matrix_scaling(self) -> Optional[tuple]:
        """The (matrix, bias) float32 arrays `serve` applies to the log-probabilities, or None."""
        return self._served("matrix", "matrix", "bias")

    def _served(self, method: str, *keys: str) -> Optional[tuple]:
        c = self.calibration
        if not (c and c.get("applied") and c.get("method") == method):
            return None
        return tuple(np.asarray(c[k], "float32") for k in keys)

    def key(self, output: str) -> str:
        return f"{self.prefix}{output}"

    # === Predictions and evaluation ===

    @abc.abstractmethod
    def columns(self, outputs: dict) -> dict:
        """Prediction-table columns from the served outputs (numpy)."""

    @abc.abstractmethod
    def score(self, values, outputs: dict) -> dict:
        """Evaluation metrics from true target values and served outputs."""

    def check_values(self, values) -> Optional[str]:
        """A problem with true values this model cannot score (labels it never saw), or None."""
        return None

    def better(self, a: float, b: float) -> bool:
        """Whether main-metric value `a` is better than `b`."""
        return a < b if self.main_metric in self.lower_is_better else a > b


def label_columns(head: Head, outputs: dict) -> dict:
    """`prediction` (the served label) and `prob_<class>` per class: the columns of the heads
    that serve labels with probabilities."""
    labels = outputs[head.key("label")]
    cols = {f"{head.prefix}prediction": [x.decode() if isinstance(x, bytes) else str(x) for x in labels]}
    probs = outputs[head.key("probabilities")]
    cols.update({f"{head.prefix}prob_{c}": probs[:, i] for i, c in enumerate(head.classes)})
    return cols


def head_for(task: str, target: str, classes: Optional[list[str]] = None, state: Optional[dict] = None,
             threshold: float = 0.5, prefix: str = "") -> Head:
    """The registered head that accepts the task and classes."""
    for _, cls in HEADS.items():
        if cls.accepts(task, classes):
            return cls(target, classes, state, threshold, prefix)
    raise KeyError(f"no head accepts task {task!r} ({', '.join(HEADS.names())})")


def objective_direction(name: str) -> str:
    """'min' or 'max' for a search objective or metric name (`val_` prefix allowed; a
    multi-target model's other targets' metrics are named `<target>_<metric>`)."""
    base = name[4:] if name.startswith("val_") else name
    lower = {"loss"} | {m for _, cls in HEADS.items() for m in cls.lower_is_better}
    return "min" if any(base == m or base.endswith(f"_{m}") for m in lower) else "max"
