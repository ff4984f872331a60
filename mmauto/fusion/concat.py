"""Concatenate the pooled vectors, then an MLP of `depth` layers."""

from keras import layers

from mmauto.fusion.base import FUSIONS, Fusion
from mmauto.layers import mlp


@FUSIONS.register("concat")
class ConcatFusion(Fusion):
    def build(self, hp, encoded, width, dropout):
        depth = self.depth(hp)
        pooled = [e.pooled for e in encoded.values()]
        x = pooled[0] if len(pooled) == 1 else layers.Concatenate(name="concat_fusion")(pooled)
        return mlp(x, width, depth, dropout, "concat_mlp")
