"""`mmauto demo`: a small, offline, deterministic multimodal data set and its manifest.

Every row has an image, an audio clip, a review and a few table columns. Each of the four
carries one hidden, independent bit, and the label (low/mid/high) is the sum of the bits, so a
model only gets it right by reading all four inputs together; any single modality alone stays
near 50%. The README's first command, the tests and the benchmarks all use this data, so it
must stay cheap to make (a few hundred rows in well under a second) and need no network.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
from PIL import Image, ImageDraw

from mmauto.errors import DataError

MIN_ROWS = 20
IMAGE_SIZE = 32
SAMPLE_RATE = 16000
CLIP_SECONDS = 0.5

POSITIVE = ("great", "excellent", "love", "perfect", "amazing", "wonderful", "happy", "superb")
NEGATIVE = ("poor", "broken", "awful", "terrible", "hate", "useless", "disappointing", "cheap")
NEUTRAL = ("the", "this", "product", "it", "was", "item", "arrived", "and", "really", "quite",
           "box", "today", "my", "order", "colour", "size", "after", "week", "very", "so")
COLOURS = ("red", "green", "blue", "yellow")

MANIFEST = """\
# mmauto demo data: the label (low/mid/high) depends on all four inputs together.
name: demo
task: classification
data:
  train: train.csv
  split: {validation: 0.2, test: 0.2, seed: 42, stratify: true}
target: label
inputs:
  photo:  {modality: image, column: image, size: [32, 32], channels: 3}
  review: {modality: text, column: review, max_length: 16}
  voice:  {modality: audio, column: audio, sample_rate: 16000, max_seconds: 0.5}
  meta:   {modality: tabular, numeric: [price, weight], categorical: [colour, store]}
search:
  tuner: random
  max_trials: 4
  time_budget: 4m
train:
  epochs: 30
  early_stopping: 6
"""


def _image(rng: np.random.Generator, bit: int) -> Image.Image:
    # Shape and hue both differ between the classes so a tiny CNN learns it in a few epochs;
    # position, size, colour jitter and pixel noise keep it from being a lookup.
    base = rng.integers(60, 140, size=3)
    img = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), tuple(int(v) for v in base))
    half = int(rng.integers(5, 10))
    cx, cy = (int(v) for v in rng.integers(half + 1, IMAGE_SIZE - half - 1, size=2))
    box = (cx - half, cy - half, cx + half, cy + half)
    jitter = rng.integers(-30, 31, size=3)
    if bit:
        colour = np.array([210, 50, 40]) + jitter
        ImageDraw.Draw(img).rectangle(box, fill=tuple(int(v) for v in np.clip(colour, 0, 255)))
    else:
        colour = np.array([40, 70, 210]) + jitter
        ImageDraw.Draw(img).ellipse(box, fill=tuple(int(v) for v in np.clip(colour, 0, 255)))
    pixels = np.asarray(img, dtype=np.float32) + rng.normal(0.0, 18.0, (IMAGE_SIZE, IMAGE_SIZE, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def _clip(rng: np.random.Generator, bit: int) -> np.ndarray:
    freq = rng.uniform(1500, 2000) if bit else rng.uniform(300, 500)
    amplitude = rng.uniform(0.3, 0.8)
    t = np.arange(int(SAMPLE_RATE * CLIP_SECONDS)) / SAMPLE_RATE
    wave = amplitude * np.sin(2 * np.pi * freq * t + rng.uniform(0, 2 * np.pi))
    wave += rng.normal(0.0, 0.03, t.shape)
    # Clipping keeps the PCM_16 conversion from wrapping around on a loud, noisy peak.
    return np.clip(wave, -1.0, 1.0)


def _review(rng: np.random.Generator, bit: int) -> str:
    # One stray word of the other polarity now and then, so single keywords are not decisive
    # but the counts still are.
    own, other = (POSITIVE, NEGATIVE) if bit else (NEGATIVE, POSITIVE)
    n = int(rng.integers(5, 13))
    words = list(rng.choice(own, size=int(rng.integers(1, 4))))
    if len(words) > 1 and rng.random() < 0.3:
        words.append(rng.choice(other))
    words += list(rng.choice(NEUTRAL, size=max(n - len(words), 0)))
    rng.shuffle(words)
    return " ".join(str(w) for w in words)


def _label(total: int) -> str:
    return "low" if total <= 1 else "mid" if total == 2 else "high"


def write_demo(out: Path, rows: int = 400, seed: int = 0, missing: float = 0.0, redundant: bool = False) -> Path:
    """Write DIR/train.csv, DIR/images/*.png, DIR/audio/*.wav and DIR/manifest.yaml.

    Returns the manifest path. `missing` is the fraction of rows that lose one input cell.
    `redundant`: every input carries the same bit and the label (yes/no) is that bit, so any
    one input suffices: the data set for missing-modality robustness.
    """
    if rows < MIN_ROWS:
        raise DataError(f"--rows: at least {MIN_ROWS} rows are needed, got {rows}")
    if not 0.0 <= missing < 1.0:
        raise DataError(f"--missing: must be a fraction in [0, 1), got {missing}")
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "audio").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)

    # One bit per modality (image, audio, text, tabular), drawn first so the bits do not
    # depend on how many random numbers the per-row content uses.
    bits = rng.integers(0, 2, size=(rows, 4))
    if redundant:
        bits = np.repeat(bits[:, :1], 4, axis=1)
    records = []
    for i, (b_img, b_aud, b_txt, b_tab) in enumerate(bits.tolist()):
        image, audio = f"images/img_{i:05d}.png", f"audio/clip_{i:05d}.wav"
        _image(rng, b_img).save(out / image)
        sf.write(out / audio, _clip(rng, b_aud), SAMPLE_RATE, subtype="PCM_16")
        price = rng.normal(80.0, 12.0) if b_tab else rng.normal(20.0, 6.0)
        # A second, weaker tabular signal: the store follows the price bit 85% of the time.
        leaning = b_tab if rng.random() < 0.85 else 1 - b_tab
        store = rng.choice(("north", "east") if leaning else ("south", "west"))
        records.append({
            "id": i,
            "image": image,
            "audio": audio,
            "review": _review(rng, b_txt),
            "price": round(max(float(price), 1.0), 2),
            "weight": round(float(rng.uniform(0.2, 5.0)), 3),
            "colour": str(rng.choice(COLOURS)),
            "store": str(store),
            "label": ("yes" if b_img else "no") if redundant else _label(b_img + b_aud + b_txt + b_tab),
        })
    table = pd.DataFrame.from_records(records)

    # Blank one cell per chosen row, never the label, so every row still trains and the
    # missing-modality paths get exercised; the media files stay so the folder is the same.
    n_missing = int(round(missing * rows))
    if n_missing:
        chosen = rng.choice(rows, size=n_missing, replace=False)
        columns = rng.choice(["image", "audio", "review", "price"], size=n_missing)
        table = table.astype({"image": object, "audio": object, "review": object})
        for row, column in zip(chosen.tolist(), columns.tolist()):
            table.at[row, column] = np.nan if column == "price" else ""

    table.to_csv(out / "train.csv", index=False)
    manifest = out / "manifest.yaml"
    text = MANIFEST
    if redundant:
        text = text.replace("the label (low/mid/high) depends on all four inputs together",
                            "every input alone tells the label (yes/no)")
    manifest.write_text(text, encoding="utf-8")
    return manifest
