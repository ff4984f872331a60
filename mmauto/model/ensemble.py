"""An ensemble of trained models as one Keras model: the union of the members' inputs in, the
weighted sum of their outputs (probabilities or standardised values) out."""

from __future__ import annotations

import keras

from mmauto.layers import Blend


def ensemble_model(members: dict[str, tuple[keras.Model, list[str]]], weights: list[float], name: str = "ensemble",
                   column_weights=None) -> keras.Model:
    """`members`: trial id -> (whole-graph model, its input keys), in the order of `weights`;
    `column_weights`: per member, one weight per output column (see layers.Blend), or None.

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
    names = [f"trial_{tid}" for tid in members]
    if len(outputs) == 1:
        return keras.Model(inputs, outputs[0], name=name)
    out = Blend(weights, members=names, column_weights=column_weights, dtype="float32", name="ensemble_blend")(outputs)
    return keras.Model(inputs, out, name=name)


def _has_layer(model: keras.Model, name: str) -> bool:
    return any(layer.name == name for layer in model.layers)


def lead_member(model: keras.Model) -> keras.Model:
    """The searched member of an ensemble built by `ensemble_model` with the highest weight (the
    first of equals, the one that joined first); any other model is its own lead.

    Members are nested models with their own layers; the Blend layer names them beside their
    weights, so the lead is read from the model itself rather than from the layer order."""
    blend = next((layer for layer in model.layers if isinstance(layer, Blend)), None)
    if blend is not None and blend.members:
        # Searched members only: the linear model (run/linear.py) has no fused vector or fusion.
        searched = [i for i, m in enumerate(blend.members) if _has_layer(model.get_layer(m), "fused")] or list(range(len(blend.members)))
        weights = blend.blend_weights
        return model.get_layer(blend.members[max(searched, key=weights.__getitem__)])
    nested = [layer for layer in model.layers if isinstance(layer, keras.Model) and layer.name.startswith("trial_")]
    return nested[0] if len(nested) == 1 else model
