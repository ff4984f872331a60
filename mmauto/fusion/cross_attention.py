"""Symmetric cross-attention over every combination of inputs.

For a pair A, B: A's tokens attend to B's and B's to A's; the two mean-pooled results are
summed. With three or more inputs, every pair and the all-input combination are computed (for
V, T, A: VT, VA, TA and VTA; in the all-input one each input attends to all the others'
tokens). The combination vectors are concatenated and mixed by a dense layer.
"""

from itertools import combinations

from keras import layers

from mmauto.fusion.base import FUSIONS, Fusion, token_seq
from mmauto.layers import mlp, transformer_block


def combos(names):
    """Every pair, plus the all-input combination when there are three or more inputs."""
    out = [tuple(c) for c in combinations(names, 2)]
    if len(names) >= 3:
        out.append(tuple(names))
    return out


@FUSIONS.register("cross_attention")
class CrossAttentionFusion(Fusion):
    min_inputs = 2
    attention = True
    tokens = True

    def build(self, hp, encoded, width, dropout):
        depth = self.depth(hp, (1, 2))
        heads = self.heads(hp, width)
        names = list(encoded)
        tokens = {n: token_seq(encoded[n], f"xattn_{n}") for n in names}
        vectors = []
        for combo in combos(names):
            tag = "_".join(combo)
            directed = []
            for q in combo:
                others = [tokens[o] for o in combo if o != q]
                ctx = others[0] if len(others) == 1 else layers.Concatenate(axis=1, name=f"xattn_{tag}_{q}_ctx")(others)
                x = tokens[q]
                for i in range(depth):
                    x = transformer_block(x, heads, width, dropout, f"xattn_{tag}_{q}_to_rest{i}", context=ctx)
                directed.append(layers.GlobalAveragePooling1D(name=f"xattn_{tag}_{q}_pool")(x))
            vectors.append(layers.Add(name=f"xattn_{tag}_sum")(directed))
        x = vectors[0] if len(vectors) == 1 else layers.Concatenate(name="xattn_combos")(vectors)
        return mlp(x, width, 1, dropout, "xattn_mlp")
