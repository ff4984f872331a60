"""Gated fusion: learned per-sample, per-modality gates weigh each input's transformed vector."""

from keras import layers

from mmauto.fusion.base import FUSIONS, Fusion
from mmauto.layers import TakeColumns, mlp


@FUSIONS.register("gated")
class GatedFusion(Fusion):
    def build(self, hp, encoded, width, dropout):
        depth = self.depth(hp)
        names = list(encoded)
        pooled = [encoded[n].pooled for n in names]
        both = pooled[0] if len(pooled) == 1 else layers.Concatenate(name="gated_all")(pooled)
        gates = layers.Dense(len(names), activation="softmax", name="gated_gates")(both)
        parts = []
        for i, n in enumerate(names):
            h = layers.Dense(width, activation="tanh", name=f"gated_{n}_h")(encoded[n].pooled)
            g = TakeColumns(i, i + 1, name=f"gated_{n}_g")(gates)
            parts.append(layers.Multiply(name=f"gated_{n}_mul")([h, g]))
        x = parts[0] if len(parts) == 1 else layers.Add(name="gated_sum")(parts)
        return mlp(x, width, depth, dropout, "gated_mlp")
