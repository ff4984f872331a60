"""Where an attention fusion looks: per row, the share of attention each input's tokens get
(`attention_<input>` in `serving_explain`).

- transformer fusion: the CLS token's attention in the last self-attention block (the CLS
  token is the fused vector), averaged over heads;
- perceiver fusion: the latents' cross-attention to the inputs' tokens (the only place the
  inputs are read), averaged over latents and heads.

The shares of a row sum to 1 (the CLS token's attention to itself is left out). Other fusions
(cross_attention attends from each input to the others only, so a share would always be 1)
serve no attention. The attention layer is called again on the inputs it was called with in
the trained graph, so nothing is copied and the numbers are the ones the model used. An
ensemble explains its lead (highest-weight) member, as `serving_embed` does.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import keras

from mmauto.model.ensemble import lead_member


@dataclasses.dataclass
class AttentionProbe:
    """`probe(features)` -> the attention layer's query, value and key mask in the trained graph."""

    probe: keras.Model
    layer: keras.layers.MultiHeadAttention
    spans: dict[str, tuple[int, int]]  # input -> its keys [start, stop)
    cls_query: bool  # the transformer's CLS token (query 0) alone, or the mean over queries

    def shares(self, features: dict):
        """{input: float32 [N]}: each input's share of the attention."""
        from keras import ops

        got = self.probe({k: features[k] for k in self.input_keys}, training=False)
        _, scores = self.layer(got["query"], got["value"], value_mask=got.get("mask"), return_attention_scores=True, training=False)
        s = ops.mean(ops.cast(scores, "float32"), axis=1)  # (N, queries, keys)
        s = s[:, 0, :] if self.cls_query else ops.mean(s, axis=1)
        parts = {n: ops.sum(s[:, a:b], axis=1) for n, (a, b) in self.spans.items()}
        total = ops.maximum(sum(parts.values()), 1e-12)
        return {n: p / total for n, p in parts.items()}

    @property
    def input_keys(self) -> list[str]:
        return [t.name for t in keras.tree.flatten(self.probe.input)]


def call_arguments(layer) -> tuple:
    """(args, kwargs) of the layer's first call in its functional graph: Keras's `Node` has no
    public accessor (keras 3.15: `layer._inbound_nodes[i].arguments`); tests/test_explain.py
    fails when that changes."""
    node = layer._inbound_nodes[0]
    return node.arguments.args, node.arguments.kwargs


def attention_probe(model: keras.Model, names: list[str]) -> Optional[AttentionProbe]:
    """The probe of the model's attention fusion, or None when its fusion has none."""
    source = lead_member(model)
    layers = {layer.name: layer for layer in source.layers}
    blocks = sorted(n for n in layers if n.startswith("tfuse_block") and n.endswith("_mha"))
    if blocks:
        last = max(blocks, key=lambda n: int(n[len("tfuse_block"):-len("_mha")]))
        return _probe(source, layers[last], names, "tfuse", offset=1, cls_query=True)
    if "perceiver_cross_mha" in layers:
        return _probe(source, layers["perceiver_cross_mha"], names, "perceiver", offset=0, cls_query=False)
    return None


def _probe(source, mha, names, prefix: str, offset: int, cls_query: bool) -> Optional[AttentionProbe]:
    spans, at = {}, offset
    for n in names:
        length = source.get_layer(f"{prefix}_{n}_pos").output.shape[1]
        if length is None:  # a sequence of unknown length: the spans cannot be told apart
            return None
        spans[n] = (at, at + int(length))
        at += int(length)
    args, kwargs = call_arguments(mha)
    outputs = {"query": args[0], "value": args[1]}
    if kwargs.get("value_mask") is not None:
        outputs["mask"] = kwargs["value_mask"]
    return AttentionProbe(keras.Model(source.input, outputs, name="attention_probe"), mha, spans, cls_query)
