"""Audio: a column of sound files; served as 16-bit PCM WAV bytes (or float waveforms).

Decoding uses core TF only (`tf.audio.decode_wav`, `tf.signal`): TF Serving runs it, and
tensorflow-io does not load on TF >= 2.17. Other formats (FLAC, OGG, MP3, 24-bit WAV) are read
with soundfile at training time and re-encoded as 16-bit WAV, so training and serving share one
decoder.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from mmauto.config.schema import Strict
from mmauto.modalities.base import MODALITIES, Modality, RowProblems, check_media, decode_problems, resolve_path

NOT_WAV = "the bytes are not a WAV file (no RIFF/WAVE header): send 16-bit PCM WAV (convert MP3, FLAC or OGG first)"


class AudioOptions(Strict):
    column: str
    sample_rate: int = Field(16000, ge=1000, le=192000)
    max_seconds: float = Field(2.0, gt=0, le=600)
    features: Literal["log_mel", "mfcc"] = "log_mel"
    n_mels: int = Field(40, ge=8, le=256)
    n_mfcc: int = Field(20, ge=4, le=128)
    frame_ms: float = Field(25.0, gt=1, le=200)
    hop_ms: float = Field(10.0, gt=1, le=200)
    top_db: float = Field(50.0, gt=0, le=200)


def _geometry(opts):
    samples = int(round(opts.sample_rate * opts.max_seconds))
    frame = int(round(opts.sample_rate * opts.frame_ms / 1000))
    hop = int(round(opts.sample_rate * opts.hop_ms / 1000))
    fft = 1 << (frame - 1).bit_length()
    frames = max(1, 1 + (samples - frame) // hop)
    bins = opts.n_mels if opts.features == "log_mel" else opts.n_mfcc
    return samples, frame, hop, fft, frames, bins


def _is_pcm16_wav(path: str) -> bool:
    import soundfile as sf

    try:
        info = sf.info(path)
    except Exception:
        return False
    return info.format == "WAV" and info.subtype == "PCM_16"


def _probe_audio(path: str, pcm16: set | None = None):
    """(reason, detail) for a file soundfile cannot open; 16-bit WAV paths are added to `pcm16`."""
    import soundfile as sf

    try:
        info = sf.info(path)
        if info.frames <= 0:
            raise ValueError("no samples")
    except Exception as exc:  # libsndfile's errors come in several kinds
        return "corrupt audio", f"{path}: {str(exc).splitlines()[0][:80]}"
    if pcm16 is not None and info.format == "WAV" and info.subtype == "PCM_16":
        pcm16.add(path)
    return None


def to_wav_bytes(path: bytes) -> bytes:
    """Any soundfile-readable file -> 16-bit PCM WAV bytes at its own sample rate."""
    import soundfile as sf

    path = path.decode() if isinstance(path, bytes) else path
    if not path:
        return b""
    data, rate = sf.read(path, dtype="float32", always_2d=True)
    buf = io.BytesIO()
    sf.write(buf, data, rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


@MODALITIES.register("audio")
class Audio(Modality):
    Options = AudioOptions
    default_encoders = ("cnn",)
    augments = True

    def check(self, opts, frame, root: Path) -> RowProblems:
        decoder = AudioDecoder("", opts)
        pcm16: set = set()

        def decode_check(paths):
            # 16-bit WAV files go to tf.audio.decode_wav as they are; the others are read with
            # soundfile and re-encoded (`to_wav_bytes`), as training does.
            wav = [i for i, p in enumerate(paths) if p in pcm16]
            found = {wav[j]: v for j, v in decode_problems([paths[i] for i in wav], decoder.waveform, "corrupt audio").items()}
            for i in sorted(set(range(len(paths))) - set(wav)):
                try:
                    to_wav_bytes(paths[i])
                except (RuntimeError, ValueError, OSError) as exc:  # soundfile's LibsndfileError is a RuntimeError
                    found[i] = ("corrupt audio", f"{paths[i]}: {str(exc).splitlines()[0][:80] if str(exc) else type(exc).__name__}")
            return found

        return check_media(frame[opts.column].tolist(), root, lambda p: _probe_audio(p, pcm16), decode_check=decode_check)

    def raw_values(self, input_name, opts, frame, root):
        paths = np.array([resolve_path(v, root) for v in frame[opts.column].tolist()], dtype=object)
        convert = np.array([bool(p) and not _is_pcm16_wav(p) for p in paths])
        return {input_name: paths, f"_convert:{input_name}": convert}

    def serving_values(self, input_name, opts, frame, root):
        raw = self.raw_values(input_name, opts, frame, root)
        data = [to_wav_bytes(p) if conv else (Path(p).read_bytes() if p else b"")
                for p, conv in zip(raw[input_name], raw[f"_convert:{input_name}"])]
        return {input_name: np.array(data, dtype=object)}

    def serving_spec(self, input_name, opts):
        return {input_name: ((None,), "string")}

    def load(self, input_name, opts, raw):
        import tensorflow as tf

        raw = dict(raw)
        path = raw[input_name]
        convert = raw.pop(f"_convert:{input_name}")

        def read():
            return tf.cond(
                convert,
                lambda: tf.reshape(tf.numpy_function(to_wav_bytes, [path], tf.string, stateful=False), ()),
                lambda: tf.io.read_file(path),
            )

        raw[input_name] = tf.cond(tf.strings.length(path) > 0, read, lambda: tf.constant(""))
        return raw

    def make_decoder(self, input_name, opts, state):
        return AudioDecoder(input_name, opts)

    def feature_spec(self, opts, state):
        _, _, _, _, frames, bins = _geometry(opts)
        return {"spectrogram": ((frames, bins), "float32")}

    def augment(self, opts, feats, seed):
        """SpecAugment without warping: shifted in time by up to a tenth of the clip, one band of
        up to 15% of the frames and one of up to 15% of the bins masked."""
        from mmauto.modalities import _augment as aug

        return {"spectrogram": aug.spec_augment(feats["spectrogram"], seed, 0.1, 0.15, 0.15)}

    def example(self, input_name, opts):
        return {input_name: {"b64": "<base64 of a 16-bit PCM WAV file>"}}


class AudioDecoder:
    """WAV bytes -> waveform at the model's rate, padded/trimmed -> log-mel or MFCC frames."""

    def __init__(self, input_name, opts):
        self.input_name, self.opts = input_name, opts
        self.samples, self.frame, self.hop, self.fft, self.frames, self.bins = _geometry(opts)

    def waveform(self, data):
        """One WAV byte string -> float32 [samples]."""
        import tensorflow as tf

        target = self.opts.sample_rate

        def decode():
            # Other bytes (MP3, FLAC, OGG) fail here with a message that names the input and
            # holds none of the bytes: decode_wav's own error quotes them, and a client (or
            # Python, decoding the message as UTF-8) then sees a UnicodeDecodeError.
            head = tf.strings.substr(tf.strings.join([data, tf.constant("\0" * 12)]), 0, 12)
            is_wav = tf.logical_and(tf.equal(tf.strings.substr(head, 0, 4), "RIFF"), tf.equal(tf.strings.substr(head, 8, 4), "WAVE"))
            check = tf.debugging.Assert(is_wav, [tf.constant(f"{self.input_name or 'audio'}: {NOT_WAV}")])
            with tf.control_dependencies([check]):
                audio, rate = tf.audio.decode_wav(data, desired_channels=1)
            wave = audio[:, 0]
            return resample(wave, tf.cast(rate, tf.float32), float(target))

        wave = tf.cond(tf.strings.length(data) > 0, decode, lambda: tf.zeros((0,), tf.float32))
        return fix_length(wave, self.samples)

    def features(self, waves):
        """float32 [N, samples] -> [N, frames, bins]."""
        import tensorflow as tf

        opts = self.opts
        stft = tf.signal.stft(waves, self.frame, self.hop, self.fft, pad_end=False)
        mag = tf.abs(stft)
        mel = tf.signal.linear_to_mel_weight_matrix(
            opts.n_mels, self.fft // 2 + 1, opts.sample_rate, 20.0, opts.sample_rate / 2.0
        )
        log_mel = tf.math.log(tf.tensordot(mag, mel, 1) + 1e-6)
        # Clip each clip at `top_db` (magnitude dB) below its loudest bin: the features no longer
        # depend on recording level, and silence and padding stop dominating the value range
        # (with an absolute floor, 44% of FSDD's values sat at log(1e-6); a small CNN went from
        # 0.93 to 0.98 test accuracy with this clip).
        floor = tf.reduce_max(log_mel, axis=[-2, -1], keepdims=True) - opts.top_db * float(np.log(10.0)) / 20.0
        log_mel = tf.maximum(log_mel, floor)
        if opts.features == "mfcc":
            return tf.signal.mfccs_from_log_mel_spectrograms(log_mel)[..., : opts.n_mfcc]
        return log_mel

    def __call__(self, raw):
        import tensorflow as tf

        data = raw[self.input_name]
        waves = tf.map_fn(self.waveform, data, fn_output_signature=tf.TensorSpec((self.samples,), tf.float32))
        present = tf.cast(tf.strings.length(data) > 0, tf.float32)
        return {"spectrogram": self.features(waves)}, present

    def from_waveforms(self, waves):
        """float32 [N, S] at the model's rate; a row whose first sample is NaN is missing."""
        import tensorflow as tf

        waves = tf.convert_to_tensor(waves, tf.float32)
        present = tf.cast(tf.logical_not(tf.math.is_nan(waves[:, 0])), tf.float32)
        waves = tf.where(tf.math.is_nan(waves), 0.0, waves)
        waves = tf.map_fn(lambda w: fix_length(w, self.samples), waves)
        return {"spectrogram": self.features(waves)}, present


def fix_length(wave, samples: int):
    import tensorflow as tf

    wave = wave[:samples]
    return tf.pad(wave, [[0, samples - tf.shape(wave)[0]]])


def resample(wave, rate, target: float):
    """Linear-interpolation resampling in-graph (a no-op when the rates match)."""
    import tensorflow as tf

    def interp():
        n = tf.shape(wave)[0]
        new_n = tf.cast(tf.math.round(tf.cast(n, tf.float32) * target / rate), tf.int32)
        pos = tf.range(new_n, dtype=tf.float32) * (rate / target)
        lo = tf.minimum(tf.cast(tf.floor(pos), tf.int32), n - 1)
        hi = tf.minimum(lo + 1, n - 1)
        frac = pos - tf.cast(lo, tf.float32)
        return tf.gather(wave, lo) * (1.0 - frac) + tf.gather(wave, hi) * frac

    return tf.cond(tf.logical_or(tf.equal(rate, target), tf.shape(wave)[0] < 2), lambda: wave, interp)
