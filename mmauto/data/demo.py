"""`mmauto demo`: a small, offline, deterministic multimodal data set and its manifest.

Every row has an image, an audio clip, a review and a few table columns. Each of the four
carries one hidden, independent bit, and the label (low/mid/high) is the sum of the bits, so a
model only gets it right by reading all four inputs together; any single modality alone stays
near 50%. The README's first command, the tests and the benchmarks all use this data, so it
must stay cheap to make (a few hundred rows in well under a second) and need no network.

`modalities` picks the inputs among ALL_MODALITIES: video clips (MP4, a square crossing the
frame one way or the other), sensor series (.npy, a fast or slow wave) and embeddings (a list
column, shifted along one direction) carry one bit each as well. The default four write
byte-for-byte what they always did.
"""

from __future__ import annotations

import re
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

DEFAULT_MODALITIES = ("image", "text", "audio", "tabular")
VIDEO_FRAMES, VIDEO_SIZE, VIDEO_FPS = 8, 16, 8
SERIES_LENGTH = 32
EMBED_DIM = 8
# Each modality's input in the manifest: (name, options).
INPUTS = {
    "image": ("photo", "{modality: image, column: image, size: [32, 32], channels: 3}"),
    "text": ("review", "{modality: text, column: review, max_length: 16}"),
    "audio": ("voice", "{modality: audio, column: audio, sample_rate: 16000, max_seconds: 0.5}"),
    "tabular": ("meta", "{modality: tabular, numeric: [price, weight], categorical: [colour, store]}"),
    "video": ("video", f"{{modality: video, column: video, frames: 4, size: [{VIDEO_SIZE}, {VIDEO_SIZE}]}}"),
    "timeseries": ("sensor", f"{{modality: timeseries, column: series, length: {SERIES_LENGTH}, channels: 2}}"),
    "embedding": ("vector", f"{{modality: embedding, column: embedding, dim: {EMBED_DIM}}}"),
}
# Every modality the demo can generate; the contract test checks it covers the registry.
ALL_MODALITIES = tuple(INPUTS)
# The cells `missing` may blank, in the order they were always drawn from.
BLANKABLE = (("image", "image"), ("audio", "audio"), ("text", "review"), ("tabular", "price"),
             ("video", "video"), ("timeseries", "series"), ("embedding", "embedding"))
NUMBERS = {3: "three", 4: "four", 5: "five", 6: "six", 7: "seven"}

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


def _label(total: int, inputs: int = 4) -> str:
    """low / mid / high: fewer, exactly, or more than half of the bits set (mid only for an
    even number of inputs)."""
    return "low" if 2 * total < inputs else "mid" if 2 * total == inputs else "high"


def _video(rng: np.random.Generator, bit: int) -> list[np.ndarray]:
    # A square crossing the clip: left to right in a warm colour, or right to left in a cool
    # one (motion and hue both tell the bit, as shape and hue do in the images).
    s = VIDEO_SIZE
    base = rng.integers(60, 140, size=3)
    jitter = rng.integers(-30, 31, size=3)
    colour = np.clip((np.array([210, 60, 40]) if bit else np.array([40, 80, 210])) + jitter, 0, 255)
    y = int(rng.integers(1, s - 6))
    frames = []
    for k in range(VIDEO_FRAMES):
        x = round(k * (s - 5) / (VIDEO_FRAMES - 1))
        x = x if bit else s - 5 - x
        img = np.empty((s, s, 3), np.float32)
        img[:] = base
        img[y : y + 5, x : x + 5] = colour
        img += rng.normal(0.0, 10.0, img.shape)
        frames.append(np.clip(img, 0, 255).astype(np.uint8))
    return frames


