"""The names of the model's feature inputs, scoped by the user's input name.

Every key the decoders, the feature cache, the model and the served graph exchange is made
here, so the `<input>__<feature>` scheme is written once.
"""

from __future__ import annotations

from typing import Optional

SEP = "__"


def present_key(name: str) -> str:
    """1.0 where the input is present in the row, 0.0 where it is missing."""
    return f"{name}{SEP}present"


def feature_key(name: str, feat: str, prep: Optional[str] = None) -> str:
    """A decoded feature of the input, optionally of one encoder's own preprocessing."""
    return f"{name}{SEP}{prep}{SEP}{feat}" if prep else f"{name}{SEP}{feat}"


def split_feature_key(key: str) -> tuple[str, str]:
    """`<input>__<rest>` -> (input, rest)."""
    name, rest = key.split(SEP, 1)
    return name, rest


def pooled_key(name: str) -> str:
    """A frozen encoder's cached pooled vector."""
    return f"{name}{SEP}cached_pooled"


def tokens_key(name: str) -> str:
    """A frozen encoder's cached token sequence."""
    return f"{name}{SEP}cached_tokens"


def mask_key(name: str) -> str:
    """A frozen encoder's cached token mask."""
    return f"{name}{SEP}cached_mask"
