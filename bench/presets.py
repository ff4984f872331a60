"""A keras-hub image backbone preset built in code (random weights; no download), saved as a
local preset folder the way users get one. Small enough for a 2-core machine, big enough that
the backbone's forward pass dominates an end-to-end trial, as a real pretrained one does."""

from __future__ import annotations

from pathlib import Path


def small_vit(folder: Path, size: int = 64, patch: int = 8, layers: int = 4, hidden: int = 128, mlp: int = 256,
              heads: int = 4) -> dict:
    import keras_hub

    folder = Path(folder)
    bb = keras_hub.models.ViTBackbone(image_shape=(size, size, 3), patch_size=patch, num_layers=layers,
                                      num_heads=heads, hidden_dim=hidden, mlp_dim=mlp)
    conv = keras_hub.layers.ViTImageConverter(image_size=(size, size), scale=1 / 127.5, offset=-1.0)
    bb.save_to_preset(str(folder))
    conv.save_to_preset(str(folder))
    return {"folder": str(folder), "kind": "ViTBackbone", "image_size": size, "patch_size": patch, "tokens": (size // patch) ** 2 + 1,
            "num_layers": layers, "hidden_dim": hidden, "mlp_dim": mlp, "num_heads": heads, "params": int(bb.count_params())}
