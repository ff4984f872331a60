"""Symmetric cross-attention over every combination of inputs.

For a pair A, B: A's tokens attend to B's and B's to A's; the two mean-pooled results are
summed. Padded text tokens are neither attended to nor pooled. With three or more inputs, every pair and the all-input combination are computed (for
V, T, A: VT, VA, TA and VTA; in the all-input one each input attends to all the others'
tokens). The combination vectors are concatenated and mixed by a dense layer.
"""

from itertools import combinations

from keras import layers

from mmauto.fusion.base import FUSIONS, Fusion, token_seq
from mmauto.layers import MaskedMean, joint_mask, mlp, transformer_block


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
        masks = {n: encoded[n].mask for n in names}
        vectors = []
        for combo in combos(names):
            tag = "_".join(combo)
            directed = []
            for q in combo:
                others = [o for o in combo if o != q]
                ctx = tokens[others[0]] if len(others) == 1 else layers.Concatenate(axis=1, name=f"xattn_{tag}_{q}_ctx")([tokens[o] for o in others])
                ctx_mask = joint_mask([(tokens[o], masks[o]) for o in others], f"xattn_{tag}_{q}_ctx")
                x = tokens[q]
                for i in range(depth):
                    x = transformer_block(x, heads, width, dropout, f"xattn_{tag}_{q}_to_rest{i}", context=ctx, context_mask=ctx_mask)
                if masks[q] is None:
                    directed.append(layers.GlobalAveragePooling1D(name=f"xattn_{tag}_{q}_pool")(x))
                else:
                    directed.append(MaskedMean(name=f"xattn_{tag}_{q}_pool")(x, masks[q]))
            vectors.append(layers.Add(name=f"xattn_{tag}_sum")(directed))
        x = vectors[0] if len(vectors) == 1 else layers.Concatenate(name="xattn_combos")(vectors)
        return mlp(x, width, 1, dropout, "xattn_mlp")
