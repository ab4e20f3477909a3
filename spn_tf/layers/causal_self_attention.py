"""`CausalSelfAttention`: self-attention over raster order that sees only earlier pixels."""

import keras
from keras import ops


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
        length = height * width
        mask = ops.tril(ops.ones((length, length), dtype="bool"))
        out = self.attention(seq, seq, attention_mask=mask[None])
        return ops.reshape(out, (batch, height, width, depth))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "num_heads": self.num_heads, "key_dim": self.key_dim}
