"""Zero-shot classification (`task: zero_shot`): the classes are named in the manifest, not
learned. The model's output is already the softmax over the classes (CLIP-style similarity of
the image to each class prompt, times the preset's logit scale), so the head serves, writes
columns and scores exactly as the multiclass head does; nothing is trained or calibrated."""

from __future__ import annotations

from mmauto.heads.base import HEADS
from mmauto.heads.classification import MulticlassHead


@HEADS.register("zero_shot")
class ZeroShotHead(MulticlassHead):
    """Served `probabilities` (N, C) and `label`; any number of classes from two up."""

    @classmethod
    def accepts(cls, task, classes):
        return task == "zero_shot"

    def calibrate(self, y, targets, train):
        return None  # no validation split is trained on; the preset's logit scale is kept

    def card(self):
        return {**super().card(), "zero_shot": True}
