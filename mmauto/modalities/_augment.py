"""Train-time augmentation ops on decoded batches (graph ops only, stateless random).

They run in the training tf.data pipeline (`Preprocessing.batches`), never in the model: the
exported SavedModel and every prediction see the data as decoded, and the Keras model holds no
random layer whose seed state the export would have to track. Each op takes a batch and a
shape-[2] integer seed and draws per example, so a run is reproducible from `train.seed` and
every epoch draws anew.
"""

from __future__ import annotations


def split(seed, n: int):
    """`n` independent [2] seeds from one."""
    import tensorflow as tf

    return tf.unstack(tf.random.experimental.stateless_split(seed, n))


def _uniform_ints(seed, n, lo, hi):
    """int32 [n] uniform in [lo, hi]."""
    import tensorflow as tf

    return tf.random.stateless_uniform([n], seed, minval=lo, maxval=hi + 1, dtype=tf.int32)


def shift(images, seed, max_fraction: float, axes=(0, 1), fill_mode: str = "REFLECT"):
    """Each image [N, H, W, C] moved by up to `max_fraction` of its size along `axes` (0: rows,
    1: columns), whole pixels; the uncovered edge filled as `fill_mode` says (REFLECT keeps an
    image's texture and noise, NEAREST repeats a spectrogram's first or last frame)."""
    import tensorflow as tf

    n = tf.shape(images)[0]
    h, w = images.shape[1], images.shape[2]
    seeds = split(seed, 2)
    dy = _uniform_ints(seeds[0], n, -int(h * max_fraction), int(h * max_fraction)) if 0 in axes else tf.zeros([n], tf.int32)
    dx = _uniform_ints(seeds[1], n, -int(w * max_fraction), int(w * max_fraction)) if 1 in axes else tf.zeros([n], tf.int32)
    one, zero = tf.ones([n]), tf.zeros([n])
    # Output pixel (x, y) reads input (x - dx, y - dy): a row of the projective transform.
    transform = tf.stack([one, zero, -tf.cast(dx, tf.float32), zero, one, -tf.cast(dy, tf.float32), zero, zero], axis=1)
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=transform, output_shape=tf.shape(images)[1:3], fill_value=0.0,
        interpolation="NEAREST", fill_mode=fill_mode)
    return tf.ensure_shape(out, images.shape)  # the op forgets the static size the masks read


def band_mask(shape, seed, axis: int, max_fraction: float):
    """bool [N, D1, D2]: per example one band along `axis` (1 or 2) of random width up to
    `max_fraction` of that axis, at a random place (SpecAugment's masks; cutout when applied
    along both axes and combined with `&`)."""
    import tensorflow as tf

    n, size = shape[0], shape[axis]
    seeds = split(seed, 2)
    width = _uniform_ints(seeds[0], n, 0, max(1, int(size * max_fraction)))
    start = tf.cast(tf.random.stateless_uniform([n], seeds[1]) * tf.cast(size - width + 1, tf.float32), tf.int32)
    pos = tf.range(size)[None, :]
    inside = (pos >= start[:, None]) & (pos < (start + width)[:, None])  # [N, size]
    return inside[:, :, None] if axis == 1 else inside[:, None, :]


def erase(images, seed, max_fraction: float, probability: float = 0.5):
    """Random erasing / cutout: in about `probability` of the images [N, H, W, C], a rectangle
    of up to `max_fraction` of each side set to zero (what a missing part reads as)."""
    import tensorflow as tf

    shape = tf.shape(images)
    seeds = split(seed, 3)
    dims = (shape[0], images.shape[1], images.shape[2])
    box = band_mask(dims, seeds[0], 1, max_fraction) & band_mask(dims, seeds[1], 2, max_fraction)
    chosen = tf.random.stateless_uniform([shape[0]], seeds[2]) < probability
    box = box & chosen[:, None, None]
    return tf.where(box[..., None], tf.zeros_like(images), images)


def shift_and_erase(images, seed, max_shift: float = 0.1, max_erase: float = 0.5):
    """Pictures' augmentation (images; video clips as stacked frames): shifted by up to
    `max_shift` of each side, then `erase` with rectangles of up to `max_erase` of each side."""
    seeds = split(seed, 2)
    return erase(shift(images, seeds[0], max_shift), seeds[1], max_erase)


def spec_augment(spec, seed, time_shift: float, time_mask: float, freq_mask: float):
    """A spectrogram batch [N, T, F]: shifted in time (edges repeated), one band of frames and
    one of bins set to the example's mean (Park et al., 2019, without time warping)."""
    import tensorflow as tf

    seeds = split(seed, 3)
    x = shift(spec[..., None], seeds[0], time_shift, axes=(0,), fill_mode="NEAREST")[..., 0]
    shape = tf.shape(x)
    dims = (shape[0], spec.shape[1], spec.shape[2])
    masked = band_mask(dims, seeds[1], 1, time_mask) | band_mask(dims, seeds[2], 2, freq_mask)
    mean = tf.reduce_mean(x, axis=[1, 2], keepdims=True)
    return tf.where(masked, tf.broadcast_to(mean, shape), x)
