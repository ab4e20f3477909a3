"""`MaskedDecoder`: a Gated PixelCNN with optional causal self-attention, ending in logits."""

import keras
from keras import ops

from spn_tf import hparams
from spn_tf.layers.causal_self_attention import CausalSelfAttention
from spn_tf.layers.gated_residual_block import GatedResidualBlock, conv
from spn_tf.layers.masked_conv2d import MaskedConv2D


@keras.saving.register_keras_serializable(package="spn_tf")
class MaskedDecoder(keras.layers.Layer):
    """Raster-order decoder: logits of every sub-pixel given the earlier ones and a context.

    Mask-A vertical and horizontal convolutions open the two stacks, `num_layers` gated
    residual blocks follow, with causal self-attention after the blocks listed in
    `attention_layers` (PixelSNAIL-style, Chen et al. 2018; the SPN decoder, Menick &
    Kalchbrenner 2019 §3.2), and a channel-masked 1x1 head gives `num_outputs` per sub-pixel
    (the likelihood head's parameters). The outputs at pixel p, channel c depend only on pixels
    before p (raster order), channels < c of p, and the context at p.

    Args:
      filters: features per stack, a multiple of `data_channels`.
      num_layers: gated residual blocks.
      num_outputs: outputs per sub-pixel, the parameters of the model's likelihood head
        (`spn_tf.distributions`: `2**bits` logits for the categorical).
      data_channels: image channels (1 or 3).
      kernel_size: kernel of the blocks (odd).
      first_kernel_size: kernel of the mask-A input convolutions (odd).
      attention_layers: block indices followed by self-attention.
      num_heads, key_dim: attention sizes.

    Call: `(x, context=None)`: `x` float `(B, H, W, C)` (scaled pixels), `context` float
    `(B, H or 1, W or 1, D)` → the head's outputs float `(B, H, W, C, num_outputs)`.
    """

    def __init__(self, filters, num_layers, num_outputs, data_channels=3, kernel_size=3,
                 first_kernel_size=7, attention_layers=(), num_heads=4, key_dim=16, **kwargs):
        super().__init__(**kwargs)
        hparams.check_positive("data_channels", data_channels)
        hparams.check_channel_features("filters", filters, data_channels)
        # Rows above reach the horizontal stack only through a block's vertical term.
        hparams.check_positive("num_layers", num_layers)
        if not hparams.is_int(num_outputs) or num_outputs < 2:
            raise ValueError(f"num_outputs={num_outputs!r} must be an int >= 2.")
        hparams.check_odd_kernel("kernel_size", kernel_size)
        hparams.check_first_kernel("first_kernel_size", first_kernel_size)
        hparams.check_layer_indices("attention_layers", attention_layers, num_layers)
        self.filters = filters
        self.num_layers = num_layers
        self.num_outputs = num_outputs
        self.data_channels = data_channels
        self.kernel_size = kernel_size
        self.first_kernel_size = first_kernel_size
        self.attention_layers = tuple(attention_layers)
        self.num_heads = num_heads
        self.key_dim = key_dim
        c, k0 = data_channels, first_kernel_size
        self.vertical_in = MaskedConv2D(filters, k0, "A", c, "vertical")
        self.horizontal_in = MaskedConv2D(filters, (1, k0), "A", c, "horizontal")
        self.blocks = [GatedResidualBlock(filters, kernel_size, c, name=f"block_{i}")
                       for i in range(num_layers)]
        self.attentions = [CausalSelfAttention(num_heads, key_dim, name=f"attention_{i}")
                           for i in self.attention_layers]
        self.head_hidden = MaskedConv2D(filters, 1, "B", c, "horizontal")
        self.head_out = MaskedConv2D(c * num_outputs, 1, "B", c, "horizontal")

    def build(self, x_shape, context_shape=None):
        features = tuple(x_shape[:-1]) + (self.filters,)
        self.vertical_in.build(x_shape)
        self.horizontal_in.build(x_shape)
        for i, block in enumerate(self.blocks):
            block.build([features, features], context_shape)
            if i in self.attention_layers:
                self.attentions[self.attention_layers.index(i)].build(features)
        self.head_hidden.build(features)
        self.head_out.build(features)

    def call(self, x, context=None):
        return self.horizontal_stack(x, self.vertical_stack(x, context), context)

    @property
    def receptive_field(self):
        """How far the convolutions reach: rows above = columns left of a pixel (all layers).

        Row r of `vertical_stack` depends on rows `[r - receptive_field, r)` of `x`; column j
        of `horizontal_stack` on columns `[j - receptive_field, j]` of its inputs. Attention
        layers reach further (everything before the pixel): see `attention_layers`.
        """
        return self.first_kernel_size // 2 + self.num_layers * (self.kernel_size // 2)

    def one_row_weights(self):
        """`{id(conv): weights}` of every `MaskedConv2D` here (`MaskedConv2D.one_row_weights`):
        the `one_row` argument of the stacks and the head, gathered once before a
        plain-graph sampler's loops."""
        convs = [self.vertical_in, self.horizontal_in, self.head_hidden, self.head_out]
        convs += [layer for block in self.blocks for layer in block.masked_convs()]
        return {id(layer): layer.one_row_weights() for layer in convs}

    def vertical_stack(self, x, context=None, one_row=None):
        """The vertical stack: what it adds to each block's horizontal gate.

        Row r of the result depends on rows above r of `x` only, so a raster sampler computes
        it once per row (`spn_tf.sampling.cached_raster_sample`).

        Args:
          x: float `(B, H, W, C)`; context as in `call`.
          one_row: None, or `one_row_weights()`: one-row (and 1x1) convolutions as matrix
            products (`MaskedConv2D.call_one_row`).

        Returns:
          list of `num_layers` floats `(B, H, W, 2 * filters)`.
        """
        v = conv(self.vertical_in, x, one_row)
        vertical_terms = []
        for block in self.blocks:
            v, term = block.vertical_step(v, context, one_row)
            vertical_terms.append(term)
        return vertical_terms

    def horizontal_stack(self, x, vertical_terms, context=None):
        """The horizontal stack and the head: logits from `x` and `vertical_stack`'s terms.

        Args:
          x: float `(B, H, W, C)`; vertical_terms: from `vertical_stack`, cut to the same
            rows and columns as `x`; context as in `call`, cut likewise if spatial.

        Returns:
          the head's outputs, float `(B, H, W, C, num_outputs)`.
        """
        return self.head(self.horizontal_features(x, vertical_terms, context)[0])

    def horizontal_features(self, x, vertical_terms, context=None, attention_outputs=None,
                            one_row=None):
        """The horizontal stack without the head, and the inputs of its attention layers.

        Args:
          x, vertical_terms, context: as in `horizontal_stack`.
          attention_outputs: None (each attention layer runs over `x`'s positions), or one
            float `(B, H, W, filters)` per attention layer: its outputs at `x`'s positions,
            computed elsewhere (a raster sampler's cache, `CausalSelfAttention.step`: attention
            at a pixel sees every earlier pixel, beyond a window of `x`).
          one_row: as in `vertical_stack`.

        Returns:
          `(h, attention_inputs)`: features float `(B, H, W, filters)` for `head`, and what
          each attention layer read (its input), a list of floats `(B, H, W, filters)`.
        """
        h = conv(self.horizontal_in, x, one_row)
        attention_inputs = []
        for i, (block, term) in enumerate(zip(self.blocks, vertical_terms)):
            h = block.horizontal_step(h, term, context, one_row)
            if i in self.attention_layers:
                k = self.attention_layers.index(i)
                attention_inputs.append(h)
                h = h + (self.attentions[k](h) if attention_outputs is None
                         else attention_outputs[k])
        return h, attention_inputs

    def head(self, h, one_row=None):
        """The head's outputs float `(B, H, W, C, num_outputs)` from features `(B, H, W,
        filters)`; `one_row` as in `vertical_stack`."""
        # ELU, not ReLU: no dead units, so every allowed dependency has a non-zero gradient.
        out = conv(self.head_out, ops.elu(conv(self.head_hidden, ops.elu(h), one_row)), one_row)
        shape = ops.shape(out)
        return ops.reshape(out, (shape[0], shape[1], shape[2], self.data_channels,
                                 self.num_outputs))

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "num_layers": self.num_layers,
                "num_outputs": self.num_outputs, "data_channels": self.data_channels,
                "kernel_size": self.kernel_size, "first_kernel_size": self.first_kernel_size,
                "attention_layers": list(self.attention_layers), "num_heads": self.num_heads,
                "key_dim": self.key_dim}
