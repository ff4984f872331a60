"""Text: a column of strings; served as tf.string. Tokenizing belongs to the encoder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydantic import Field

from mmauto.config.schema import Strict
from mmauto.modalities.base import MODALITIES, Modality, RowProblems, cell_is_missing


class TextOptions(Strict):
    column: str
    max_length: int = Field(128, ge=4, le=4096)
    vocab_size: int = Field(20000, ge=16, le=1_000_000)
    ngrams: int = Field(2, ge=1, le=4)


def _cells(frame, column) -> np.ndarray:
    return np.array(["" if cell_is_missing(v) else str(v).strip() for v in frame[column].tolist()], dtype=object)


@MODALITIES.register("text")
class Text(Modality):
    Options = TextOptions
    default_encoders = ("tfidf", "textcnn")

    def check(self, opts, frame, root: Path) -> RowProblems:
        return RowProblems(present=np.array([bool(v) for v in _cells(frame, opts.column)], dtype=bool))

    def raw_values(self, input_name, opts, frame, root):
        return {input_name: _cells(frame, opts.column)}

    def serving_spec(self, input_name, opts):
        return {input_name: ((None,), "string")}

    def make_decoder(self, input_name, opts, state):
        return TextDecoder(input_name)

    def feature_spec(self, opts, state):
        return {"text": ((), "string")}

    def example(self, input_name, opts):
        return {input_name: "a short text"}


class TextDecoder:
    def __init__(self, input_name):
        self.input_name = input_name

    def __call__(self, raw):
        import tensorflow as tf

        text = tf.strings.strip(raw[self.input_name])
        return {"text": text}, tf.cast(tf.strings.length(text) > 0, tf.float32)
