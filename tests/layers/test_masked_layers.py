"""Every masked layer: serialization round trip, jit fit step, exact causality."""

import numpy as np
import pytest
import tensorflow as tf

from spn_tf.layers import causal_self_attention, masked_conv2d
from spn_tf.layers import (CausalSelfAttention, ConditionEmbedding, GatedResidualBlock,
                           MaskedConv2D, MaskedDecoder)
from helpers import assert_causal, raster_order, run_layer_test

X = np.random.default_rng(0).normal(size=(2, 4, 4, 6)).astype(np.float32)


def test_masked_conv2d_layer():
    run_layer_test(MaskedConv2D, dict(filters=6, kernel_size=3, mask_type="A", data_channels=3),
                   X, (2, 4, 4, 6))


@pytest.mark.parametrize("stack,mask_type,kernel_size", [
    ("vertical", "A", 5), ("vertical", "B", 3), ("vertical", "A", 1), ("horizontal", "A", (1, 5)),
    ("horizontal", "B", (1, 3)), ("horizontal", "B", 1), ("raster", "A", 3), ("raster", "B", 5),
    ("horizontal", "B", (3, 3)),
])
@pytest.mark.parametrize("shape", [(2, 4, 5, 6), (2, 1, 1, 6), (1, 2, 1, 6)])
def test_cropped_convolution_equals_the_full_masked_convolution(stack, mask_type, kernel_size,
                                                                shape):
    """The kernel cut to its kept taps, with shifted padding, computes the full masked 'same'
    convolution, on images smaller than the kernel too."""
    layer = MaskedConv2D(6, kernel_size, mask_type, 3, stack)
    x = tf.constant(np.random.default_rng(1).normal(size=shape), tf.float32)
    out = layer(x)
    full = tf.nn.conv2d(x, layer.kernel * layer._mask, 1, "SAME") + layer.bias
    np.testing.assert_allclose(out, full, rtol=1e-5, atol=1e-6)
    assert out.shape == shape[:3] + (6,)


@pytest.mark.parametrize("stack,mask_type,kernel_size", [
    ("vertical", "B", 4), ("vertical", "A", 4), ("horizontal", "B", (1, 4)), ("raster", "A", 2),
])
def test_cropped_convolution_keeps_same_padding_for_even_kernels(stack, mask_type, kernel_size,
                                                                 monkeypatch):
    """Even kernels are refused, but when validation is bypassed the layer still computes
    the full masked 'same' convolution, off-centre padding included: the leak that
    `spn_tf.check`'s power tests must find stays findable."""
    monkeypatch.setattr(masked_conv2d.hparams, "check_odd_kernel", lambda *a, **k: None)
    layer = MaskedConv2D(6, kernel_size, mask_type, 3, stack)
    x = tf.constant(np.random.default_rng(2).normal(size=(2, 5, 6, 6)), tf.float32)
    out = layer(x)
    full = tf.nn.conv2d(x, layer.kernel * layer._mask, 1, "SAME") + layer.bias
    np.testing.assert_allclose(out, full, rtol=1e-5, atol=1e-6)


def test_gated_residual_block_layer():
    out = GatedResidualBlock(6, 3, 3)([X, X])
    assert [tuple(o.shape) for o in out] == [(2, 4, 4, 6)] * 2
    cfg = GatedResidualBlock(6, 3, 3).get_config()
    assert GatedResidualBlock.from_config(cfg).get_config() == cfg


def test_causal_self_attention_layer():
    run_layer_test(CausalSelfAttention, dict(num_heads=2, key_dim=4), X, (2, 4, 4, 6))


def test_condition_embedding_layer():
    layer = ConditionEmbedding(8, num_classes=5, embedding_dim=3)
    out = layer({"label": tf.constant([0, 4]), "embedding": tf.ones([2, 3])})
    assert out.shape == (2, 1, 1, 8)
    assert ConditionEmbedding.from_config(layer.get_config()).get_config() == layer.get_config()


