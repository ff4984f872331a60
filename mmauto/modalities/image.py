"""Images: a column of file paths (JPEG, PNG, BMP, GIF); served as encoded bytes."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import field_validator

from mmauto.config.schema import Strict
from mmauto.modalities.base import MODALITIES, Modality, RowProblems, check_media, decode_problems, resolve_path

# What tf.io.decode_image reads, in-graph, in TF Serving as well.
_FORMATS = {"JPEG", "PNG", "BMP", "GIF", "MPO"}


def _probe_image(path: str):
    """Large images are fine (they are resized in the graph): Pillow's DecompressionBombWarning
    is silenced; beyond its hard bound (2 x MAX_IMAGE_PIXELS, about 179 million pixels) the
    image is an "image too large" row."""
    import warnings

    from PIL import Image as PILImage

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)
            with PILImage.open(path) as im:
                fmt = im.format
                im.verify()
    except PILImage.DecompressionBombError as exc:
        found = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{int(found.group(1)):,} pixels" if found else "too many pixels"
        return "image too large", f"{path} has {size}; the limit is {2 * PILImage.MAX_IMAGE_PIXELS:,}"
    except Exception as exc:  # PIL raises many kinds for broken files
        return "corrupt image", f"{path}: {type(exc).__name__}"
    if fmt not in _FORMATS:
        return "unsupported image format", f"{path} is {fmt} (JPEG, PNG, BMP, GIF)"
    return None


class ImageOptions(Strict):
    column: str
    size: list[int] = [128, 128]
    channels: Literal[1, 3] = 3

    @field_validator("size", mode="before")
    @classmethod
    def _size(cls, v):
        if not isinstance(v, (list, tuple)) or len(v) != 2:
            raise ValueError(f"expected [height, width], got {list(v) if isinstance(v, (list, tuple)) else v!r}")
        if not all(isinstance(x, int) and not isinstance(x, bool) and 8 <= x <= 4096 for x in v):
            raise ValueError(f"expected two whole numbers from 8 to 4096, got {list(v)}")
        return list(v)


@MODALITIES.register("image")
class Image(Modality):
    Options = ImageOptions
    default_encoders = ("cnn",)
    augments = True

    def check(self, opts, frame, root: Path) -> RowProblems:
        decoder = ImageDecoder("", tuple(opts.size), opts.channels)
        return check_media(frame[opts.column].tolist(), root, _probe_image,
                           decode_check=lambda paths: decode_problems(paths, decoder.decode_one, "corrupt image"))

    def raw_values(self, input_name, opts, frame, root):
        return {input_name: np.array([resolve_path(v, root) for v in frame[opts.column].tolist()], dtype=object)}

    def serving_values(self, input_name, opts, frame, root):
        paths = self.raw_values(input_name, opts, frame, root)[input_name]
        return {input_name: np.array([Path(p).read_bytes() if p else b"" for p in paths], dtype=object)}

    def serving_spec(self, input_name, opts):
        return {input_name: ((None,), "string")}

    def load(self, input_name, opts, raw):
        import tensorflow as tf

        path = raw[input_name]
        raw = dict(raw)
        raw[input_name] = tf.cond(tf.strings.length(path) > 0, lambda: tf.io.read_file(path), lambda: tf.constant(""))
        return raw

    def make_decoder(self, input_name, opts, state):
        return ImageDecoder(input_name, tuple(opts.size), opts.channels)

    def feature_spec(self, opts, state):
        return {"image": ((*opts.size, opts.channels), "float32")}

    def augment(self, opts, feats, seed):
        """Shifted by up to a tenth of each side, and in half the images a rectangle of up to
        half of each side erased: no flips or colour changes, which change what a digit or a
        letter says."""
        from mmauto.modalities import _augment as aug

        return {"image": aug.shift_and_erase(feats["image"], seed)}

    def example(self, input_name, opts):
        return {input_name: {"b64": "<base64 of a JPEG or PNG file>"}}


class ImageDecoder:
    """Encoded bytes -> float32 [N, H, W, C] in [0, 255]; empty bytes are a missing image."""

    def __init__(self, input_name, size, channels):
        self.input_name, self.size, self.channels = input_name, size, channels

    def decode_one(self, data):
        """One encoded image -> float32 [H, W, C]; empty bytes give zeros."""
        import tensorflow as tf

        h, w = self.size

        def decode():
            img = tf.io.decode_image(data, channels=self.channels, expand_animations=False)
            img = tf.image.resize(tf.cast(img, tf.float32), (h, w), antialias=True)
            return tf.clip_by_value(img, 0.0, 255.0)

        return tf.cond(tf.strings.length(data) > 0, decode, lambda: tf.zeros((h, w, self.channels), tf.float32))

    def __call__(self, raw):
        import tensorflow as tf

        h, w = self.size
        data = raw[self.input_name]
        images = tf.map_fn(self.decode_one, data, fn_output_signature=tf.TensorSpec((h, w, self.channels), tf.float32))
        present = tf.cast(tf.strings.length(data) > 0, tf.float32)
        return {"image": images}, present
