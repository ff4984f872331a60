"""Late fusion: each input passes its own MLP of `depth`, with no mixing across inputs before
the head. The head's one linear layer over their concatenation is exactly a sum of one linear
decision per input (a block of its weights each), so the logits are the inputs' own decisions
added: late fusion, with no special case in the model builder."""

from keras import layers

from mmauto.fusion.base import FUSIONS, Fusion
from mmauto.layers import mlp


@FUSIONS.register("late")
class LateFusion(Fusion):
    def build(self, hp, encoded, width, dropout):
        depth = self.depth(hp, (1, 2))
        per = [mlp(e.pooled, width, depth, dropout, f"late_{n}_mlp") for n, e in encoded.items()]
        return per[0] if len(per) == 1 else layers.Concatenate(name="late_fusion")(per)
