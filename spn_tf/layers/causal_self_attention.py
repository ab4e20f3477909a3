"""`CausalSelfAttention`: self-attention over raster order that sees only earlier pixels."""

import math

import keras
import tensorflow as tf
from keras import ops

from spn_tf import hparams

# Queries per block of `CausalSelfAttention.call` (measured here: at 256 and 1024 positions,
# 64 was the fastest of 32, 64, 128 and 256, a fifth to a third faster than one block).
QUERY_BLOCK = 64


def query_blocks(length):
    """`[(start, stop), ...]`: `range(length)` cut into blocks of `QUERY_BLOCK` (the last one
    shorter)."""
    return [(start, min(length, start + QUERY_BLOCK)) for start in range(0, length, QUERY_BLOCK)]


def heads_first(x):
    """`(B, T, heads, dim)` <-> `(B, heads, T, dim)`."""
    return tf.transpose(x, (0, 2, 1, 3))


def project(dense, x):
    """`dense(x)` for a projection of `keras.layers.MultiHeadAttention` (an `EinsumDense`,
    no activation) as one 2-D matrix product.

    Keras's TensorFlow einsum computes these projections as `tf.matmul` of the rank-3 (or,
    flattened, rank-3) sequence by the rank-2 kernel: broadcast batch dimensions, the product
    that corrupts the heap with oneDNN in TF 2.21 (`spn_tf.matmul_ranks`). Here every leading
    position is a row of one `(rows, in) x (in, out)` product instead.

    Args:
      dense: the `query_dense` / `key_dense` / `value_dense` (kernel `(D, heads, dim)`) or
        `output_dense` (kernel `(heads, dim, D)`) of a built `MultiHeadAttention`.
      x: float `(B, T, D)`, or `(B, T, heads, dim)` for `output_dense`.

    Returns:
      `(B, T, heads, dim)`, or `(B, T, D)` for `output_dense`, in `dense`'s compute dtype
      (`x` and the weights cast to it, as a call of `dense` inside a layer does: bfloat16
      under `mixed_bfloat16`, from any caller, a sampler's `step` included).
    """
    dtype = dense.compute_dtype
    kernel, x = ops.cast(dense.kernel, dtype), ops.cast(x, dtype)
    operands = dense.equation.split("->")[0]  # e.g. "abc,cde": "c" is contracted
    x_axes, kernel_axes = operands.split(",")
    contracted = len(set(x_axes) & set(kernel_axes))  # x's trailing axes, the kernel's leading
    inner = x.shape[-contracted:]
    outer = kernel.shape[contracted:]
    rows = ops.reshape(x, (-1, math.prod(inner)))
    out = tf.matmul(rows, ops.reshape(kernel, (math.prod(inner), math.prod(outer))))
    if dense.bias is not None:
        out = out + ops.reshape(ops.cast(dense.bias, dtype), (-1,))
    lead = ops.shape(x)[:len(x.shape) - contracted]
    return ops.reshape(out, tuple(lead) + tuple(outer))


