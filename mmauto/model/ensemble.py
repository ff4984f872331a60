"""An ensemble of trained models as one Keras model: the union of the members' inputs in, the
weighted sum of their outputs (probabilities, each member's rescaled by its own temperature where
one was fitted, or standardised values) out."""

from __future__ import annotations

import keras

from mmauto.layers import Blend, ProductOfExperts, ScaleProbabilities
from mmauto.model import experts


def ensemble_model(members: dict[str, tuple[keras.Model, list[str]]], weights: list[float], name: str = "ensemble",
                   column_weights=None, products: dict | None = None, scalings: dict | None = None) -> keras.Model:
    """`members`: member id -> (whole-graph model, its input keys), in the order of `weights`;
    `column_weights`: per member, one weight per output column (see layers.Blend), or None;
    `products`: member id -> (layers.ProductOfExperts, the presence keys it reads) for members
    that are a trial's product of input heads (model/experts.py), which read the model of
    their trial; `scalings`: member id -> the blocks of its output rescaled before the average
    (layers.ScaleProbabilities; heads' `member_scaling`).

    Each model keeps its own layers under the name `trial_<trial id>`, called once however
    many members read it; inputs with the same key (the same input and encoder preprocessing)
    are shared."""
    products = products or {}
    inputs: dict = {}
    outputs, called = [], {}
    for tid, (model, keys) in members.items():
        specs = {t.name: t for t in keras.tree.flatten(model.input)}
        for k in keys:
            if k not in inputs:
                spec = specs[k]
                inputs[k] = keras.Input(spec.shape[1:], dtype=spec.dtype, name=k)
        if id(model) not in called:
            member = keras.Model(model.input, model.output, name=f"trial_{experts.trial_of(tid)}")
            called[id(model)] = member({k: inputs[k] for k in keys})
        out = called[id(model)]
        if tid in products:
            product, presence = products[tid]
            out = product([out, *(inputs[k] for k in presence)])
        if (scalings or {}).get(tid):
            out = ScaleProbabilities(scalings[tid], dtype="float32", name=f"scaled_trial_{tid}")(out)
        outputs.append(out)
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
        read = [_read_model(model, m) for m in blend.members]
        # Searched members only: the linear model (run/linear.py) has no fused vector or fusion.
        searched = [i for i, m in enumerate(read) if _has_layer(m, "fused")] or list(range(len(read)))
        return read[max(searched, key=blend.blend_weights.__getitem__)]
    nested = [layer for layer in model.layers if isinstance(layer, keras.Model) and layer.name.startswith("trial_")]
    return nested[0] if len(nested) == 1 else model


def _read_model(model: keras.Model, member: str) -> keras.Model:
    """The nested model a Blend member names: itself, or the model a product of experts reads."""
    layer = model.get_layer(member)
    return model.get_layer(layer.member) if isinstance(layer, ProductOfExperts) else layer
