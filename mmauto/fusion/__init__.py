"""Fusion modules: one file each, registered by name."""

from mmauto.fusion.base import FUSIONS, Fusion

__all__ = ["FUSIONS", "Fusion"]
