"""The model card, RUN_DIR/mmauto.json: what a server needs to call the SavedModel."""

from __future__ import annotations

import json
import platform
from importlib import metadata
from pathlib import Path


def _version(pkg: str):
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return None


# What serving_explain's contribution_<input> means (the model card and the README say it).
CONTRIBUTION = ("the answer with the row as sent minus the answer with this input treated as missing (the predicted "
                "class's probability; for multilabel the mean absolute change of the labels' probabilities; for "
                "regression the value); the model runs once per input more, in the same call")


# What serving_embed's outputs are (the model card and the README say it).
EMBEDDING = ("the input's vector as the model's fusion receives it (projected, normalised, after the missing-modality "
             "gate: a missing input gives its learned missing embedding, the same for every row, all zeros if training never "
             "saw the input missing), L2-normalised")
FUSED_EMBEDDING = "the fused vector the head reads, L2-normalised; of an ensemble, its highest-weight member's"


# What serving_explain's attention_<input> means.
ATTENTION = ("the share of the attention fusion's attention that this input's tokens get (the transformer's CLS token in "
             "its last block, the perceiver's latents in their cross-attention; averaged over heads); the shares of a row sum to 1")


def embedding_widths(model_dir: Path, signature: str = "serving_embed") -> dict:
    """A signature's output widths read from the SavedModel (no model is loaded); {} where
    there is none."""
    path = Path(model_dir) / "saved_model.pb"
    if not path.exists():
        return {}
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString(path.read_bytes())
    sig = saved.meta_graphs[0].signature_def
    if signature not in sig:
        return {}
    return {k: (v.tensor_shape.dim[-1].size if v.tensor_shape.dim and v.tensor_shape.dim[-1].size >= 0 else None)
            for k, v in sig[signature].outputs.items()}


def needs_tensorflow_text(m, encoders: dict) -> bool:
    """Whether the SavedModel holds keras-hub tokenizer ops (serving imports tensorflow_text)."""
    from mmauto.data.pipeline import encoder_list

    return any("keras_hub" in encoder_list(e) and m.inputs[n].modality == "text" for n, e in encoders.items())


def serving_inputs(prep) -> list[dict]:
    out = []
    for name, spec in prep.manifest.inputs.items():
        mod = prep.modality(name)
        example = mod.example(name, spec.options)
        missing = mod.missing_values(name, spec.options)
        for key, (shape, dtype) in mod.serving_spec(name, spec.options).items():
            out.append({"name": key, "input": name, "modality": spec.modality, "dtype": dtype, "shape": list(shape),
                        "example": example.get(key), "missing": missing.get(key)})
    return out


def write(run_dir: Path, prep, hp_values: dict, encoders: dict, scores: dict, summary: dict) -> dict:
    m = prep.manifest
    head = prep.head
    needs_text_ops = needs_tensorflow_text(m, encoders)
    outputs = head.output_specs()
    widths = embedding_widths(Path(run_dir) / "model")
    attention = [n for n in m.inputs if f"attention_{n}" in embedding_widths(Path(run_dir) / "model", "serving_explain")]
    card = {
        "format": "mmauto-model-card/1",
        "model": "model",
        "task": m.task if m.target is None or m.task == "zero_shot" else m.target.task,
        **head.card(),
        "signatures": {
            "serving_default": {"inputs": serving_inputs(prep), "outputs": outputs},
            "serving_explain": {"inputs": "as serving_default", "outputs": {
                **outputs, **{f"contribution_{n}": {"dtype": "float32", "shape": [None], "means": CONTRIBUTION} for n in m.inputs},
                **{f"attention_{n}": {"dtype": "float32", "shape": [None], "means": ATTENTION} for n in attention}}},
            "serving_embed": {"inputs": "as serving_default", "outputs": {
                **{f"embedding_{n}": {"dtype": "float32", "shape": [None, widths.get(f"embedding_{n}")], "means": EMBEDDING} for n in m.inputs},
                "embedding": {"dtype": "float32", "shape": [None, widths.get("embedding")], "means": FUSED_EMBEDDING}}},
            **({"serving_waveform": {"inputs": "as serving_default, but each audio input is float32 [N, S] at its sample_rate; a row whose first sample is NaN is missing"}}
               if any(s.modality == "audio" for s in m.inputs.values()) else {}),
        },
        "missing_inputs": "An input is missing when a row holds the `missing` value its serving input lists above "
                          "(an empty string for bytes and text, NaN for a number). "
                          "The model then uses the input's learned missing embedding; any subset may be missing as long as one input is present. "
                          "A row with EVERY input missing is not refused or flagged by the SavedModel: it gets the one answer the model gives "
                          "to no evidence at all (the same for every such row, not always near uniform), so a client must not send one; "
                          "`mmauto predict` refuses such rows with an error naming them. A batch of 0 rows gets empty outputs.",
        "op_libraries": ["tensorflow-text"] if needs_text_ops else [],
        "load": ("import tensorflow as tf" + ("; import tensorflow_text" if needs_text_ops else "") + "; m = tf.saved_model.load('model'); m.signatures['serving_default'](**inputs)"),
        "metrics": scores,
        "objective": summary.get("objective"),
        "best_trial": summary.get("best_trial"),
        # The SavedModel averages these trials' outputs with these weights (None: the best trial
        # alone); with several targets, each target's outputs with its own `targets` weights.
        # A member `<trial>_experts` is that trial's product of its inputs' heads, which divides
        # out the training `prior` (model/experts.py).
        "ensemble": ({"members": summary["ensemble"]["members"], "weights": summary["ensemble"]["weights"],
                      "best_single": summary["ensemble"]["best_single"],
                      # the search's best trial (by its objective) alone, scored on the same splits
                      "best_trial": summary["ensemble"]["best_trial"],
                      **({"prior": summary["ensemble"]["prior"]} if "prior" in summary["ensemble"] else {}),
                      # each member's blocks of probabilities rescaled before the average (run/ensemble.py)
                      **({"member_scaling": summary["ensemble"]["member_scaling"]}
                         if summary["ensemble"].get("member_scaling") else {}),
                      **({"targets": {t: {"weights": v["weights"], "validation": v["validation"], "metric": v["metric"]}
                                      for t, v in summary["ensemble"]["targets"].items()}}
                         if summary["ensemble"].get("targets") else {})} if summary.get("ensemble") else None),
        "fusion": hp_values.get("fusion"),
        "encoders": encoders,
        "hyperparameters": hp_values,
        "parity": summary.get("parity"),
        "manifest": m.raw,
        "versions": {p: _version(p) for p in ("mmauto", "tensorflow", "keras", "keras-hub", "keras-tuner", "tensorflow-text")} | {"python": platform.python_version()},
    }
    (Path(run_dir) / "mmauto.json").write_text(json.dumps(card, indent=2, default=str))
    return card
