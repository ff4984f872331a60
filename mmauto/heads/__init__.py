"""Task heads: one class per task, registered by name (see base.py for the contract)."""

from mmauto.heads.base import HEADS, Head, head_for, objective_direction

__all__ = ["HEADS", "Head", "head_for", "objective_direction"]
