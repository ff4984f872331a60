"""Encoders: one module each, registered by name; every one returns `Encoded(pooled, tokens)`."""

from mmauto.encoders.base import ENCODERS, Encoded, Encoder

__all__ = ["ENCODERS", "Encoded", "Encoder"]
