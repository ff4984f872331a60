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
