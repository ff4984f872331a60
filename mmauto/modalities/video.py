"""Video: a column of video files, or of frame folders (image files, in name order); served as
decoded frames, uint8 [N, frames, height, width, channels].

Serving input. Decoding a video container inside a TF graph is not portable (no core TF op
reads MP4/WebM/AVI, and TF Serving ships none), so the SavedModel takes the frames themselves:
`frames` pictures per row, already sampled and resized to `size`, as a uint8 tensor
[N, F, H, W, C] keyed by the input's name. A row whose frames are all zero is a missing video
(so an entirely black clip reads as missing too). `mmauto predict` and the parity check build
that tensor with the same Python function the training pipeline uses.

Decoding library: PyAV (`av` on PyPI). It is maintained (several releases a year), its wheels
bundle FFmpeg's libraries for Linux, macOS and Windows, so `pip install` needs no system
package, and it reads every container and codec FFmpeg does, in-process. The alternatives:
opencv-python(-headless) bundles FFmpeg too, but is a whole computer-vision library for one
function, and its frame count and seek position are estimates for many containers;
imageio reads video through PyAV itself, or through imageio-ffmpeg, which pipes frames out of
an ffmpeg executable in a subprocess; decord's last release is from 2021. Frame folders are
read with Pillow and need no video library.

Sampling. `uniform` (default) takes the middle frame of `frames` equal segments of the clip;
`fps` takes one frame every 1/fps seconds from the start (frame folders count as
`folder_fps` frames per second), repeating the last frame when the clip is shorter. Frames
are resized to `size` with Pillow's bilinear filter. The pipeline decodes each clip once per
split (tf.numpy_function in `load`) and caches the frames.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

import numpy as np
from pydantic import Field, field_validator, model_validator

from mmauto.config.schema import Strict
from mmauto.modalities.base import MODALITIES, Modality, RowProblems, check_media, resolve_path

FRAME_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


class VideoOptions(Strict):
    column: str
    frames: int = Field(8, ge=1, le=512)
    size: list[int] = [112, 112]
    channels: Literal[1, 3] = 3
    sampling: Literal["uniform", "fps"] = "uniform"
    fps: Optional[float] = Field(None, gt=0, le=1000)
    folder_fps: float = Field(25.0, gt=0, le=1000)

    @field_validator("size", mode="before")
    @classmethod
    def _size(cls, v):
        if not isinstance(v, (list, tuple)) or len(v) != 2:
            raise ValueError(f"expected [height, width], got {list(v) if isinstance(v, (list, tuple)) else v!r}")
        if not all(isinstance(x, int) and not isinstance(x, bool) and 8 <= x <= 2048 for x in v):
            raise ValueError(f"expected two whole numbers from 8 to 2048, got {list(v)}")
        return list(v)

    @model_validator(mode="after")
    def _fps(self):
        if self.sampling == "fps" and self.fps is None:
            raise ValueError("sampling: fps needs `fps` (frames per second to take)")
        if self.sampling == "uniform" and self.fps is not None:
            raise ValueError("`fps` only applies to sampling: fps")
        return self


# === Reading frames (Python, training time and `serving_values`) ===


def frame_files(folder: Path) -> list[Path]:
    return sorted(p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in FRAME_SUFFIXES and not p.name.startswith("."))


def sample_indices(count: int, rate: float, opts) -> list[int]:
    """Which of `count` frames (at `rate` frames per second) make the clip's `opts.frames`."""
    f = opts.frames
    if opts.sampling == "fps":
        return [min(int(k * rate / opts.fps), count - 1) for k in range(f)]
    return [min(int((k + 0.5) * count / f), count - 1) for k in range(f)]


def _fit(img, opts) -> np.ndarray:
    from PIL import Image as PILImage

    img = img.convert("L" if opts.channels == 1 else "RGB")
    h, w = opts.size
    if img.size != (w, h):
        img = img.resize((w, h), PILImage.BILINEAR)
    arr = np.asarray(img, dtype=np.uint8)
    return arr[..., None] if opts.channels == 1 else arr


def _stream_count(path: str) -> tuple[int, float]:
    """(frames, frames per second) of the first video stream; counts packets when the
    container does not say."""
    import av

    with av.open(path) as c:
        stream = c.streams.video[0]
        rate = float(stream.average_rate or stream.guessed_rate or 25.0)
        count = int(stream.frames or 0)
        if count <= 0:
            count = sum(1 for p in c.demux(stream) if p.size)
    return count, rate


def read_frames(path, opts) -> np.ndarray:
    """A clip (video file or frame folder) -> uint8 [frames, height, width, channels];
    an empty path gives zeros (a missing video)."""
    from PIL import Image as PILImage

    path = path.decode() if isinstance(path, bytes) else str(path)
    h, w = opts.size
    out = np.zeros((opts.frames, h, w, opts.channels), np.uint8)
    if not path:
        return out
    p = Path(path)
    if p.is_dir():
        files = frame_files(p)
        if not files:
            raise ValueError(f"{path}: no image files in the frame folder")
        idx = sample_indices(len(files), opts.folder_fps, opts)
        done = {}
        for k, i in enumerate(idx):
            if i not in done:
                with PILImage.open(files[i]) as im:
                    done[i] = _fit(im, opts)
            out[k] = done[i]
        return out

    import av

    count, rate = _stream_count(path)
    if count <= 0:
        raise ValueError(f"{path}: the video has no frames")
    idx = sample_indices(count, rate, opts)
    wanted = set(idx)
    got: dict[int, np.ndarray] = {}
    with av.open(path) as c:
        for i, frame in enumerate(c.decode(video=0)):
            if i in wanted:
                got[i] = _fit(frame.to_image(), opts)
            if i >= max(idx):
                break
    if not got:
        raise ValueError(f"{path}: no frame could be decoded")
    # A container may announce more frames than it decodes: take the last decoded one.
    fallback = got[max(got)]
    for k, i in enumerate(idx):
        out[k] = got.get(i, fallback)
    return out


