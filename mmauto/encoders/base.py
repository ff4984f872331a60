"""The encoder contract.

An encoder turns one input's features into `Encoded(pooled (B, D), tokens (B, T, D) or None,
mask (B, T) or None)`, so every fusion works with every modality; `mask` is 0 at padded tokens
(text), which attention and pooling then ignore. Encoders that need their own preprocessing (a
vocabulary, a keras-hub tokenizer) fit it on the training split and run it in tf.data and in
the exported graph; the trained Keras model itself never sees strings.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any, ClassVar, Optional

from mmauto.registry import ENCODERS as ENCODERS  # the components register here


@dataclasses.dataclass
class Encoded:
    pooled: Any
    tokens: Optional[Any] = None
    mask: Optional[Any] = None


class Encoder(abc.ABC):
    """Base class. Subclasses register with `@ENCODERS.register(name)`.

    `prep` names the encoder's own preprocessing; encoders sharing a `prep` share its
    features (the text `cnn` and `transformer` both read `ids`). `None` means the encoder
    reads the modality's decoded features directly.
    """

    name: ClassVar[str]
    modalities: ClassVar[tuple[str, ...]] = ()
    prep: ClassVar[Optional[str]] = None
    def __init__(self, spec, modality_state: dict, prep_state: Optional[dict] = None):
        self.spec = spec  # the manifest's InputSpec
        self.options = spec.options
        self.modality_state = modality_state
        self.prep_state = prep_state or {}

    # --- preprocessing (only when `prep` is set) -----------------------------------------------
    def prep_key(self) -> Optional[str]:
        return self.prep

    def fit_prep(self, raw_train: dict) -> dict:
        """JSON-serialisable state fitted on the training split's raw values (numpy, keyed
        like the serving inputs)."""
        return {}

    def make_prep(self, state: dict):
        """A callable `decoded features (batched tensors) -> {feature: tensor}`."""
        raise TypeError(f"encoder '{self.name}' declares prep '{self.prep}' but builds none")

    def prep_spec(self, state: dict) -> dict[str, tuple[tuple, str]]:
        return {}

    # --- model ---------------------------------------------------------------------------------
    def inputs_needed(self, modality_spec: dict, prep_spec: dict) -> dict[str, tuple[tuple, str]]:
        """The features the Keras model reads: the prep's when there is one, else the modality's."""
        return prep_spec if self.prep_key() else modality_spec

    @abc.abstractmethod
    def build(self, hp, inputs: dict, scope: str) -> Encoded:
        ...

    def is_frozen(self, hp) -> bool:
        """True when no weight of this encoder trains in the trial (its outputs may be cached)."""
        return False


def setting(spec, key):
    """A pinned encoder option from the manifest (`encoder.width`), or None to search it."""
    return getattr(spec.encoder, key, None)
