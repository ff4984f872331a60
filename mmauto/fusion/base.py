"""The fusion contract.

A fusion receives every input's `Encoded(pooled (B, D), tokens (B, T, D) or None)`, already
projected to one width D and with missing modalities replaced by their learned embeddings, and
returns one fused vector. Inputs without tokens take part as a single token.
"""

from __future__ import annotations

import abc
from typing import ClassVar

from keras import layers

from mmauto.hp import pick
from mmauto.registry import FUSIONS as FUSIONS  # the components register here


class Fusion(abc.ABC):
    """Base class; subclasses register with `@FUSIONS.register(name)`."""

    name: ClassVar[str]
    min_inputs: ClassVar[int] = 1
    attention: ClassVar[bool] = False  # searches `heads`
    tokens: ClassVar[bool] = False  # reads token sequences (else pooled vectors only)

    def __init__(self, space):
        self.space = space  # the manifest's search.space (pinned values or choices)

    def depth(self, hp, choices=(1, 2, 3)):
        return pick(hp, f"{self.name}/depth", self.space.depth, choices, default=1)

    def heads(self, hp, width):
        valid = [h for h in (1, 2, 4, 8) if width % h == 0]
        return pick(hp, f"{self.name}/heads", self.space.heads, valid, default=min(2, valid[-1]))

    @abc.abstractmethod
    def build(self, hp, encoded: dict, width: int, dropout: float):
        ...


def token_seq(enc, name):
    """The input's tokens, or its pooled vector as one token."""
    if enc.tokens is not None:
        return enc.tokens
    return layers.Reshape((1, enc.pooled.shape[-1]), name=f"{name}_as_token")(enc.pooled)
