"""Any keras-hub backbone, by preset name or local preset folder, for images and text.

Images go through the preset's own ImageConverter (resize, scale, offset) inside the model;
text goes through the preset's tokenizer in tf.data and in the exported graph (the SavedModel
then needs the tensorflow-text ops, which TF Serving ships).
"""

from __future__ import annotations

import hashlib
import os

from keras import layers, ops

from mmauto.encoders.base import ENCODERS, Encoded, Encoder
from mmauto.errors import PresetError
from mmauto.layers import FirstToken, MaskedMean, TokenMask


def load(kind: str, preset: str, key: str, **kwargs):
    """`keras_hub.<kind>.from_preset(preset)` with user-facing errors."""
    import keras_hub

    owner = {"backbone": keras_hub.models.Backbone, "tokenizer": keras_hub.models.Tokenizer,
             "image_converter": keras_hub.layers.ImageConverter}[kind]
    try:
        return owner.from_preset(preset, **kwargs)
    except OSError as exc:  # requests' ConnectionError is an OSError
        if os.path.isdir(preset):
            raise PresetError(f"{key}: cannot read the preset folder {preset}: {exc}") from None
        raise PresetError(
            f"{key}: '{preset}' must be downloaded and this machine is offline; set KAGGLEHUB_CACHE "
            "to a cache that holds it, or give a local preset directory"
        ) from None
    except ValueError as exc:
        msg = str(exc)
        if "Unknown preset identifier" in msg:
            raise PresetError(f"{key}: '{preset}' is neither a keras-hub preset name nor a preset folder") from None
        if "has no config.json" in msg:
            raise PresetError(f"{key}: {preset} is not a keras-hub preset folder (no config.json)") from None
        if "Unable to find a subclass" in msg:
            raise PresetError(f"{key}: preset '{preset}' has no {kind.replace('_', ' ')}; is it the right modality?") from None
        raise


def _set_trainable(backbone, trainable):
    """`false`: frozen; `true`: all; N: only the last N layers that hold weights."""
    if trainable is None or trainable is False:
        backbone.trainable = False
    elif trainable is True:
        backbone.trainable = True
    else:
        backbone.trainable = True
        weighted = [layer for layer in backbone.layers if layer.weights]
        for layer in weighted[: max(0, len(weighted) - int(trainable))]:
            layer.trainable = False


def _pool(out, scope, mask=None):
    """Backbone output -> (pooled, tokens) for CNN maps, token sequences and dict outputs."""
    if isinstance(out, dict):
        seq = out.get("sequence_output")
        pooled = out.get("pooled_output")
        if pooled is None and seq is not None:
            if mask is not None:
                pooled = MaskedMean(name=f"{scope}_meanpool")(seq, mask)
            else:
                pooled = layers.GlobalAveragePooling1D(name=f"{scope}_meanpool")(seq)
        return pooled, seq
    if len(out.shape) == 4:
        tokens = layers.Reshape((-1, out.shape[-1]), name=f"{scope}_tok")(out)
        return layers.GlobalAveragePooling2D(name=f"{scope}_gap")(out), tokens
    if len(out.shape) == 3:
        return FirstToken(name=f"{scope}_cls")(out), out
    return out, None


@ENCODERS.register("keras_hub")
class KerasHubEncoder(Encoder):
    """A keras-hub preset backbone; `trainable: false | true | N` (the last N weighted layers)."""

    modalities = ("image", "text")

    @property
    def key(self):
        return f"inputs.{self.spec.name}.encoder.preset"

    def prep_key(self):
        if self.spec.modality != "text":
            return None
        return "hub_" + hashlib.sha1(self.spec.encoder.preset.encode()).hexdigest()[:8]

    # --- text preprocessing ------------------------------------------------------------------
    def fit_prep(self, raw_train):
        # Fail before any trial starts, with one clear line, when the preset cannot be had.
        load("tokenizer" if self.spec.modality == "text" else "backbone", self.spec.encoder.preset, self.key)
        return {"preset": self.spec.encoder.preset}

    def make_prep(self, state):
        return HubTextPrep(load("tokenizer", state["preset"], self.key), self.options.max_length)

    def prep_spec(self, state):
        n = self.options.max_length
        return {"token_ids": ((n,), "int32"), "padding_mask": ((n,), "int32"), "segment_ids": ((n,), "int32")}

    # --- model -------------------------------------------------------------------------------
    def is_frozen(self, hp):
        return self.spec.encoder.trainable in (None, False)

    def build(self, hp, inputs, scope):
        backbone = load("backbone", self.spec.encoder.preset, self.key)
        backbone.name = f"{scope}_backbone"  # two inputs may use one preset: scope by input
        _set_trainable(backbone, self.spec.encoder.trainable)
        if self.spec.modality == "image":
            try:
                converter = load("image_converter", self.spec.encoder.preset, self.key)
                converter.name = f"{scope}_converter"
                x = converter(inputs["image"])
            except (PresetError, FileNotFoundError):
                x = layers.Rescaling(1.0 / 255.0, name=f"{scope}_rescale")(inputs["image"])
            out = backbone(x, training=False) if not backbone.trainable else backbone(x)
        else:
            wanted = {getattr(t, "name", "") for t in backbone.inputs}
            feed = {"token_ids": inputs["token_ids"]}
            feed["padding_mask"] = ops.cast(inputs["padding_mask"], "bool")
            if not wanted or "segment_ids" in wanted:
                feed["segment_ids"] = inputs["segment_ids"]
            feed = {k: v for k, v in feed.items() if not wanted or k in wanted}
            out = backbone(feed, training=False) if not backbone.trainable else backbone(feed)
            mask = TokenMask(name=f"{scope}_mask")(inputs["padding_mask"])
            pooled, tokens = _pool(out, scope, mask)
            return Encoded(pooled, tokens, mask if tokens is not None and tokens.shape[1] == mask.shape[1] else None)
        pooled, tokens = _pool(out, scope)
        return Encoded(pooled, tokens)


class HubTextPrep:
    """strings -> token_ids, padding_mask, segment_ids with the preset's tokenizer; long texts are
    cut with truncate="waterfall" (the round-robin trim op is missing from TF Serving images)."""

    def __init__(self, tokenizer, length: int):
        import keras_hub

        self.tokenizer = tokenizer
        start = getattr(tokenizer, "start_token_id", None)
        end = getattr(tokenizer, "end_token_id", None)
        pad = getattr(tokenizer, "pad_token_id", None) or 0
        self.packer = keras_hub.layers.MultiSegmentPacker(
            sequence_length=length, start_value=start, end_value=end, pad_value=pad, truncate="waterfall"
        )
        self.pad = pad

    def __call__(self, decoded):
        import tensorflow as tf

        ids, segments = self.packer(self.tokenizer(decoded["text"]))
        ids = tf.cast(ids, tf.int32)
        return {"token_ids": ids, "padding_mask": tf.cast(ids != self.pad, tf.int32), "segment_ids": tf.cast(segments, tf.int32)}
