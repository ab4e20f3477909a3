import math

import numpy as np
import pytest
import tensorflow as tf

from spn_tf import distributions


def test_log_prob_matches_softmax_and_bits_per_dim():
    logits = tf.constant(np.random.default_rng(0).normal(size=(2, 3, 4)), tf.float32)
    targets = tf.constant([[0, 1, 3], [2, 2, 0]])
    lp = distributions.Categorical(logits.shape[-1]).image_log_prob(logits, targets)
    expected = np.log(tf.nn.softmax(logits).numpy())
    want = [sum(expected[b, i, targets[b, i]] for i in range(3)) for b in range(2)]
    np.testing.assert_allclose(lp, want, rtol=1e-5)
    np.testing.assert_allclose(distributions.bits_per_dim(lp, 3),
                               -np.array(want) / (3 * math.log(2)), rtol=1e-6)


def test_log_prob_is_float32_and_stable_under_bfloat16_logits():
    logits = tf.constant([[[80.0, -80.0, 0.0]]], tf.bfloat16)
    lp = distributions.Categorical(logits.shape[-1]).image_log_prob(logits, tf.constant([[1]]))
    assert lp.dtype == tf.float32 and np.isfinite(lp.numpy()).all()
    np.testing.assert_allclose(lp, [-160.0], rtol=1e-2)


def test_inverse_cdf_sampling_and_temperature_zero():
    logits = tf.math.log(tf.constant([[0.2, 0.5, 0.3]]))
    u = tf.constant([0.1, 0.3, 0.69, 0.71, 0.99])
    drawn = distributions.sample_categorical(tf.repeat(logits, 5, axis=0), u, tf.ones([5]))
    np.testing.assert_array_equal(drawn, [0, 1, 1, 2, 2])
    greedy = distributions.sample_categorical(tf.repeat(logits, 5, axis=0), u, tf.zeros([5]))
    np.testing.assert_array_equal(greedy, [1] * 5)


