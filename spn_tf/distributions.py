"""Discrete likelihood heads: what a network's outputs at a sub-pixel say about its value.

Two heads, chosen per model (`head=` of every kind):

* `Categorical` — `2**bits` logits per sub-pixel, a softmax over the values (van den Oord et
  al. 2016).
* `DiscretizedLogisticMixture` — `3 * num_mixtures` outputs per sub-pixel: mixture logits,
  means and log-scales of logistics on the pixel scale `[-1, 1]`, each value's probability the
  mass of its bin `[x - 1/top, x + 1/top]` (`top = 2**bits - 1`), the bins of 0 and `top`
  open to -inf and +inf (PixelCNN++, Salimans et al. 2017, eq. 2). About 15 outputs per
  sub-pixel for 5 components instead of 256 logits.

The channels of a pixel are autoregressive (R, then G given R, then B given R, G) with either
head: the networks enforce that with channel masks (`spn_tf.layers.MaskedConv2D`), so a head
sees one sub-pixel's outputs and `log p(x) = sum over sub-pixels of head.log_prob(outputs, x)`.
(PixelCNN++ instead predicts a pixel's three channels from one output with linear
coefficients; here the masks already give each channel its own conditional.)

Everything here computes in float32 whatever the compute dtype of the network (mixed precision
casts the outputs up first), or in float64 for a float64 network (the codec's: `spn_tf.codec`),
and returns natural logarithms. Sampling draws every head by
inverse CDF over its values (`sample_categorical` on `value_logits`), so a loop run eagerly and
compiled consume the same noise the same way, and temperature `T` means the same for both
heads: each sub-pixel is drawn from its distribution raised to `1/T`, renormalized.
"""

import math

import tensorflow as tf

from spn_tf import hparams


def _at_least_float32(x):
    """`x` in float32, or float64 if it is float64."""
    return tf.cast(x, tf.float64 if x.dtype == tf.float64 else tf.float32)

HEADS = ("categorical", "logistic_mixture")
# Log-scales of the mixture's logistics are clipped to [-7, 7]. PixelCNN++ clips below at -7
# (narrower, a logistic's mass sits in one 8-bit bin anyway); above, the bin's width over the
# scale (2/top * e^-log_scale) would round to 0 and an inner bin's log-mass to -inf.
LOG_SCALE_RANGE = (-7.0, 7.0)


def make_head(head, bits, num_mixtures=5):
    """The head `head` names for `bits`-bit sub-pixels.

    Args:
      head: `"categorical"` or `"logistic_mixture"`.
      bits: bits per sub-pixel.
      num_mixtures: logistic components per sub-pixel (the mixture head only).

    Raises:
      ValueError: an unknown head, or one that cannot serve these values (the message says
        what to choose instead).
    """
    if head == "categorical":
        return Categorical(2 ** bits)
    if head == "logistic_mixture":
        hparams.check_positive("num_mixtures", num_mixtures)
        if bits < 2:
            raise ValueError(
                f"head='logistic_mixture' needs at least 2 bits per sub-pixel (its bins at 0 "
                f"and the top value leave no room for a logistic at {bits} bit); use "
                f"head='categorical' for {bits}-bit images (a Bernoulli per sub-pixel).")
        return DiscretizedLogisticMixture(2 ** bits, int(num_mixtures))
    raise ValueError(f"head={head!r} is not a likelihood head; choose one of {HEADS}.")


class Head:
    """A per-sub-pixel distribution over `num_values` values from `num_params` outputs.

    Subclasses give `num_params`, `log_prob` and `value_logits`.
    """

    def __init__(self, num_values):
        self.num_values = num_values

    def log_prob(self, params, targets):
        """Log-probability of integer targets.

        Args:
          params: float `(..., num_params)`.
          targets: int `(...)` in `[0, num_values)`.

        Returns:
          float32 `(...)`, natural log.
        """
        raise NotImplementedError

    def value_logits(self, params):
        """float32 (float64 for float64 `params`) `(..., num_values)` whose softmax is each
        sub-pixel's distribution."""
        raise NotImplementedError

    def image_log_prob(self, params, images):
        """Sum of the sub-pixel log-probabilities per example.

        Args:
          params: float `(B, ..., num_params)`.
          images: int `(B, ...)` in `[0, num_values)`.

        Returns:
          float32 `(B,)` in nats.
        """
        per_subpixel = self.log_prob(params, images)
        return tf.reduce_sum(tf.reshape(per_subpixel, [tf.shape(per_subpixel)[0], -1]), axis=1)

    def draw(self, params, uniform, temperature):
        """Values drawn by inverse CDF (see `sample_categorical`).

        Args:
          params: float `(..., num_params)`; uniform: float32 `(...)` in `[0, 1)`;
          temperature: float32, broadcastable to `(...)`; 0 picks the most likely value.

        Returns:
          int32 `(...)` in `[0, num_values)`.
        """
        return sample_categorical(self.value_logits(params), uniform, temperature)


