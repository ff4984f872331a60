"""What `mmauto validate` reports: rows per split, presence per input, classes, dropped rows."""

from __future__ import annotations

from mmauto.data.checks import Splits
from mmauto.modalities import MODALITIES
from mmauto.modalities.base import cell_is_missing


def summarize(splits: Splits) -> dict:
    m = splits.manifest
    out = {
        "manifest": str(m.path),
        "name": m.name,
        "task": m.task if m.target is None else m.target.task,
        "target": None if m.target is None else m.target.column,
        "splits": {k: {"rows": s.rows, "source": s.source} for k, s in splits.splits.items()},
        "inputs": [],
        "classes": list(m.zero_shot.classes) if m.task == "zero_shot" else splits.classes,
        **({"targets": {t.column: {"task": t.task, "auxiliary": t.auxiliary, "classes": splits.classes_by_target.get(t.column),
                                   "missing": {k: int(s.frame[t.column].map(cell_is_missing).sum()) for k, s in splits.splits.items()}}
                        for t in m.targets}} if len(m.targets) > 1 else {}),
        "dropped": [p.to_dict() for p in splits.dropped],
        "dropped_rows": splits.dropped_rows(),
        "dropped_by_reason": splits.dropped_by_reason(),
    }
    for name, spec in m.inputs.items():
        mod = MODALITIES.get(spec.modality)()
        out["inputs"].append({
            "name": name,
            "modality": spec.modality,
            "columns": mod.columns(spec.options),
            "missing": {k: int((~s.present[name]).sum()) for k, s in splits.splits.items()},
        })
    return out