def _probe(path: str, opts) -> Optional[str]:
    """None when the clip is readable, else a short reason."""
    p = Path(path)
    if p.is_dir():
        files = frame_files(p)
        if not files:
            return f"{path}: no image files in the frame folder ({', '.join(sorted(FRAME_SUFFIXES))})"
        from PIL import Image as PILImage

        for i in sorted(set(sample_indices(len(files), opts.folder_fps, opts))):
            try:
                with PILImage.open(files[i]) as im:
                    im.verify()
            except Exception as exc:
                return f"{files[i]}: {type(exc).__name__}"
        return None
    import av

    try:
        with av.open(path) as c:
            if not c.streams.video:
                return f"{path}: no video stream"
            next(iter(c.decode(video=0)))
    except StopIteration:
        return f"{path}: no frame could be decoded"
    except Exception as exc:  # av raises its own error kinds for broken or unknown files
        first = str(exc).strip().splitlines()[0][:80] if str(exc).strip() else type(exc).__name__
        return f"{path}: {first}"
    return None


# === The modality ===


@MODALITIES.register("video")
class Video(Modality):
    Options = VideoOptions
    default_encoders = ("frame_cnn", "temporal_conv")
    augments = True

    def check(self, opts, frame, root: Path) -> RowProblems:
        def probe(path):
            why = _probe(path, opts)
            return ("corrupt video", why) if why else None

        return check_media(frame[opts.column].tolist(), root, probe, exists=Path.exists)

    def raw_values(self, input_name, opts, frame, root):
        return {input_name: np.array([resolve_path(v, root) for v in frame[opts.column].tolist()], dtype=object)}

    def serving_values(self, input_name, opts, frame, root):
        paths = self.raw_values(input_name, opts, frame, root)[input_name]
        h, w = opts.size
        if not len(paths):
            return {input_name: np.zeros((0, opts.frames, h, w, opts.channels), np.uint8)}
        return {input_name: np.stack([read_frames(p, opts) for p in paths])}

    def serving_spec(self, input_name, opts):
        # Any frame size: the graph resizes to `size` (clients need not know the model's).
        return {input_name: ((None, opts.frames, None, None, opts.channels), "uint8")}

    def load(self, input_name, opts, raw):
        import tensorflow as tf

        h, w = opts.size
        raw = dict(raw)
        frames = tf.numpy_function(lambda p: read_frames(p, opts), [raw[input_name]], tf.uint8, stateful=False)
        raw[input_name] = tf.ensure_shape(frames, (opts.frames, h, w, opts.channels))
        return raw

    def make_decoder(self, input_name, opts, state):
        return VideoDecoder(input_name, opts)

    def feature_spec(self, opts, state):
        h, w = opts.size
        # uint8 keeps the cached frames four times smaller; encoders rescale.
        return {"frames": ((opts.frames, h, w, opts.channels), "uint8")}

    def augment(self, opts, feats, seed):
        """As images (modalities/image.py), one shift and one erased rectangle per clip, the same
        in all its frames (the frames stacked as channels)."""
        import tensorflow as tf

        from mmauto.modalities import _augment as aug

        x = feats["frames"]
        n, f, h, w, c = tf.shape(x)[0], *x.shape[1:]
        stacked = tf.reshape(tf.transpose(x, [0, 2, 3, 1, 4]), [n, h, w, f * c])
        out = aug.shift_and_erase(stacked, seed)
        return {"frames": tf.transpose(tf.reshape(out, [n, h, w, f, c]), [0, 3, 1, 2, 4])}

    def missing_values(self, input_name, opts):
        return {input_name: "all-zero frames"}

    def example(self, input_name, opts):
        h, w = opts.size
        return {input_name: f"<uint8 frames [{opts.frames}, H, W, {opts.channels}] per row (nested lists), sampled by the "
                            f"client; resized to {h}x{w} in the graph (send that size to skip it); all zeros = missing>"}


class VideoDecoder:
    """uint8 frames [N, F, H, W, C] -> frames at the model's size; a row of all-zero frames is
    missing. Frames of another size are resized in the graph (bilinear with antialiasing, like
    the Pillow resize at training time); frames of the model's size pass unchanged."""

    def __init__(self, input_name, opts):
        self.input_name, self.opts = input_name, opts

    def __call__(self, raw):
        import tensorflow as tf

        frames = tf.convert_to_tensor(raw[self.input_name])
        h, w = self.opts.size
        shape = tf.shape(frames)

        def resize():
            flat = tf.reshape(frames, tf.concat([[-1], shape[2:]], 0))
            out = tf.image.resize(flat, (h, w), method="bilinear", antialias=True)
            out = tf.cast(tf.clip_by_value(tf.round(out), 0.0, 255.0), tf.uint8)
            return tf.reshape(out, tf.stack([shape[0], shape[1], h, w, shape[4]]))

        same = tf.logical_and(tf.equal(shape[2], h), tf.equal(shape[3], w))
        frames = tf.cond(same, lambda: frames, resize)
        frames = tf.ensure_shape(frames, (None, self.opts.frames, h, w, self.opts.channels))
        present = tf.cast(tf.reduce_any(frames > 0, axis=[1, 2, 3, 4]), tf.float32)
        return {"frames": frames}, present
