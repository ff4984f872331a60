"""Several targets in one model: one head per target on the shared fusion output.

The model's output stays one float32 [N, units] tensor, the targets' outputs side by side (each
with its head's activation), so everything that handles a model's output (the tuner's
validation predictions, ensemble averaging, the export) handles a multi-target model unchanged;
`MultiHead` slices it per target. Targets train as one [N, targets' columns] array with NaN
where a row has no value for a target: that target's loss and metrics skip the row.

The loss is the weighted sum of the targets' losses, each the mean over the rows that have the
target. Weights are pinned, searched (`<target>/loss_weight`), or learned (`auto`: homoscedastic
uncertainty, Kendall et al., 2018: sum of exp(-s_t) * L_t + s_t, one learned s_t per target).
The primary target (the first that is not auxiliary) keeps its head's metric names, so the
search objective (`val_accuracy`, `val_auc`...) means the same as in a single-target model;
the others' metrics are named `<target>_<metric>`. Auxiliary targets train but are not served.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from mmauto.heads.base import Head, head_for
from mmauto.hp import pick

# Searched weights of a target other than the first when some weights are given but not its.
SECONDARY_WEIGHTS = [0.3, 1.0]


class MultiHead:
    """The heads of a model's targets; answers what a single `Head` answers (the primary
    target's objective, metric and contribution; every served target's outputs, columns and
    scores)."""

    def __init__(self, specs: list, heads: list[Head], loss_weights=None):
        self.specs, self.heads, self.loss_weights = specs, heads, loss_weights
        self.served = [h for s, h in zip(specs, heads) if not s.auxiliary]
        self.primary = self.served[0]
        self.class_weights: dict[str, Optional[np.ndarray]] = {}
        self.pred_slices, self.true_slices = [], []
        p = t = 0
        for h in heads:
            width = h.units
            self.pred_slices.append((p, p + width))
            self.true_slices.append((t, t + width if h.name == "multilabel" else t + 1))
            p, t = p + width, self.true_slices[-1][1]

    @classmethod
    def build(cls, specs: list, states: dict, threshold: float, loss_weights=None) -> MultiHead:
        """One head per target spec; `states`: target column -> that head's state."""
        served = [s for s in specs if not s.auxiliary]
        heads = []
        for s in specs:
            st = states.get(s.column, {})
            prefix = "" if len(served) == 1 else f"{s.name}_"
            heads.append(head_for(s.task, s.column, st.get("classes"), st, threshold, prefix))
        # No weight given anywhere: learned (`auto`). On the clothing reviews (bench/RESULTS.md)
        # it beat weights searched in SECONDARY_WEIGHTS on both targets in the same budget, and
        # it leaves the search one dimension fewer.
        if loss_weights is None and all(s.weight is None for s in specs):
            loss_weights = "auto"
        return cls(specs, heads, loss_weights)

    # === What the primary target decides ===

    @property
    def name(self) -> str:
        return self.primary.name

    @property
    def primary_column(self) -> int:
        """The primary target's column in the training targets array."""
        return self.true_slices[self.heads.index(self.primary)][0]

    @property
    def default_objective(self) -> str:
        return self.primary.default_objective

    @property
    def main_metric(self) -> str:
        return self.primary.main_metric

    @property
    def lower_is_better(self) -> tuple:
        return self.primary.lower_is_better

    def better(self, a: float, b: float) -> bool:
        return self.primary.better(a, b)

    def key(self, output: str) -> str:
        return self.primary.key(output)

    @property
    def state(self) -> dict:
        return {"targets": {s.column: h.state for s, h in zip(self.specs, self.heads)}}

    # === Model ===

    @property
    def units(self) -> int:
        return sum(h.units for h in self.heads)

    def output(self, logits, name: str = "output", scope: str = ""):
        """Each target's slice of the logits through its head's activation, side by side; with
        `loss_weights: auto` the output passes the layer holding the learned weights (not in a
        scoped copy of the heads: the copies' losses use the same weights)."""
        from keras import layers

        from mmauto.layers import TakeColumns, TaskUncertainty

        parts = [h.output(TakeColumns(a, b, name=f"{scope}{s.name}_logits")(logits), name=f"{scope}{s.name}_output")
                 for s, h, (a, b) in zip(self.specs, self.heads, self.pred_slices)]
        if self.loss_weights == "auto" and not scope:
            return TaskUncertainty(len(parts), dtype="float32", name=name)(layers.Concatenate(dtype="float32", name=f"{name}_targets")(parts))
        return layers.Concatenate(dtype="float32", name=name)(parts)

    def weights(self, hp) -> list[float]:
        """The targets' loss weights in this hp set (pinned or searched); 1.0 each under `auto`."""
        if self.loss_weights == "auto":
            return [1.0] * len(self.specs)
        given = self.loss_weights or {}
        out = []
        for i, s in enumerate(self.specs):
            setting = s.weight if s.weight is not None else given.get(s.column)
            if setting is None:
                setting = 1.0 if i == 0 else None
            out.append(pick(hp, f"{s.name}/loss_weight", setting, SECONDARY_WEIGHTS, default=1.0))
        return out

    def training(self, hp, model, output: str = "output") -> tuple:
        """(loss, metrics) to compile `model` with; `output`: the name of this head's output
        layer in `model` (it holds the learned weights of `auto`)."""
        from mmauto.heads.masked import MaskedMetric, MaskedTargetsLoss

        log_vars = model.get_layer(output).log_vars if self.loss_weights == "auto" else None
        parts = [(h.loss(), self.true_slices[i], self.pred_slices[i], self.class_weights.get(s.column))
                 for i, (s, h) in enumerate(zip(self.specs, self.heads))]
        loss = MaskedTargetsLoss(parts, self.weights(hp), log_vars)
        metrics = []
        for i, (s, h) in enumerate(zip(self.specs, self.heads)):
            for m in h.metrics():
                name = m.name if h is self.primary else f"{s.name}_{m.name}"
                metrics.append(MaskedMetric(m, self.true_slices[i], self.pred_slices[i], name=name))
        return loss, metrics

    def adopt(self, model) -> bool:
        return False

    def class_weight(self, y: np.ndarray) -> None:
        """`train.class_weight: balanced`, per target, over the rows that have it. Keras's
        `class_weight` takes one output's classes: the weights go into the loss instead."""
        for i, (s, h) in enumerate(zip(self.specs, self.heads)):
            a, b = self.true_slices[i]
            col = y[:, a]
            cw = h.class_weight(col[~np.isnan(col)])
            if cw:
                self.class_weights[s.column] = np.array([cw.get(k, 0.0) for k in range(max(cw) + 1)], "float32")
        return None

    # === Targets ===

    def encode(self, values: dict) -> np.ndarray:
        """{column: values, None where the row has none} -> float32 [N, columns], NaN if none."""
        blocks = []
        for s, h, (a, b) in zip(self.specs, self.heads, self.true_slices):
            vals = values[s.column]
            block = np.full((len(vals), b - a), np.nan, "float32")
            have = [i for i, v in enumerate(vals) if v is not None]
            if have:
                block[have] = np.asarray(h.encode([vals[i] for i in have]), "float32").reshape(len(have), -1)
            blocks.append(block)
        return np.concatenate(blocks, axis=1)

    def check_values(self, values: dict) -> Optional[str]:
        for s, h in zip(self.specs, self.heads):
            if not s.auxiliary:
                problem = h.check_values([v for v in values[s.column] if v is not None])
                if problem:
                    return problem
        return None

    # === Serving ===

    def _served(self):
        for s, h, sl in zip(self.specs, self.heads, self.pred_slices):
            if not s.auxiliary:
                yield h, sl

    def serve(self, y) -> dict:
        out = {}
        for h, (a, b) in self._served():
            out.update(h.serve(y[:, a:b]))
        return out

    def expected(self, y) -> np.ndarray:
        y = np.asarray(y, "float32")
        return np.concatenate([np.asarray(h.expected(y[:, a:b])).reshape(len(y), -1) for h, (a, b) in self._served()], axis=1)

    def parity_values(self, outputs: dict) -> np.ndarray:
        """The served outputs `expected` describes, side by side."""
        parts = [np.asarray(outputs[h.key(h.parity_output)]) for h, _ in self._served()]
        return np.concatenate([p.reshape(len(p), -1) for p in parts], axis=1)

    def numpy_outputs(self, y) -> dict:
        y = np.asarray(y, "float32")
        out = {}
        for h, (a, b) in self._served():
            out.update(h.numpy_outputs(y[:, a:b]))
        return out

    def output_specs(self) -> dict:
        return {k: v for h, _ in self._served() for k, v in h.output_specs().items()}

    def contribution(self, full: dict, without: dict):
        return self.primary.contribution(full, without)

    def card(self) -> dict:
        # `prefix`: the primary target's served outputs and prediction columns are named
        # `<prefix>probabilities`, `<prefix>prediction`... (the report reads them).
        return {**self.primary.card(), "prefix": self.primary.prefix, "targets": {
            s.column: {"task": s.task, "auxiliary": s.auxiliary, "outputs": None if s.auxiliary else sorted(h.output_specs()), **h.card()}
            for s, h in zip(self.specs, self.heads)}}

    def columns(self, outputs: dict) -> dict:
        return {k: v for h, _ in self._served() for k, v in h.columns(outputs).items()}

    # === Calibration and evaluation ===

    def _served_rows(self, y, targets):
        """Per served target with validation rows: its spec, its head, its columns of the outputs
        and of the targets on those rows, and where its columns start in the outputs."""
        y, targets = np.asarray(y, "float32"), np.asarray(targets, "float32")
        for i, (s, h) in enumerate(zip(self.specs, self.heads)):
            (a, b), (c, d) = self.true_slices[i], self.pred_slices[i]
            have = ~np.isnan(targets[:, a])
            if s.auxiliary or not have.any():
                continue
            t = targets[have, a:b]
            yield s, h, y[have, c:d], (t if b - a > 1 else t.reshape(-1, 1)), c

    def member_scaling(self, y, targets) -> list[dict]:
        """Each served head's blocks (heads/base.py `member_scaling`), fitted on the validation
        rows that have its target, at its columns of the output."""
        return [{**g, "start": g["start"] + c, "stop": g["stop"] + c}
                for _, h, out, t, c in self._served_rows(y, targets) for g in h.member_scaling(out, t)]

    def calibrate(self, y, targets, train) -> Optional[dict]:
        """Each served head's calibration on the validation rows that have its target."""
        info = {}
        for s, h, out, t, _ in self._served_rows(y, targets):
            got = h.calibrate(out, t, train)
            if got:
                info[s.column] = got
        return info or None

    def target_views(self, preds: dict, targets: np.ndarray) -> dict:
        """Each served target's columns of the predictions and of the targets, on the rows that
        have it, primary first (ensemble selection chooses members and weights per target)."""
        out = {}
        for i in sorted(range(len(self.specs)), key=lambda i: self.heads[i] is not self.primary):
            s, h = self.specs[i], self.heads[i]
            if s.auxiliary:
                continue
            (a, b), (c, d) = self.true_slices[i], self.pred_slices[i]
            have = ~np.isnan(targets[:, a])
            if have.any():
                out[s.column] = (h.name, {k: np.asarray(p)[have, c:d] for k, p in preds.items()}, targets[have, a:b])
        return out

    def column_targets(self) -> list:
        """Each output column's target; an auxiliary target's columns count as the primary's."""
        return [self.primary.target if s.auxiliary else s.column
                for s, (a, b) in zip(self.specs, self.pred_slices) for _ in range(b - a)]

    def primary_view(self, preds: dict, targets: np.ndarray) -> tuple:
        """The trials' validation predictions ({trial: [N, units]}) and the targets, cut to the
        primary target's columns and the rows that have it (for ensemble selection)."""
        i = self.heads.index(self.primary)
        (a, b), (c, d) = self.true_slices[i], self.pred_slices[i]
        have = ~np.isnan(targets[:, a])
        return {k: np.asarray(p)[have, c:d] for k, p in preds.items()}, targets[have, a:b]

    def score(self, values: dict, outputs: dict) -> dict:
        """The primary target's metrics, and every served target's under `targets`."""
        per = {}
        for s, h in zip(self.specs, self.heads):
            if s.auxiliary:
                continue
            have = np.array([v is not None for v in values[s.column]])
            vals = [v for v in values[s.column] if v is not None]
            per[s.column] = h.score(vals, {k: np.asarray(v)[have] for k, v in outputs.items()}) if vals else {"rows": 0}
        return {**per[self.primary.target], "targets": per}
