"""Late fusion: one decision head per input; their logits are combined with learned weights
(by the hypermodel, which owns the head). Each input still passes a small MLP of `depth`."""

from mmauto.fusion.base import FUSIONS, Fusion
from mmauto.layers import mlp


@FUSIONS.register("late")
class LateFusion(Fusion):
    late = True

    def build(self, hp, encoded, width, dropout):
        depth = self.depth(hp, (1, 2))
        return {n: mlp(e.pooled, width, depth, dropout, f"late_{n}_mlp") for n, e in encoded.items()}