def _mixture_reference(params, values, num_values):
    """float64 log p of the discretized logistic mixture by CDF differences (PixelCNN++ eq. 2),
    for parameters where float64 does not underflow."""
    params = np.asarray(params, np.float64)
    m, top = params.shape[-1] // 3, num_values - 1
    weights = np.exp(params[..., :m] - params[..., :m].max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    means = params[..., m:2 * m]
    scales = np.exp(np.clip(params[..., 2 * m:], *distributions.LOG_SCALE_RANGE))
    x = np.asarray(values, np.float64)[..., None] * 2 / top - 1
    cdf = lambda z: np.exp(-np.logaddexp(0, -z))  # noqa: E731
    upper = np.where(x == 1, 1.0, cdf((x + 1 / top - means) / scales))
    lower = np.where(x == -1, 0.0, cdf((x - 1 / top - means) / scales))
    return np.log((weights * (upper - lower)).sum(-1))


@pytest.mark.parametrize("bits", [2, 3, 5, 8])
def test_mixture_sums_to_one_and_matches_cdf_differences(bits):
    head = distributions.make_head("logistic_mixture", bits, num_mixtures=3)
    assert head.num_params == 9
    params = tf.constant(np.random.default_rng(bits).normal(size=(200, 9)) * 2, tf.float32)
    table = head.value_logits(params).numpy()
    assert table.shape == (200, 2 ** bits)
    np.testing.assert_allclose(np.exp(table.astype(np.float64)).sum(-1), 1.0, atol=1e-5)
    values = np.arange(2 ** bits)
    np.testing.assert_allclose(table, _mixture_reference(params[:, None], values, 2 ** bits),
                               rtol=1e-4, atol=1e-5)
    # log_prob of a value is that value's entry of the table.
    targets = np.random.default_rng(0).integers(0, 2 ** bits, 200)
    np.testing.assert_allclose(head.log_prob(params, tf.constant(targets)),
                               table[np.arange(200), targets], rtol=1e-6, atol=1e-6)


def test_mixture_edge_bins_and_extreme_parameters_stay_finite_and_normalized():
    """The bins of 0 and the top value are open to -inf and +inf; a logistic far outside
    [-1, 1] or narrower than a bin, where CDF differences underflow, still gives finite logs
    that sum to one (PixelCNN++'s density fallback would not)."""
    head = distributions.DiscretizedLogisticMixture(256, 1)
    params = tf.constant([[0.0, 0.0, 0.0],     # a wide logistic at the centre
                          [0.0, 5.0, -7.0],    # far right, as narrow as allowed
                          [0.0, -5.0, -7.0],   # far left
                          [0.0, 0.3, -20.0],   # narrower than allowed: clipped
                          [0.0, 0.0, 30.0]])   # wider than allowed: clipped
    table = head.value_logits(params).numpy()
    assert np.isfinite(table).all()
    np.testing.assert_allclose(np.exp(table.astype(np.float64)).sum(-1), 1.0, atol=1e-5)
    # Far right / left: the top / bottom bin holds everything.
    assert table[1, 255] > -1e-6 and table[2, 0] > -1e-6
    # Edge bins by their definition: sigmoid(upper edge of 0) and 1 - sigmoid(lower edge of top).
    np.testing.assert_allclose(table[0, [0, 255]], np.log(1 / (1 + np.exp(1 - 1 / 255))),
                               rtol=1e-5)
    np.testing.assert_allclose(table[0], _mixture_reference(params[0], np.arange(256), 256),
                               rtol=1e-4, atol=1e-6)
    # Gradients are finite too (every branch of the select is finite).
    with tf.GradientTape() as tape:
        tape.watch(params)
        loss = tf.reduce_sum(head.log_prob(params, tf.constant([0, 17, 255, 128, 255])))
    assert np.isfinite(tape.gradient(loss, params).numpy()).all()


def test_mixture_draws_by_inverse_cdf_and_temperature_zero_is_the_mode():
    head = distributions.DiscretizedLogisticMixture(8, 2)
    params = tf.constant([[2.0, -1.0, -0.5, 0.6, -2.0, -1.5]])
    probs = np.exp(head.value_logits(params).numpy()[0])
    u = tf.constant(np.linspace(0.001, 0.999, 50), tf.float32)
    drawn = head.draw(tf.repeat(params, 50, axis=0), u, tf.ones([50])).numpy()
    np.testing.assert_array_equal(drawn, np.searchsorted(np.cumsum(probs), u.numpy()))
    greedy = head.draw(tf.repeat(params, 50, axis=0), u, tf.zeros([50])).numpy()
    np.testing.assert_array_equal(greedy, np.argmax(probs))


def test_head_choice_is_validated():
    with pytest.raises(ValueError, match="at least 2 bits.*head='categorical'"):
        distributions.make_head("logistic_mixture", 1)
    with pytest.raises(ValueError, match="choose one of"):
        distributions.make_head("softmax", 8)
    with pytest.raises(ValueError, match="num_mixtures=0"):
        distributions.make_head("logistic_mixture", 8, 0)
    assert distributions.make_head("categorical", 3).num_params == 8


def test_categorical_gradient_is_the_log_softmax_gather_gradient():
    """The hand-written gradient (`one_hot - softmax`) is autodiff's of log-softmax + gather,
    including repeated targets and a bfloat16 network's logits."""
    rng = np.random.default_rng(3)
    for dtype in (tf.float32, tf.bfloat16):
        logits = tf.constant(rng.normal(size=(3, 4, 6)) * 3, dtype)
        targets = tf.constant(rng.integers(0, 6, (3, 4)))
        weights = tf.constant(rng.normal(size=(3, 4)), tf.float32)
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(logits)
            ours = tf.reduce_sum(weights * distributions.categorical_log_prob(logits, targets))
            plain = tf.reduce_sum(weights * tf.gather(
                tf.nn.log_softmax(tf.cast(logits, tf.float32)), targets, axis=-1, batch_dims=2))
        np.testing.assert_allclose(ours, plain, rtol=1e-6)
        np.testing.assert_allclose(tf.cast(tape.gradient(ours, logits), tf.float32),
                                   tf.cast(tape.gradient(plain, logits), tf.float32),
                                   atol=1e-6 if dtype == tf.float32 else 1e-2)
