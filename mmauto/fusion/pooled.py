"""Element-wise sum, max or mean of the pooled vectors (already at one width), then an MLP."""

from keras import layers

from mmauto.fusion.base import FUSIONS, Fusion
from mmauto.layers import mlp


class _Elementwise(Fusion):
    op = None

    def build(self, hp, encoded, width, dropout):
        depth = self.depth(hp)
        pooled = [e.pooled for e in encoded.values()]
        x = pooled[0] if len(pooled) == 1 else self.op(name=f"{self.name}_fusion")(pooled)
        return mlp(x, width, depth, dropout, f"{self.name}_mlp")


@FUSIONS.register("sum")
class SumFusion(_Elementwise):
    op = layers.Add


@FUSIONS.register("max")
class MaxFusion(_Elementwise):
    op = layers.Maximum


@FUSIONS.register("mean")
class MeanFusion(_Elementwise):
    op = layers.Average
