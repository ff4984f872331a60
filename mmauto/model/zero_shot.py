"""The zero-shot classifier (`task: zero_shot`): a CLIP or SigLIP preset's image tower (or, for
a text input, its text tower) against its text tower's embeddings of one prompt per class.

The class prompts are encoded once, here, with the preset's own preprocessor (tokenizer and
packer) and text tower; their L2-normalised embeddings and the preset's logit scale become
constant (non-trainable) weights of a small Keras model:

    image [0, 255] -> the preset's ImageConverter -> image tower -> L2-normalise
        -> exp(logit_scale) * (embedding @ class_embeddings^T) -> softmax

so the exported graph of an image input needs no tokenizer (a text input's tokenises its rows
with the preset's preprocessor, in the model, and needs tensorflow-text). SigLIP's logit bias is the same for every class and
drops out of the softmax. A missing image (empty bytes) or text gets equal probabilities.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from keras import layers, ops

from mmauto.data.keys import feature_key, present_key
from mmauto.encoders.keras_hub import load
from mmauto.errors import PresetError


class ZeroShotLogits(layers.Layer):
    """(image embedding [N, D], present [N]) -> softmax over the classes, float32.

    `class_embeddings` [C, D] (L2-normalised) and `scale` (exp of the logit scale) are
    constant weights set from the text tower; a row with present == 0 gets zero logits."""

    def __init__(self, class_embeddings: np.ndarray, scale: float, **kwargs):
        super().__init__(dtype="float32", **kwargs)
        self._init = (np.asarray(class_embeddings, "float32"), float(scale))

    def build(self, *shapes):
        emb, scale = self._init
        self.class_embeddings = self.add_weight(shape=emb.shape, initializer="zeros", trainable=False, name="class_embeddings")
        self.scale = self.add_weight(shape=(), initializer="zeros", trainable=False, name="logit_scale")
        self.class_embeddings.assign(emb)
        self.scale.assign(scale)

    def call(self, embedding, present):
        x = ops.cast(embedding, "float32")
        x = x / ops.maximum(ops.sqrt(ops.sum(x * x, axis=-1, keepdims=True)), 1e-12)
        logits = self.scale * ops.matmul(x, ops.transpose(self.class_embeddings))
        return ops.softmax(logits * ops.expand_dims(ops.cast(present, "float32"), -1), axis=-1)


@dataclasses.dataclass
class ZeroShotModel:
    """What the builder returns: the classifier, its embedding sub-model (serving_embed), the
    model's input keys and facts for the model card."""

    model: object
    embedder: object
    input_keys: list
    info: dict


def _family(backbone, key: str, preset: str) -> str:
    import keras_hub

    if isinstance(backbone, keras_hub.models.CLIPBackbone):
        return "clip"
    if isinstance(backbone, keras_hub.models.SigLIPBackbone):
        return "siglip"
    raise PresetError(f"{key}: preset '{preset}' is a {type(backbone).__name__}; task zero_shot needs a CLIP or SigLIP "
                      "preset (an image and a text tower)")


def _preprocessor(family: str, preset: str, key: str, length):
    import keras_hub

    cls = {"clip": keras_hub.models.CLIPPreprocessor, "siglip": keras_hub.models.SigLIPPreprocessor}[family]
    try:
        pre = cls.from_preset(preset, **({"sequence_length": length} if length else {}))
    except (OSError, ValueError, FileNotFoundError) as exc:
        raise PresetError(f"{key}: cannot load the tokenizer of preset '{preset}' (the class prompts need it): {exc}") from None
    pre.image_converter = None  # prompts only
    return pre


def class_embeddings(backbone, family: str, preset: str, prompts: list[str], key: str) -> np.ndarray:
    """The prompts' text-tower embeddings, L2-normalised, [C, D] float32."""
    length = getattr(backbone.text_encoder, "max_sequence_length", None)
    pre = _preprocessor(family, preset, key, length)
    x = pre({"prompts": prompts, "images": None})
    emb = np.asarray(ops.convert_to_numpy(backbone.get_text_embeddings(x["token_ids"])), "float64")
    emb /= np.maximum(np.linalg.norm(emb, axis=-1, keepdims=True), 1e-12)
    return emb.astype("float32")


def logit_scale(backbone, family: str) -> float:
    head = backbone.clip_head if family == "clip" else backbone.siglip_head
    return float(np.exp(float(ops.convert_to_numpy(head.logit_scale))))


class PromptTokens(layers.Layer):
    """Strings [N] -> token ids [N, L] with the preset's own preprocessor (CLIP lowercases,
    SigLIP canonicalises), in the graph: text rows are tokenised as the class prompts were."""

    def __init__(self, preprocessor, length: int, **kwargs):
        super().__init__(trainable=False, **kwargs)
        self.preprocessor = preprocessor
        self.length = int(length)

    def call(self, texts):
        import tensorflow as tf

        return tf.cast(self.preprocessor({"prompts": texts, "images": None})["token_ids"], tf.int32)

    def compute_output_spec(self, texts):
        import keras

        return keras.KerasTensor((texts.shape[0], self.length), dtype="int32")


def build_zero_shot(prep) -> ZeroShotModel:
    """The zero-shot classifier of a `task: zero_shot` manifest's one input: an image (its
    image tower against the prompts) or a text (its text tower against the prompts)."""
    import keras

    m = prep.manifest
    (name, spec), = m.inputs.items()
    key = f"inputs.{name}.encoder.preset"
    preset = spec.encoder.preset
    backbone = load("backbone", preset, key)
    family = _family(backbone, key, preset)
    backbone.trainable = False
    prompts = m.zero_shot.prompts()
    classes_emb = class_embeddings(backbone, family, preset, prompts, key)
    scale = logit_scale(backbone, family)
    present = keras.Input((), name=present_key(name))
    info = {"family": family, "preset": preset, "classes": list(m.zero_shot.classes), "prompts": prompts,
            "logit_scale": scale, "embedding_dim": int(classes_emb.shape[1])}

    if spec.modality == "text":
        length = getattr(backbone.text_encoder, "max_sequence_length", None)
        xkey = feature_key(name, "text")
        x = keras.Input((), dtype="string", name=xkey)
        tokens = PromptTokens(_preprocessor(family, preset, key, length), length, name=f"{name}_tokens")(x)
        embedding = backbone.get_text_embeddings(tokens)
        info["sequence_length"] = length
    else:
        opts = spec.options
        xkey = feature_key(name, "image")
        x = keras.Input((*opts.size, opts.channels), name=xkey)
        try:
            converter = load("image_converter", preset, key)
        except (PresetError, FileNotFoundError):
            raise PresetError(f"{key}: preset '{preset}' has no image converter; a CLIP or SigLIP preset saves one") from None
        converter.name = f"{name}_converter"
        embedding = backbone.get_vision_embeddings(converter(x))
        info["image_size"] = list(getattr(converter, "image_size", None) or opts.size)
    probs = ZeroShotLogits(classes_emb, scale, name="zero_shot")(embedding, present)
    inputs = {xkey: x, present_key(name): present}
    model = keras.Model(inputs, probs, name="zero_shot_classifier")
    embedder = keras.Model(inputs, {f"embedding_{name}": embedding, "embedding": embedding}, name="embedding")
    return ZeroShotModel(model, embedder, list(inputs), info)