def test_masked_decoder_layer():
    run_layer_test(MaskedDecoder, dict(filters=6, num_layers=1, num_outputs=4, data_channels=3,
                                       attention_layers=(0,), num_heads=1, key_dim=4),
                   X[..., :3], (2, 4, 4, 3, 4))


@pytest.mark.parametrize("mask_type", ["A", "B"])
@pytest.mark.parametrize("channels", [1, 3])
def test_masked_conv2d_is_causal(mask_type, channels):
    # Raster stack, one layer: with mask B a sub-pixel may see itself, so shift the order.
    layer = MaskedConv2D(channels, 3, mask_type, channels, "raster")
    if mask_type == "A":
        order = raster_order(4, 4, channels)
        fn = lambda x: layer(x)[..., None]  # noqa: E731
        assert_causal(fn, order)
    else:
        # Mask B: output c sees input c at the same pixel and nothing later.
        x = tf.Variable(tf.random.normal([1, 4, 4, channels]))
        with tf.GradientTape() as tape:
            y = layer(x)[0, 1, 1, 0]
        grad = tape.gradient(y, x).numpy()[0]
        later = raster_order(4, 4, channels) > raster_order(4, 4, channels)[1, 1, 0]
        assert np.all(grad[later] == 0) and grad[1, 1, 0] != 0


@pytest.mark.parametrize("channels", [1, 3])
def test_masked_decoder_is_causal_without_blind_spot(channels):
    decoder = MaskedDecoder(filters=3 * channels, num_layers=2, num_outputs=3,
                            data_channels=channels, kernel_size=3, first_kernel_size=3,
                            attention_layers=(1,), num_heads=1, key_dim=4)
    assert_causal(lambda x: decoder(x), raster_order(5, 5, channels))
    # No blind spot: after 2 blocks the last pixel sees the pixel up-right of it.
    x = tf.Variable(tf.random.normal([1, 5, 5, channels]))
    with tf.GradientTape() as tape:
        y = tf.reduce_sum(decoder(x)[0, 2, 1])
    assert np.any(tape.gradient(y, x).numpy()[0, 1, 3] != 0)


@pytest.mark.parametrize("query_block", [4, 64])  # three blocks (the last shorter), one
def test_causal_self_attention_sees_only_earlier_pixels(monkeypatch, query_block):
    monkeypatch.setattr(causal_self_attention, "QUERY_BLOCK", query_block)
    layer = CausalSelfAttention(num_heads=2, key_dim=4)
    order = np.broadcast_to(np.arange(9).reshape(3, 3, 1), (3, 3, 6))
    assert_causal(lambda x: layer(x)[..., None], order)


def test_causal_self_attention_in_query_blocks_equals_one_block(monkeypatch):
    """Blocks of queries that skip the keys after them compute the full masked attention."""
    layer = CausalSelfAttention(num_heads=2, key_dim=4)
    inputs = tf.random.stateless_normal((2, 3, 5, 6), seed=[1, 2])
    whole = layer(inputs)
    monkeypatch.setattr(causal_self_attention, "QUERY_BLOCK", 4)
    assert causal_self_attention.query_blocks(15) == [(0, 4), (4, 8), (8, 12), (12, 15)]
    np.testing.assert_allclose(layer(inputs), whole, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("channels", [1, 3])
def test_gated_residual_block_is_causal_on_causal_inputs(channels):
    # The block's contract: given a vertical stack that sees rows above and a horizontal stack
    # that is causal (mask A inputs), its horizontal output stays causal per channel group.
    vertical = MaskedConv2D(channels, 3, "A", channels, "vertical")
    horizontal = MaskedConv2D(channels, (1, 3), "A", channels, "horizontal")
    block = GatedResidualBlock(channels, 3, channels)
    context = tf.ones([1, 1, 1, 2])

    def fn(x):
        _, h = block([vertical(x), horizontal(x)], context=context)
        return h[..., None]

    assert_causal(fn, raster_order(4, 4, channels))
