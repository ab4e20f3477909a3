"""`SliceEmbedder`: the SPN's conditioning network over the slices generated before a target."""

import keras
import tensorflow as tf
from keras import ops

from spn_tf import hparams
from spn_tf.layers.causal_self_attention import heads_first, project


@keras.saving.register_keras_serializable(package="spn_tf")
class SliceEmbedder(keras.layers.Layer):
    """Embeds the preceding slices of an image into a context aligned with the target slice.

    Subscale Pixel Networks (Menick & Kalchbrenner 2019, §3.2, Fig. 7): the slices generated
    before the target slice `k` are concatenated in depth (slices `>= k` are zeroed, so they
    carry no information and receive exactly zero gradient), the target's meta-position is
    appended as `S*S` one-hot planes (its index `k`, equivalently its offset `(k // S, k % S)`),
    and optional fully visible planes (e.g. the low-depth image in subscale order, for depth
    upscaling) join them. A size-preserving convolutional residual network maps this to a
    `(h, w, filters)` context, the same size as one slice, so the decoder's position `p`
    reads the embedding of everything around `p` in the earlier slices. A global conditioning
    vector (class, embedding) is added after the first convolution.

    Convolutions alone reach `1 + 2L` slice pixels (`L` layers of 3x3): too little for the
    paper's "context of preceding slices in a single slice-shaped tensor". With
    `attention_heads > 0`, an unmasked multi-head self-attention block over the `h*w` slice
    positions follows the convolutions (PixelSNAIL's attention, Chen et al. 2018, without the
    causal mask: nothing the embedder sees is generated at or after the target slice), so
    every position of the embedding depends on every pixel of every earlier slice.

    With `half_resolution=True` (an option, not the paper's: faster, its bits/dim cost is in
    docs/benchmarks.md), the residual blocks and the attention run on the input
    convolution's output average-pooled 2x2, and their output, upsampled (nearest) to the
    slice, is added to that full-resolution input convolution (a U-Net of one level, whose
    skip keeps each position's own neighbourhood sharp): the blocks at a quarter of the cost,
    the attention at a sixteenth (on `ceil(h/2) x ceil(w/2)`).

    Args:
      filters: features of the network and of the output context.
      num_layers: residual blocks (two `kernel_size` convolutions each).
      num_slices: `S*S`, the slices of an image.
      kernel_size: odd kernel size of the convolutions.
      attention_heads: heads of the slice-wide self-attention block (0: none; `filters`
        must be a multiple), each of `filters / attention_heads` features.
      half_resolution: run the blocks and the attention at half the slice's resolution.

    Call: `(slices, slice_index, context=None, visible=None)`:
      slices: float `(B, S*S, h, w, C)` (scaled pixels of all slices; later ones are hidden);
      slice_index: int `(B,)` in `[0, S*S)`: the target slice `k`;
      context: float `(B, 1, 1, D)` global conditioning, or None;
      visible: float `(B, h, w, E)` planes seen at every step, or None.
    → float `(B, h, w, filters)`.
    """

    def __init__(self, filters, num_layers, num_slices, kernel_size=3, attention_heads=0,
                 half_resolution=False, **kwargs):
        super().__init__(**kwargs)
        hparams.check_positive("filters", filters)
        hparams.check_non_negative("num_layers", num_layers)
        hparams.check_positive("num_slices", num_slices)
        # Not for causality: the embedder sees earlier slices only.
        hparams.check_odd_kernel("kernel_size", kernel_size, hparams.ALIGNED)
        self.filters = filters
        self.num_layers = num_layers
        self.num_slices = num_slices
        self.kernel_size = kernel_size
        hparams.check_non_negative("attention_heads", attention_heads)
        if attention_heads and filters % attention_heads:
            raise ValueError(f"filters={filters} must be a multiple of attention_heads="
                             f"{attention_heads} (each head takes filters / heads features).")
        self.attention_heads = attention_heads
        self.half_resolution = hparams.check_bool("half_resolution", half_resolution)
        self.attention_norm = keras.layers.LayerNormalization(name="attention_norm")
        self.attention = keras.layers.MultiHeadAttention(
            attention_heads, filters // attention_heads, name="attention") if (
                attention_heads) else None
        conv = lambda name: keras.layers.Conv2D(filters, kernel_size, padding="same", name=name)
        self.input_conv = conv("input_conv")
        self.context_projection = keras.layers.Dense(filters, name="context_projection")
        self.block_convs = [(conv(f"block_{i}_a"), conv(f"block_{i}_b"))
                            for i in range(num_layers)]

    def build(self, slices_shape, slice_index_shape=None, context_shape=None,
              visible_shape=None):
        _, n, h, w, c = slices_shape
        depth = n * c + self.num_slices + (visible_shape[-1] if visible_shape else 0)
        self.input_conv.build((None, h, w, depth))
        if self.half_resolution:
            h, w = -(-h // 2), -(-w // 2)
        if context_shape is not None:
            self.context_projection.build(context_shape)
        for conv_a, conv_b in self.block_convs:
            conv_a.build((None, h, w, self.filters))
            conv_b.build((None, h, w, self.filters))
        if self.attention is not None:
            self.attention_norm.build((None, h * w, self.filters))
            self.attention.build((None, h * w, self.filters), (None, h * w, self.filters))

    def call(self, slices, slice_index, context=None, visible=None):
        n = self.num_slices
        slice_index = ops.cast(slice_index, "int32")
        earlier = ops.cast(ops.arange(n)[None, :] < slice_index[:, None], slices.dtype)
        slices = slices * earlier[:, :, None, None, None]
        shape = ops.shape(slices)
        # (B, S*S, h, w, C) -> (B, h, w, S*S*C): the earlier slices stacked in depth.
        stacked = ops.reshape(ops.transpose(slices, (0, 2, 3, 1, 4)),
                              (shape[0], shape[2], shape[3], n * slices.shape[4]))
        meta = ops.one_hot(slice_index, n, dtype=slices.dtype)[:, None, None, :]
        planes = [stacked, ops.broadcast_to(meta, (shape[0], shape[2], shape[3], n))]
        if visible is not None:
            planes.append(ops.cast(visible, slices.dtype))
        h = self.input_conv(ops.concatenate(planes, axis=-1))
        if context is not None:
            h = h + self.context_projection(context)
        if not self.half_resolution:
            return self._blocks(h)
        # An odd side's last row or column pools alone ("same": padding is not averaged in).
        coarse = self._blocks(ops.average_pool(h, 2, strides=2, padding="same"))
        fine = ops.repeat(ops.repeat(coarse, 2, axis=1), 2, axis=2)
        return h + fine[:, :shape[2], :shape[3]]

    def _blocks(self, h):
        """The residual blocks, then the attention: float `(B, h, w, filters)` → same."""
        for conv_a, conv_b in self.block_convs:
            h = h + conv_b(ops.relu(conv_a(ops.relu(h))))
        if self.attention is not None:  # every position reads every earlier-slice pixel
            shape = ops.shape(h)
            seq = ops.reshape(h, (shape[0], shape[1] * shape[2], self.filters))
            seq = seq + self._attend(self.attention_norm(seq))
            h = ops.reshape(seq, shape)
        return h

    def _attend(self, seq):
        """`self.attention(seq, seq)` (unmasked, no dropout) with every product 2-D or
        same-rank (`causal_self_attention.project`): float `(B, T, D)` → `(B, T, D)`."""
        attention = self.attention
        queries, keys, values = (heads_first(project(dense, seq)) for dense in (
            attention.query_dense, attention.key_dense, attention.value_dense))
        queries = queries * ops.cast(1.0 / float(attention.key_dim) ** 0.5, queries.dtype)
        weights = tf.nn.softmax(tf.matmul(queries, keys, transpose_b=True))
        return project(attention.output_dense, heads_first(tf.matmul(weights, values)))

    def compute_output_shape(self, slices_shape, slice_index_shape=None, context_shape=None,
                             visible_shape=None):
        return (slices_shape[0], slices_shape[2], slices_shape[3], self.filters)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "num_layers": self.num_layers,
                "num_slices": self.num_slices, "kernel_size": self.kernel_size,
                "attention_heads": self.attention_heads,
                "half_resolution": self.half_resolution}
