"""Tiny keras-hub presets built in code and saved the way users get them: a local preset
folder, or a KAGGLEHUB_CACHE entry that a preset *name* resolves to offline."""

import pathlib
import shutil

WORDS = ["great", "excellent", "love", "good", "poor", "broken", "awful", "bad", "the", "a", "it", "is", "was",
         "product", "price", "quality", "very", "not", "and", "this"]


def tiny_vit(folder, size=32):
    import keras_hub

    bb = keras_hub.models.ViTBackbone(image_shape=(size, size, 3), patch_size=8, num_layers=1, num_heads=2,
                                      hidden_dim=16, mlp_dim=32)
    conv = keras_hub.layers.ViTImageConverter(image_size=(size, size), scale=1 / 127.5, offset=-1.0)
    bb.save_to_preset(str(folder))
    conv.save_to_preset(str(folder))
    return folder


def tiny_bert(folder):
    import keras_hub

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS
    tok = keras_hub.models.BertTokenizer(vocabulary=vocab, lowercase=True)
    bb = keras_hub.models.BertBackbone(vocabulary_size=len(vocab), num_layers=1, num_heads=2, hidden_dim=8,
                                       intermediate_dim=16, max_sequence_length=32)
    bb.save_to_preset(str(folder))
    tok.save_to_preset(str(folder))
    return folder


def install_in_kagglehub_cache(preset_dir, handle, cache_root):
    """Lay a preset folder out as kagglehub's cache holds a downloaded versioned handle."""
    owner, model, framework, variation, version = handle.removeprefix("kaggle://").split("/")
    base = pathlib.Path(cache_root, "models", owner, model, framework, variation)
    dst = base / version
    shutil.copytree(preset_dir, dst, dirs_exist_ok=True)
    for f in dst.rglob("*"):
        if f.is_file():
            mark = base / ".complete" / version / (f.relative_to(dst).as_posix() + ".complete")
            mark.parent.mkdir(parents=True, exist_ok=True)
            mark.touch()
    return cache_root


CLIP_WORDS = ["a", "photo", "of", "the", "cat", "dog", "bird", "red", "blue", "green", "thing"]


def _bpe(words):
    """A byte-level BPE vocabulary and merges in which each word (and ".") is one token."""
    vocab, merges = {}, []
    for c in sorted(set("".join(words)) | {"."}):
        vocab.setdefault(c, len(vocab))
        vocab.setdefault(c + "</w>", len(vocab))
    for w in words:
        cur = w[0]
        for c in w[1:-1]:
            merges.append(f"{cur} {c}")
            cur += c
            vocab.setdefault(cur, len(vocab))
        if len(w) > 1:
            merges.append(f"{cur} {w[-1]}</w>")
            vocab.setdefault(w + "</w>", len(vocab))
    # CLIP pools the text at the end token, found as the largest id: the specials come last.
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return vocab, list(dict.fromkeys(merges))


def tiny_clip(folder, size=32, seed=0):
    """A CLIP preset (backbone, BPE tokenizer, image converter) with random weights."""
    import keras
    import keras_hub

    keras.utils.set_random_seed(seed)
    vocab, merges = _bpe(CLIP_WORDS)
    tok = keras_hub.models.CLIPTokenizer(vocabulary=vocab, merges=merges)
    vision = keras_hub.models.CLIPVisionEncoder(patch_size=8, hidden_dim=16, num_layers=1, num_heads=2, intermediate_dim=32,
                                                image_shape=(size, size, 3))
    text = keras_hub.models.CLIPTextEncoder(vocabulary_size=len(vocab), embedding_dim=16, hidden_dim=16, num_layers=1,
                                            num_heads=2, intermediate_dim=32, max_sequence_length=16)
    bb = keras_hub.models.CLIPBackbone(vision, text, projection_dim=8)
    bb.get_layer("clip_head").logit_scale.assign(2.0)  # exp(2) = 7.4: probabilities well away from uniform
    conv = keras_hub.layers.CLIPImageConverter(image_size=(size, size), scale=1 / 127.5, offset=-1.0)
    bb.save_to_preset(str(folder))
    tok.save_to_preset(str(folder))
    conv.save_to_preset(str(folder))
    return folder


def tiny_siglip(folder, size=32, seed=0):
    """A SigLIP preset (backbone, SentencePiece tokenizer trained here, image converter) with
    random weights, a logit scale of exp(2) and a logit bias (which a softmax cancels)."""
    import io

    import keras
    import keras_hub
    import sentencepiece

    keras.utils.set_random_seed(seed)
    proto = io.BytesIO()
    sentences = ["the red thing", "the blue thing", "the green thing", "a photo of a cat", "a photo of a dog"]
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences), model_writer=proto, vocab_size=14, model_type="WORD", pad_id=0, bos_id=1,
        eos_id=2, unk_id=3, pad_piece="<pad>", bos_piece="<s>", eos_piece="</s>", unk_piece="<unk>", minloglevel=2)
    tok = keras_hub.models.SigLIPTokenizer(proto=proto.getvalue())
    vision = keras_hub.models.SigLIPVisionEncoder(patch_size=8, hidden_dim=16, num_layers=1, num_heads=2, intermediate_dim=32,
                                                  image_shape=(size, size, 3))
    text = keras_hub.models.SigLIPTextEncoder(vocabulary_size=14, embedding_dim=16, hidden_dim=16, num_layers=1, num_heads=2,
                                              intermediate_dim=32, max_sequence_length=16)
    bb = keras_hub.models.SigLIPBackbone(vision, text)
    bb.get_layer("siglip_head").logit_scale.assign(2.0)
    bb.get_layer("siglip_head").logit_bias.assign(-3.0)
    conv = keras_hub.layers.SigLIPImageConverter(image_size=(size, size), scale=1 / 127.5, offset=-1.0)
    bb.save_to_preset(str(folder))
    tok.save_to_preset(str(folder))
    conv.save_to_preset(str(folder))
    return folder
