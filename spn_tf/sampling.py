"""Sampling loops over a model's step function; they know orderings, never a model class.

All randomness is drawn once, before a loop, as uniform noise of the image's shape
(`draw_uniform`), and each sub-pixel is drawn by inverse CDF inside the loop
(`distributions.sample_categorical`). So a loop run eagerly and the same loop compiled with
XLA give the same images for the same seed (XLA's stateless RNG is another stream; NOTES.md).

Two kinds of loop:
  * `raster_sample` — one sub-pixel per step in raster order; `logits_fn` is the whole network
    (the reference: one network call per sub-pixel).
  * `channel_parallel_sample` — all positions of a group at once, channels R, G, B in turn
    (the multiscale groups: one call per channel).
"""

import tensorflow as tf

from spn_tf.distributions import sample_categorical


def draw_uniform(seed, shape):
    """float32 noise in `[0, 1)` of `shape` from an int32 `(2,)` stateless seed."""
    return tf.random.stateless_uniform(shape, seed=seed, dtype=tf.float32)


def split_seed(seed, num):
    """`num` independent int32 `(2,)` seeds from one."""
    return tf.unstack(tf.random.experimental.stateless_split(seed, num), axis=0)


def _positions(shape):
    batch, height, width, channels = shape
    return [(i, j, c) for i in range(height) for j in range(width) for c in range(channels)]


def _set_subpixel(images, i, j, c, values):
    """`images[:, i, j, c] = values` without Python-side indexing into variables."""
    shape = tf.shape(images)
    onehot = tf.one_hot(i * shape[2] * shape[3] + j * shape[3] + c, shape[1] * shape[2] * shape[3],
                        on_value=True, off_value=False, dtype=tf.bool)
    onehot = tf.reshape(onehot, [1, shape[1], shape[2], shape[3]])
    return tf.where(onehot, values[:, None, None, None], images)


def _draw(logits, images, known, uniform, temperature, i, j, c):
    drawn = sample_categorical(logits[:, i, j, c], uniform[:, i, j, c], temperature)
    return tf.where(known[:, i, j, c], images[:, i, j, c], drawn)


def raster_sample(logits_fn, images, known, uniform, temperature, on_step=None):
    """Reference raster sampler: the full network once per sub-pixel, eagerly.

    Args:
      logits_fn: int32 `(B, H, W, C)` → logits `(B, H, W, C, K)`, causal in raster order.
      images: int32 `(B, H, W, C)`: given values where `known`, anything elsewhere.
      known: bool `(B, H, W, C)`: sub-pixels kept as given.
      uniform: float32 `(B, H, W, C)` noise from `draw_uniform`.
      temperature: float32 `(B,)`.
      on_step: optional callback `(step, total)` for progress.

    Returns:
      int32 `(B, H, W, C)`.
    """
    images = tf.where(known, images, tf.zeros_like(images))
    positions = _positions(images.shape)
    # A graph (not XLA) per call removes Python/Keras dispatch from every network call.
    logits_fn = tf.function(logits_fn)
    for step, (i, j, c) in enumerate(positions):
        value = _draw(logits_fn(images), images, known, uniform, temperature, i, j, c)
        images = _set_subpixel(images, i, j, c, value)
        if on_step is not None:
            on_step(step + 1, len(positions))
    return images


def compiled_raster_sample(logits_fn, images, known, uniform, temperature):
    """`raster_sample` as one `tf.while_loop` (trace it inside `tf.function(jit_compile=...)`).

    Same arguments and result as `raster_sample`, bit for bit, for the same noise.
    """
    _, height, width, channels = images.shape
    images = tf.where(known, images, tf.zeros_like(images))

    def body(t, images):
        i, rest = t // (width * channels), t % (width * channels)
        j, c = rest // channels, rest % channels
        logits = logits_fn(images)
        value = _draw(logits, images, known, uniform, temperature, i, j, c)
        return t + 1, _set_subpixel(images, i, j, c, value)

    _, images = tf.while_loop(lambda t, _: t < height * width * channels, body,
                              (tf.constant(0), images))
    return images


def channel_parallel_sample(logits_fn, images, known, uniform, temperature):
    """All positions at once, one channel after another: `C` calls of `logits_fn`.

    Args:
      logits_fn: int32 `(B, h, w, C)` → logits `(B, h, w, C, K)`; positions conditionally
        independent, channel c seeing channels < c of its own pixel only.
      images, known, uniform: `(B, h, w, C)` as in `raster_sample`; temperature `(B,)`.

    Returns:
      int32 `(B, h, w, C)`.
    """
    images = tf.where(known, images, tf.zeros_like(images))
    channels = images.shape[-1]
    t = temperature[:, None, None]
    for c in range(channels):
        logits = logits_fn(images)
        drawn = sample_categorical(logits[..., c, :], uniform[..., c], t)
        drawn = tf.where(known[..., c], images[..., c], drawn)
        onehot = tf.one_hot(c, channels, on_value=True, off_value=False, dtype=tf.bool)
        images = tf.where(onehot, drawn[..., None], images)
    return images