def _write_video(path: Path, frames: list[np.ndarray]) -> None:
    import av

    with av.open(str(path), "w") as c:
        stream = c.add_stream("mpeg4", rate=VIDEO_FPS)
        stream.width, stream.height, stream.pix_fmt = VIDEO_SIZE, VIDEO_SIZE, "yuv420p"
        stream.bit_rate, stream.thread_count = 2_000_000, 1  # near-lossless, deterministic
        for f in frames:
            c.mux(stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        c.mux(stream.encode())


def _series(rng: np.random.Generator, bit: int) -> np.ndarray:
    # Channel 0: a noisy sine, fast (bit 1) or slow; channel 1: a random walk (no signal).
    # Lengths vary around the manifest's 32 steps, so padding and trimming both happen.
    n = int(rng.integers(24, 41))
    t = np.arange(n) / SERIES_LENGTH
    wave = np.sin(2 * np.pi * (4.0 if bit else 1.0) * t + rng.uniform(0, 2 * np.pi))
    wave = rng.uniform(0.5, 2.0) * wave + rng.normal(0.0, 0.2, n) + rng.normal(0.0, 1.0)
    walk = np.cumsum(rng.normal(0.0, 0.3, n)) + 5.0
    return np.stack([wave, walk], axis=1).astype(np.float32)


def _vector(rng: np.random.Generator, bit: int, direction: np.ndarray) -> list[float]:
    v = rng.normal(0.0, 1.0, EMBED_DIM) + (1.5 if bit else -1.5) * direction
    return [round(float(x), 4) for x in v]


def _manifest(modalities, table: str, redundant: bool) -> str:
    if tuple(modalities) == DEFAULT_MODALITIES and table == "train.csv":
        text = MANIFEST
    else:
        n = len(modalities)
        classes = "low/mid/high" if n % 2 == 0 else "low/high"
        pad = max(len(INPUTS[m][0]) for m in modalities) + 2
        lines = [f"  {(INPUTS[m][0] + ':').ljust(pad)}{INPUTS[m][1]}" for m in modalities]
        head, rest = MANIFEST.split("inputs:\n", 1)
        rest = rest.split("search:", 1)[1]
        head = head.replace("train: train.csv", f"train: {table}").replace(
            "the label (low/mid/high) depends on all four inputs together",
            f"the label ({classes}) depends on {'both' if n == 2 else 'all ' + NUMBERS.get(n, str(n))} inputs together"
            if n > 1 else "the label (low/high) is its one input's")
        text = head + "inputs:\n" + "\n".join(lines) + "\nsearch:" + rest
    if redundant:
        text = re.sub(r"the label \([a-z/]+\) (depends on (all \w+|both) inputs together|is its one input's)",
                      "every input alone tells the label (yes/no)", text)
    return text


def parse_modalities(value) -> tuple[str, ...]:
    """"image,text" or a sequence -> the modalities in their canonical order."""
    names = [m.strip() for m in (value.split(",") if isinstance(value, str) else value) if m.strip()]
    if names == ["all"]:
        return ALL_MODALITIES
    bad = [m for m in names if m not in ALL_MODALITIES]
    if bad or not names:
        from mmauto.errors import did_you_mean

        hint = did_you_mean(bad[0], ALL_MODALITIES) if bad else ""
        what = f"unknown modality '{bad[0]}'{hint}" if bad else "name at least one modality"
        raise DataError(f"--modalities: {what} ({', '.join(ALL_MODALITIES)})")
    return tuple(m for m in ALL_MODALITIES if m in names)


def write_demo(out: Path, rows: int = 400, seed: int = 0, missing: float = 0.0, redundant: bool = False,
               modalities=DEFAULT_MODALITIES) -> Path:
    """Write DIR/train.csv, DIR/images/*.png, DIR/audio/*.wav and DIR/manifest.yaml.

    Returns the manifest path. `missing` is the fraction of rows that lose one input cell.
    `redundant`: every input carries the same bit and the label (yes/no) is that bit, so any
    one input suffices: the data set for missing-modality robustness.
    `modalities` (any of ALL_MODALITIES) adds DIR/videos/*.mp4 (video), DIR/series/*.npy
    (timeseries) and an 8-value list column (embedding, in DIR/train.jsonl instead of the CSV,
    which holds no lists); each input carries one bit and the label counts them.
    """
    if rows < MIN_ROWS:
        raise DataError(f"--rows: at least {MIN_ROWS} rows are needed, got {rows}")
    if not 0.0 <= missing < 1.0:
        raise DataError(f"--missing: must be a fraction in [0, 1), got {missing}")
    mods = parse_modalities(modalities)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    folders = {"image": "images", "audio": "audio", "video": "videos", "timeseries": "series"}
    for m in mods:
        if m in folders:
            (out / folders[m]).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)

    # One bit per modality (image, audio, text, tabular), drawn first so the bits do not
    # depend on how many random numbers the per-row content uses.
    bits = rng.integers(0, 2, size=(rows, 4))
    if redundant:
        bits = np.repeat(bits[:, :1], 4, axis=1)
    # The added modalities draw from their own generator: the four first ones' data stays
    # what it always was for a seed.
    extra = [m for m in mods if m not in DEFAULT_MODALITIES]
    rng2 = np.random.default_rng([seed, 1])
    extra_bits = rng2.integers(0, 2, size=(rows, len(extra))) if not redundant else np.repeat(bits[:, :1], len(extra), axis=1)
    direction = rng2.normal(0.0, 1.0, EMBED_DIM)
    direction /= np.linalg.norm(direction)
    records = []
    for i, (b_img, b_aud, b_txt, b_tab) in enumerate(bits.tolist()):
        row = {"id": i}
        b_extra = dict(zip(extra, extra_bits[i].tolist()))
        if "image" in mods:
            row["image"] = f"images/img_{i:05d}.png"
            _image(rng, b_img).save(out / row["image"])
        if "audio" in mods:
            row["audio"] = f"audio/clip_{i:05d}.wav"
            sf.write(out / row["audio"], _clip(rng, b_aud), SAMPLE_RATE, subtype="PCM_16")
        if "tabular" in mods:
            price = rng.normal(80.0, 12.0) if b_tab else rng.normal(20.0, 6.0)
            # A second, weaker tabular signal: the store follows the price bit 85% of the time.
            leaning = b_tab if rng.random() < 0.85 else 1 - b_tab
            store = rng.choice(("north", "east") if leaning else ("south", "west"))
        if "text" in mods:
            row["review"] = _review(rng, b_txt)
        if "tabular" in mods:
            row["price"] = round(max(float(price), 1.0), 2)
            row["weight"] = round(float(rng.uniform(0.2, 5.0)), 3)
            row["colour"] = str(rng.choice(COLOURS))
            row["store"] = str(store)
        if "video" in mods:
            row["video"] = f"videos/vid_{i:05d}.mp4"
            _write_video(out / row["video"], _video(rng2, b_extra["video"]))
        if "timeseries" in mods:
            row["series"] = f"series/ser_{i:05d}.npy"
            np.save(out / row["series"], _series(rng2, b_extra["timeseries"]))
        if "embedding" in mods:
            row["embedding"] = _vector(rng2, b_extra["embedding"], direction)
        base = {"image": b_img, "audio": b_aud, "text": b_txt, "tabular": b_tab}
        total = sum(base[m] for m in mods if m in base) + sum(b_extra.values())
        row["label"] = ("yes" if b_img else "no") if redundant else _label(total, len(mods))
        records.append(row)
    table = pd.DataFrame.from_records(records)

    # Blank one cell per chosen row, never the label, so every row still trains and the
    # missing-modality paths get exercised; the media files stay so the folder is the same.
    n_missing = int(round(missing * rows))
    if n_missing:
        blankable = [c for m, c in BLANKABLE if m in mods]
        chosen = rng.choice(rows, size=n_missing, replace=False)
        columns = rng.choice(blankable, size=n_missing)
        table = table.astype({c: object for c in blankable if c != "price"})
        for row, column in zip(chosen.tolist(), columns.tolist()):
            table.at[row, column] = np.nan if column == "price" else None if column == "embedding" else ""

    # A CSV cannot hold the embedding's lists: JSON lines can.
    name = "train.jsonl" if "embedding" in mods else "train.csv"
    if name == "train.csv":
        table.to_csv(out / name, index=False)
    else:
        table.to_json(out / name, orient="records", lines=True)
    manifest = out / "manifest.yaml"
    manifest.write_text(_manifest(mods, name, redundant), encoding="utf-8")
    return manifest
