"""An ensemble of trained models as one Keras model: the union of the members' inputs in, the
weighted sum of their outputs (probabilities or standardised values) out."""

from __future__ import annotations

import keras

from mmauto.layers import Blend


def ensemble_model(members: dict[str, tuple[keras.Model, list[str]]], weights: list[float], name: str = "ensemble") -> keras.Model:
    """`members`: trial id -> (whole-graph model, its input keys), in the order of `weights`.

    Each member keeps its own layers under the name `trial_<id>`; inputs with the same key
    (the same input and encoder preprocessing) are shared."""
    inputs: dict = {}
    outputs = []
    for tid, (model, keys) in members.items():
        specs = {t.name: t for t in keras.tree.flatten(model.input)}
        for k in keys:
            if k not in inputs:
                spec = specs[k]
                inputs[k] = keras.Input(spec.shape[1:], dtype=spec.dtype, name=k)
        member = keras.Model(model.input, model.output, name=f"trial_{tid}")
        outputs.append(member({k: inputs[k] for k in keys}))
    out = outputs[0] if len(outputs) == 1 else Blend(weights, dtype="float32", name="ensemble_blend")(outputs)
    return keras.Model(inputs, out, name=name)
