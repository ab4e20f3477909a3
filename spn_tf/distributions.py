"""Discrete likelihood heads: a categorical over `2**bits` values per sub-pixel.

The channels of a pixel are autoregressive (R, then G given R, then B given R, G): the
networks enforce that with channel masks (`spn_tf.layers.MaskedConv2D`), so the head itself is a
plain per-sub-pixel softmax and `log p(x) = sum over sub-pixels of log softmax(logits)[x]`.

Everything here computes in float32 whatever the compute dtype of the network (mixed precision
casts the logits up before the log-softmax), and returns natural logarithms.
"""

import math

import tensorflow as tf


def categorical_log_prob(logits, targets):
    """Log-probability of integer targets under per-sub-pixel categoricals.

    Args:
      logits: float `(..., K)`.
      targets: int `(...)` in `[0, K)`.

    Returns:
      float32 `(...)`, natural log.
    """
    logits = tf.cast(logits, tf.float32)
    log_probs = tf.nn.log_softmax(logits, axis=-1)
    return tf.gather(log_probs, tf.cast(targets, tf.int32), axis=-1, batch_dims=len(targets.shape))


def image_log_prob(logits, images):
    """Sum of sub-pixel log-probabilities per example.

    Args:
      logits: float `(B, ..., K)`.
      images: int `(B, ...)` in `[0, K)`.

    Returns:
      float32 `(B,)` in nats.
    """
    per_subpixel = categorical_log_prob(logits, images)
    return tf.reduce_sum(tf.reshape(per_subpixel, [tf.shape(per_subpixel)[0], -1]), axis=1)


def bits_per_dim(log_prob, num_dims):
    """Negative log-likelihood in bits per sub-pixel: `-log_prob / (num_dims * ln 2)`.

    Args:
      log_prob: float `(B,)` natural log of p(x).
      num_dims: H * W * C of the image (a Python int).
    """
    return -tf.cast(log_prob, tf.float32) / (num_dims * math.log(2.0))


def sample_categorical(logits, uniform, temperature):
    """Inverse-CDF sampling, so that the noise can be drawn outside a compiled loop.

    Drawing `uniform` once per run (not inside XLA) makes compiled and eager sampling give the
    same images for the same seed (XLA lowers stateless RNG to another stream; NOTES.md).

    Args:
      logits: float `(..., K)`.
      uniform: float32 `(...)` in `[0, 1)`.
      temperature: float32 scalar or broadcastable to `(...)`; 0 picks the mode (argmax).

    Returns:
      int32 `(...)` in `[0, K)`.
    """
    logits = tf.cast(logits, tf.float32)
    temperature = tf.cast(temperature, tf.float32)
    greedy = tf.cast(tf.argmax(logits, axis=-1, output_type=tf.int32), tf.int32)
    # Temperature 0 would divide by zero: scale by a safe value and select the argmax instead.
    safe_t = tf.where(temperature > 0, temperature, tf.ones_like(temperature))
    probs = tf.nn.softmax(logits / safe_t[..., None], axis=-1)
    cdf = tf.cumsum(probs, axis=-1)
    num_classes = logits.shape[-1]
    drawn = tf.reduce_sum(tf.cast(cdf < uniform[..., None], tf.int32), axis=-1)
    drawn = tf.minimum(drawn, num_classes - 1)
    return tf.where(temperature > 0, drawn, greedy)
