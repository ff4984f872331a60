"""Stage `export`: the raw-input SavedModel, parity-checked against the in-process model on
validation rows, moved into RUN_DIR/model atomically."""

from __future__ import annotations

from mmauto import events
from mmauto.run.context import Exported, Prepared, Run, Selected


def export(run: Run, data: Prepared, selected: Selected) -> Exported:
    from mmauto.export.saved_model import PARITY_ROWS, export_saved_model

    members = selected.ensemble["members"] if selected.ensemble else None
    run.emit(events.ExportStart(trial=selected.trial_id, members=members))
    prep, val = data.prep, data.splits["validation"]
    if prep.head.adopt(selected.model):  # e.g. the retrieval embedding width, for the served shapes
        prep.state["target"] = prep.head.state
        prep.to_json(run.run_dir / "preprocessing.json")
    rows = val.frame.iloc[:PARITY_ROWS]
    decoded = prep.decoded_dataset(rows, val.root, with_targets=False)
    batches = prep.batches(decoded, PARITY_ROWS, selected.encoders, selected.input_keys)
    expected = prep.head.expected(selected.model.predict(batches, verbose=0))
    path = run.run_dir / "model"
    parity, loaded = export_saved_model(selected.model, prep, selected.encoders, selected.input_keys, path,
                                        prep.serving_values(rows, val.root), expected)
    return Exported(path, loaded.signatures["serving_default"], parity)
