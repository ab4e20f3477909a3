import numpy as np
import pytest
import tensorflow as tf

from spn_tf import orderings


def _images(shape, high=256, seed=0):
    return tf.constant(np.random.default_rng(seed).integers(0, high, size=shape), tf.int32)


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("shape,s", [((2, 4, 4, 1), 2), ((3, 8, 8, 3), 4), ((1, 6, 6, 3), 3),
                                     ((2, 4, 4, 3), 1)])
def test_subscale_round_trip_and_layout(shape, s, jit):
    x = _images(shape)
    split = tf.function(lambda t: orderings.subscale_split(t, s), jit_compile=jit)
    merge = tf.function(lambda t: orderings.subscale_merge(t, s), jit_compile=jit)
    slices = split(x)
    assert slices.shape == (shape[0], s * s, shape[1] // s, shape[2] // s, shape[3])
    for k in range(s * s):
        np.testing.assert_array_equal(slices[:, k], x[:, k // s::s, k % s::s])
    np.testing.assert_array_equal(merge(slices), x)


def test_meta_position_is_offset():
    np.testing.assert_array_equal(orderings.meta_position(tf.range(9), 3),
                                  [[k // 3, k % 3] for k in range(9)])


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("shape,base", [((2, 8, 8, 3), 2), ((1, 16, 16, 1), 4),
                                        ((2, 4, 4, 3), 4), ((1, 8, 8, 1), 1)])
def test_multiscale_round_trip_and_groups(shape, base, jit):
    x = _images(shape)
    split = tf.function(lambda t: orderings.multiscale_split(t, base), jit_compile=jit)
    merge = tf.function(orderings.multiscale_merge, jit_compile=jit)
    low, groups = split(x)
    step = shape[1] // base
    np.testing.assert_array_equal(low, x[:, ::step, ::step])
    if groups:
        finest = groups[-1]
        np.testing.assert_array_equal(finest[:, 0], x[:, 0::2, 1::2])
        np.testing.assert_array_equal(finest[:, 1], x[:, 1::2, 0::2])
        np.testing.assert_array_equal(finest[:, 2], x[:, 1::2, 1::2])
    np.testing.assert_array_equal(merge(low, groups), x)
    # A bijection: every pixel appears exactly once across base and groups.
    total = low.shape[1] ** 2 + sum(3 * g.shape[2] ** 2 for g in groups)
    assert total == shape[1] * shape[2]


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("bits,msb", [(8, 3), (8, 1), (5, 2), (2, 1)])
def test_depth_round_trip(bits, msb, jit):
    x = _images((2, 4, 4, 3), 2 ** bits)
    hi, lo = tf.function(lambda t: orderings.depth_split(t, bits, msb), jit_compile=jit)(x)
    assert int(tf.reduce_max(hi)) < 2 ** msb and int(tf.reduce_max(lo)) < 2 ** (bits - msb)
    np.testing.assert_array_equal(orderings.depth_merge(hi, lo, bits, msb), x)


def test_raster_round_trip():
    x = _images((2, 3, 5, 3))
    seq = tf.function(orderings.raster_flatten, jit_compile=True)(x)
    np.testing.assert_array_equal(seq[:, :3], x[:, 0, 0, :])
    np.testing.assert_array_equal(orderings.raster_unflatten(seq, 3, 5, 3), x)


def test_reduce_bits_keeps_most_significant_bits():
    x = tf.constant([0, 7, 8, 255])
    np.testing.assert_array_equal(orderings.reduce_bits(x, 5), [0, 0, 1, 31])


@pytest.mark.parametrize("call", [
    lambda: orderings.subscale_split(tf.zeros([1, 6, 6, 1], tf.int32), 4),
    lambda: orderings.multiscale_split(tf.zeros([1, 12, 12, 1], tf.int32), 8),
    lambda: orderings.depth_split(tf.zeros([1], tf.int32), 8, 8),
    lambda: orderings.reduce_bits(tf.zeros([1], tf.int32), 0),
])
def test_bad_arguments_raise_value_error(call):
    with pytest.raises(ValueError):
        call()