@keras.saving.register_keras_serializable(package="spn_tf")
class CausalSelfAttention(keras.layers.Layer):
    """Multi-head self-attention in raster order, strictly causal at pixel level.

    Features at pixel p may depend on p's own earlier channels (channel-masked stacks); mixing
    them across heads would leak a later channel into an earlier one. So the sequence is
    shifted by one pixel first: queries, keys and values at p come from pixel p - 1, and p
    attends to shifted positions <= p, i.e. to pixels < p only (PixelSNAIL, Chen et al. 2018,
    uses the same shift). The first pixel attends to a zero vector. The output is added to
    every channel group, which is safe because it does not depend on pixel p.

    Args:
      num_heads: attention heads.
      key_dim: size of each head's queries and keys.

    Call: float `(B, H, W, D)` → `(B, H, W, D)` (the attention output, not yet added).
    """

    def __init__(self, num_heads=4, key_dim=16, **kwargs):
        super().__init__(**kwargs)
        hparams.check_positive("num_heads", num_heads)
        hparams.check_positive("key_dim", key_dim)
        self.num_heads = num_heads
        self.key_dim = key_dim
        self.norm = keras.layers.LayerNormalization()
        self.attention = keras.layers.MultiHeadAttention(num_heads, key_dim)

    def build(self, input_shape):
        seq_shape = (input_shape[0], None, input_shape[-1])
        self.norm.build(seq_shape)
        self.attention.build(seq_shape, seq_shape)

    def call(self, inputs):
        batch = ops.shape(inputs)[0]
        height, width, depth = inputs.shape[1], inputs.shape[2], inputs.shape[3]
        seq = ops.reshape(inputs, (batch, height * width, depth))
        seq = ops.pad(seq, [[0, 0], [1, 0], [0, 0]])[:, :-1]
        seq = self.norm(seq)
        queries, keys, values = (heads_first(project(dense, seq)) for dense in (
            self.attention.query_dense, self.attention.key_dense, self.attention.value_dense))
        mask = ops.tril(ops.ones((height * width,) * 2, dtype="bool"))
        # Queries in blocks, each against the keys up to its end: the keys after a block are
        # all hidden from it, so their scores are not computed (at 256 positions in blocks of
        # 64, 5/8 of the score matrix).
        mixed = [self.mix(queries[:, :, start:stop], keys[:, :, :stop], values[:, :, :stop],
                          mask[None, None, start:stop, :stop])
                 for start, stop in query_blocks(height * width)]
        out = project(self.attention.output_dense, heads_first(ops.concatenate(mixed, axis=2)))
        return ops.reshape(out, (batch, height, width, depth))

    def attend(self, queries, keys, values, mask):
        """Scaled dot-product attention of the projected sequences, then the output projection.

        Written with public ops over the `MultiHeadAttention` sublayer's public projections
        (it holds the weights), so that `call` and `step` share one computation and nothing
        private of Keras is used.

        Args:
          queries: `(B, Tq, num_heads, key_dim)`; keys `(B, Tk, num_heads, key_dim)`;
            values `(B, Tk, num_heads, value_dim)`.
          mask: bool, broadcastable to `(B, num_heads, Tq, Tk)`: keys each query may see
            (every row sees at least one).

        Returns:
          float `(B, Tq, D)`.
        """
        mixed = self.mix(*(heads_first(x) for x in (queries, keys, values)), mask)
        return project(self.attention.output_dense, heads_first(mixed))

    def mix(self, queries, keys, values, mask):
        """`attend` on heads-first sequences, without the output projection.

        Heads first, the products are plain batched matrix products (in a training step a
        fifth faster than einsums over the `(B, T, heads, dim)` layout, measured here).

        Args:
          queries: `(B, num_heads, Tq, key_dim)`; keys `(B, num_heads, Tk, key_dim)`;
            values `(B, num_heads, Tk, value_dim)`; mask as in `attend`.

        Returns:
          float `(B, num_heads, Tq, value_dim)`: each query's softmax-weighted sum of the
          values it may see.
        """
        queries = queries * ops.cast(1.0 / float(self.key_dim) ** 0.5, queries.dtype)
        scores = tf.cast(tf.matmul(queries, keys, transpose_b=True), "float32")
        # Softmax in float32 (TensorFlow's fused kernel: `ops.softmax` warns on one key, a 1x1
        # slice, where the weight is rightly 1); a hidden key's weight underflows to exactly 0.
        weights = tf.nn.softmax(tf.where(mask, scores, -1e9))
        return tf.matmul(tf.cast(weights, values.dtype), values)

    def initial_cache(self, batch_size, length):
        """Zero key and value caches for `step` over a sequence of `length` pixels.

        Returns:
          `(keys, values)`: `(B, length, num_heads, key_dim)` and
          `(B, length, num_heads, value_dim)` in the compute dtype.
        """
        heads, dtype = self.num_heads, self.compute_dtype
        return (ops.zeros((batch_size, length, heads, self.attention.key_dim), dtype),
                ops.zeros((batch_size, length, heads, self.attention.value_dim), dtype))

    def step(self, previous, position, cache):
        """The output at one pixel from the keys and values of the pixels before it.

        A raster sampler calls this once per pixel, in order: `previous` is this layer's input
        at pixel `position - 1` (zeros at pixel 0: the shift's padding), which is final once
        that pixel is drawn. Its normalized projections are written at `position` of the
        shifted sequence, and one query attends over the whole cache with the causal mask
        cut to that query's row: the same projections, scores, masked softmax over all
        `length` positions and weighted sum as `call` computes for that row.

        Args:
          previous: float `(B, D)`.
          position: int32 scalar: the pixel's raster index.
          cache: `(keys, values)` from `initial_cache` or the previous step.

        Returns:
          `(output, cache)`: `call(inputs)` at the pixel, float `(B, D)`, and the updated cache.
        """
        keys, values = cache
        seq = self.norm(previous[:, None])
        length = ops.shape(keys)[1]
        # Row `position` of every example's cache: an in-place update where the runtime can,
        # not a copy of the whole cache per pixel (a plain graph's select would copy).
        batch = ops.shape(keys)[0]
        here = ops.stack([ops.arange(batch, dtype="int32"),
                          ops.full((batch,), ops.cast(position, "int32"), dtype="int32")], 1)
        keys = ops.scatter_update(keys, here, project(self.attention.key_dense, seq)[:, 0])
        values = ops.scatter_update(values, here,
                                    project(self.attention.value_dense, seq)[:, 0])
        mask = ops.reshape(ops.arange(length) <= position, (1, 1, 1, length))
        out = self.attend(project(self.attention.query_dense, seq), keys, values, mask)
        return out[:, 0], (keys, values)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "num_heads": self.num_heads, "key_dim": self.key_dim}
