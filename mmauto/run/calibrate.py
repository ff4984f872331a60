"""Stage `calibrate`: post-hoc calibration of the selected model (single or ensemble) on the
validation split, fitted by the task's head (heads/*.py `calibrate`, heads/calibration.py,
heads/scaling.py): temperature, vector, matrix or (two classes) beta scaling of classifiers'
probabilities (with `calibrate: true`, the one a cross-validation on the validation rows
prefers, served only when its gain is more than noise), the decision thresholds of binary and
multilabel labels, and a split-conformal interval for regression. The fitted values go into the head's state (RUN_DIR/preprocessing.json), so the
served graph, the export's parity check and `mmauto predict` all apply them."""

from __future__ import annotations

import dataclasses

import numpy as np

from mmauto import events
from mmauto.run.context import Prepared, Run, Selected

BATCH = 64


def calibrate(run: Run, data: Prepared, selected: Selected) -> Selected:
    prep, val = data.prep, data.splits["validation"]
    if run.manifest.retrieval:
        run.emit(events.Notice(text="calibration skipped: a retrieval model serves embeddings, with no probabilities, "
                                    "thresholds or intervals to calibrate"))
        return selected
    if not val.rows:
        return selected
    batches = prep.batches(data.datasets["validation"], BATCH, selected.encoders, selected.input_keys)
    y = np.asarray(selected.model.predict(batches, verbose=0), "float32")
    info = prep.head.calibrate(y, prep.targets(val.frame), run.manifest.train)
    prep.state["target"] = prep.head.state
    prep.to_json(run.run_dir / "preprocessing.json")
    if info:
        run.emit(events.Calibrated(fitted=info))
    return dataclasses.replace(selected, calibration=info)
