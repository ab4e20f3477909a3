import numpy as np
import pytest
import tensorflow as tf

from spn_tf import models
import helpers as testing
from spn_tf.models.subscale import presets as subscale
from spn_tf.layers import SliceEmbedder


def _slices(seed=0):
    return tf.constant(np.random.default_rng(seed).normal(size=(3, 4, 2, 2, 3)), tf.float32)


def test_layer_contract():
    testing.run_layer_test(
        SliceEmbedder, dict(filters=5, num_layers=1, num_slices=4), _slices(),
        (3, 2, 2, 5), call_kwargs=dict(slice_index=tf.constant([0, 1, 3]),
                                       context=tf.ones([3, 1, 1, 7]),
                                       visible=tf.ones([3, 2, 2, 2])))


def test_sees_earlier_slices_only_and_its_meta_position():
    layer = SliceEmbedder(6, 2, num_slices=4)
    slices = _slices()
    index = tf.constant([0, 2, 3])
    with tf.GradientTape() as tape:
        tape.watch(slices)
        loss = tf.reduce_sum(layer(slices, index) ** 2)
    grad = np.abs(tape.gradient(loss, slices).numpy()).sum(axis=(2, 3, 4))
    earlier = np.arange(4)[None, :] < index.numpy()[:, None]
    assert np.all(grad[~earlier] == 0) and np.all(grad[earlier] > 0)
    # With nothing to see, only the meta-position tells the targets apart.
    zeros = tf.zeros_like(slices)
    assert not np.allclose(layer(zeros, tf.constant([1, 1, 1])),
                           layer(zeros, tf.constant([2, 2, 2])))


def test_layer_contract_with_slice_wide_attention():
    testing.run_layer_test(
        SliceEmbedder, dict(filters=4, num_layers=1, num_slices=4, attention_heads=2),
        _slices(), (3, 2, 2, 4), call_kwargs=dict(slice_index=tf.constant([0, 1, 3])))


def test_layer_contract_at_half_resolution_on_odd_slices():
    slices = tf.constant(np.random.default_rng(0).normal(size=(3, 4, 3, 5, 3)), tf.float32)
    testing.run_layer_test(
        SliceEmbedder, dict(filters=4, num_layers=1, num_slices=4, attention_heads=2,
                            half_resolution=True),
        slices, (3, 3, 5, 4), call_kwargs=dict(slice_index=tf.constant([0, 1, 3])))


def test_half_resolution_has_the_same_weights_and_is_another_function():
    full, half = (SliceEmbedder(4, 2, num_slices=4, attention_heads=2, half_resolution=h)
                  for h in (False, True))
    slices, index = _slices(), tf.constant([1, 2, 3])
    full(slices, index), half(slices, index)
    half.set_weights(full.get_weights())  # the same shapes, in the same order
    assert not np.allclose(full(slices, index), half(slices, index))


@pytest.mark.parametrize("half_resolution", [False, True])
@pytest.mark.parametrize("preset", models.PRESET_NAMES)
def test_every_preset_embeds_the_whole_of_the_earlier_slices(preset, half_resolution):
    """The first position of slice k depends on the last pixel of slice k-1 (32x32 slices, the
    paper's: beyond the convolutions' reach in every preset), and not at all on slices k and
    later; so does the half-resolution embedder."""
    pattern = subscale.preset(preset, 32)
    heads = pattern["embedder_attention_heads"]
    layer = SliceEmbedder(4 * heads, pattern["embedder_layers"], num_slices=4,
                          kernel_size=pattern["embedder_kernel_size"], attention_heads=heads,
                          half_resolution=half_resolution)
    slices = tf.constant(np.random.default_rng(1).normal(size=(1, 4, 32, 32, 3)), tf.float32)
    k = 2
    with tf.GradientTape() as tape:
        tape.watch(slices)
        first = tf.reduce_sum(layer(slices, tf.constant([k]))[:, 0, 0, :] ** 2)
    grad = np.abs(tape.gradient(first, slices).numpy()[0])
    assert grad[k - 1, -1, -1].sum() > 0
    assert (grad[k:] == 0).all()
    # The decoder's own causal attention spans the current slice in every preset.
    assert pattern["attention_layers"], preset
