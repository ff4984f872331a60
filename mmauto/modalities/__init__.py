"""Modalities: one module each (options schema, row checks, in-graph decoding)."""

from mmauto.modalities.base import MODALITIES, Modality, RowProblems

__all__ = ["MODALITIES", "Modality", "RowProblems"]
