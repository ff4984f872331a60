"""The embedding sub-model the export serves as `serving_embed`: per input the projected pooled
vector after the missing-modality gate, and the fused vector. It is built from the trained
model's own layers, so it shares their weights instead of copying them."""

from __future__ import annotations

import keras

from mmauto.model.ensemble import lead_member


def embedding_model(model: keras.Model, names: list[str]) -> keras.Model:
    """Outputs `embedding_<input>` (output 0 of the layer `<input>_missing`, the MissingGate of
    `MultimodalHyperModel._encode`; for a retrieval model its `<input>_retrieval_projection` into
    the shared space) and `embedding` (the Identity layer `fused`), unnormalised.

    An ensemble serves its lead (highest-weight) member's vectors: each member has its own
    fused space (its own width, fusion and training), so an average of them would mean
    nothing, while the lead member's space is the one that weighs most in the answers."""
    source = lead_member(model)
    layers = {layer.name for layer in source.layers}
    # A retrieval model's shared space is its `<input>_retrieval_projection`s (heads/retrieval.py).
    outputs = {f"embedding_{n}": source.get_layer(f"{n}_retrieval_projection").output if f"{n}_retrieval_projection" in layers
               else source.get_layer(f"{n}_missing").output[0] for n in names}
    outputs["embedding"] = source.get_layer("fused").output
    return keras.Model(source.input, outputs, name="embedding")
