"""Self-attention over the tokens of every input (each with its own learned positions, which
also tell the inputs apart) and a CLS token whose final state is the fused vector. Padded text
tokens get no attention."""

from keras import layers

from mmauto.fusion.base import FUSIONS, Fusion, token_seq
from mmauto.layers import ClsToken, FirstToken, PositionEmbedding, PrependOnes, joint_mask, transformer_block


@FUSIONS.register("transformer")
class TransformerFusion(Fusion):
    attention = True
    tokens = True

    def build(self, hp, encoded, width, dropout):
        depth = self.depth(hp, (1, 2, 3))
        heads = self.heads(hp, width)
        seqs = [PositionEmbedding(name=f"tfuse_{n}_pos")(token_seq(e, f"tfuse_{n}")) for n, e in encoded.items()]
        x = seqs[0] if len(seqs) == 1 else layers.Concatenate(axis=1, name="tfuse_tokens")(seqs)
        mask = joint_mask([(t, e.mask) for t, e in zip(seqs, encoded.values())], "tfuse")
        if mask is not None:
            mask = PrependOnes(1, name="tfuse_cls_mask")(mask)
        x = ClsToken(name="tfuse_cls")(x)
        for i in range(depth):
            x = transformer_block(x, heads, width, dropout, f"tfuse_block{i}", mask=mask)
        x = layers.LayerNormalization(name="tfuse_ln")(x)
        return FirstToken(name="tfuse_out")(x)