class Categorical(Head):
    """`num_values` logits per sub-pixel, a softmax over the values."""

    name = "categorical"

    @property
    def num_params(self):
        return self.num_values

    def log_prob(self, params, targets):
        return categorical_log_prob(params, targets)

    def value_logits(self, params):
        return _at_least_float32(params)


class DiscretizedLogisticMixture(Head):
    """PixelCNN++'s discretized logistic mixture over `num_values` values, per sub-pixel.

    Outputs per sub-pixel, in order: `num_mixtures` mixture logits, means, log-scales. With
    `top = num_values - 1`, value `x` sits at `c = 2x/top - 1` and owns the bin
    `[c - 1/top, c + 1/top]`; the first bin extends to -inf and the last to +inf, so the bins'
    masses telescope to exactly 1. Every mass is computed in log space without a difference of
    two probabilities: with `a = (c + 1/top - mean) / scale` and `b = (c - 1/top - mean) /
    scale`, `log(sigmoid(a) - sigmoid(b)) = log(-expm1(b - a)) - softplus(-a) - softplus(b)`;
    the open bins are `-softplus(-a)` and `-softplus(b)`. (PixelCNN++ switches to a density
    approximation where the difference underflows, which would break the normalization.)
    """

    name = "logistic_mixture"

    def __init__(self, num_values, num_mixtures):
        super().__init__(num_values)
        self.num_mixtures = num_mixtures

    @property
    def num_params(self):
        return 3 * self.num_mixtures

    def _log_prob(self, params, values):
        """`log p(values)`: params float `(..., 3M)` and int `values`, broadcast over `...`."""
        top = self.num_values - 1
        # One split (its gradient one concatenation), not three slices.
        params = _at_least_float32(params)
        logit_weights, means, log_scales = tf.split(params, 3, axis=-1)
        log_weights = tf.nn.log_softmax(logit_weights, axis=-1)
        log_scales = tf.clip_by_value(log_scales, *LOG_SCALE_RANGE)
        x = tf.cast(values, params.dtype)[..., None]
        inv_scale = tf.exp(-log_scales)
        centred = x * (2.0 / top) - 1.0 - means
        upper = inv_scale * (centred + 1.0 / top)
        lower = inv_scale * (centred - 1.0 / top)
        softplus_upper, softplus_lower = tf.nn.softplus(-upper), tf.nn.softplus(lower)
        # The bin's width over the scale is at least 2/top * e^-7 > 0: expm1 stays below 0.
        inner = tf.math.log(-tf.math.expm1(-(2.0 / top) * inv_scale)) - softplus_upper \
            - softplus_lower
        component = tf.where(x == 0, -softplus_upper, tf.where(x == top, -softplus_lower,
                                                               inner))
        return tf.reduce_logsumexp(log_weights + component, axis=-1)

    def log_prob(self, params, targets):
        return self._log_prob(params, targets)

    def value_logits(self, params):
        return self._log_prob(tf.expand_dims(params, -2), tf.range(self.num_values))


def categorical_log_prob(logits, targets):
    """Log-probability of integer targets under per-sub-pixel categoricals.

    Args:
      logits: float `(..., K)`.
      targets: int `(...)` in `[0, K)`.

    Returns:
      float32 `(...)`, natural log.
    """
    return _gathered_log_softmax(tf.cast(logits, tf.float32), tf.cast(targets, tf.int32))


@tf.custom_gradient
def _gathered_log_softmax(logits, targets):
    """`log_softmax(logits)[targets]`, with the gradient written as `one_hot - softmax`: the
    gather's own gradient is a scatter (`UnsortedSegmentSum`), a sixth of a training step's
    op time for the 256-way head."""
    log_probs = tf.nn.log_softmax(logits, axis=-1)
    out = tf.gather(log_probs, targets, axis=-1, batch_dims=len(targets.shape))

    def grad(upstream):
        onehot = tf.one_hot(targets, logits.shape[-1], dtype=logits.dtype)
        return upstream[..., None] * (onehot - tf.exp(log_probs)), None
    return out, grad


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
    same images for the same seed (XLA lowers stateless RNG to another stream).

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
