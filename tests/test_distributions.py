import math

import numpy as np
import tensorflow as tf

from spn_tf import distributions


def test_log_prob_matches_softmax_and_bits_per_dim():
    logits = tf.constant(np.random.default_rng(0).normal(size=(2, 3, 4)), tf.float32)
    targets = tf.constant([[0, 1, 3], [2, 2, 0]])
    lp = distributions.image_log_prob(logits, targets)
    expected = np.log(tf.nn.softmax(logits).numpy())
    want = [sum(expected[b, i, targets[b, i]] for i in range(3)) for b in range(2)]
    np.testing.assert_allclose(lp, want, rtol=1e-5)
    np.testing.assert_allclose(distributions.bits_per_dim(lp, 3), -np.array(want) / (3 * math.log(2)),
                               rtol=1e-6)


def test_log_prob_is_float32_and_stable_under_bfloat16_logits():
    logits = tf.constant([[[80.0, -80.0, 0.0]]], tf.bfloat16)
    lp = distributions.image_log_prob(logits, tf.constant([[1]]))
    assert lp.dtype == tf.float32 and np.isfinite(lp.numpy()).all()
    np.testing.assert_allclose(lp, [-160.0], rtol=1e-2)


def test_inverse_cdf_sampling_and_temperature_zero():
    logits = tf.math.log(tf.constant([[0.2, 0.5, 0.3]]))
    u = tf.constant([0.1, 0.3, 0.69, 0.71, 0.99])
    drawn = distributions.sample_categorical(tf.repeat(logits, 5, axis=0), u, tf.ones([5]))
    np.testing.assert_array_equal(drawn, [0, 1, 1, 2, 2])
    greedy = distributions.sample_categorical(tf.repeat(logits, 5, axis=0), u, tf.zeros([5]))
    np.testing.assert_array_equal(greedy, [1] * 5)
