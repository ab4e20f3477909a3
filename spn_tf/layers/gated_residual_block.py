"""`GatedResidualBlock`: one layer of the Gated PixelCNN's vertical and horizontal stacks."""

import keras
from keras import ops

from spn_tf import hparams
from spn_tf.layers.masked_conv2d import MaskedConv2D


def conv(layer, x, one_row=None):
    """`layer(x)`, or `layer.call_one_row(x, one_row[id(layer)])` given one-row weights."""
    if one_row is None:
        return layer(x)
    return layer.call_one_row(x, one_row[id(layer)])


def gate(x):
    """`tanh(a) * sigmoid(b)` of the two halves of the last axis."""
    a, b = ops.split(x, 2, axis=-1)
    return ops.tanh(a) * ops.sigmoid(b)


@keras.saving.register_keras_serializable(package="spn_tf")
class GatedResidualBlock(keras.layers.Layer):
    """Gated PixelCNN layer without blind spot (van den Oord et al. 2016, Fig. 2).

    The vertical stack sees the rows above; the horizontal stack sees the current row left of
    the pixel and the pixel's earlier channels, plus the vertical stack. A context tensor
    (class / embedding vector broadcast as `(B, 1, 1, D)`, or a spatial context `(B, H, W, D)`
    aligned with the pixels, e.g. from a slice embedder) biases both gates; it must not depend
    on the pixels being predicted.

    Args:
      filters: features F of each stack, a multiple of `data_channels`.
      kernel_size: odd int.
      data_channels: image channels (channel groups of the horizontal stack).

    Call: `([v, h], context=None)` with `v, h` float `(B, H, W, F)` → `[v', h']`, same shapes.
    """

    def __init__(self, filters, kernel_size=3, data_channels=3, **kwargs):
        super().__init__(**kwargs)
        hparams.check_positive("data_channels", data_channels)
        hparams.check_channel_features("filters", filters, data_channels)
        hparams.check_odd_kernel("kernel_size", kernel_size)
        self.filters = filters
        self.kernel_size = kernel_size
        self.data_channels = data_channels
        f2, k = 2 * filters, kernel_size
        self.vertical_conv = MaskedConv2D(f2, k, "B", data_channels, "vertical", output_splits=2)
        self.horizontal_conv = MaskedConv2D(f2, (1, k), "B", data_channels, "horizontal",
                                            output_splits=2)
        # Vertical features only see rows above, so mixing them in needs no mask; keep the
        # output's channel-group layout the same as the horizontal conv's.
        self.vertical_to_horizontal = keras.layers.Conv2D(f2, 1)
        self.horizontal_out = MaskedConv2D(filters, 1, "B", data_channels, "horizontal")
        self.context_vertical = keras.layers.Dense(f2)
        self.context_horizontal = keras.layers.Dense(f2)

    def build(self, inputs_shape, context_shape=None):
        v_shape, h_shape = inputs_shape
        self.vertical_conv.build(v_shape)
        self.horizontal_conv.build(h_shape)
        self.vertical_to_horizontal.build(tuple(v_shape[:-1]) + (2 * self.filters,))
        self.horizontal_out.build(h_shape)
        if context_shape is not None:
            self.context_vertical.build(context_shape)
            self.context_horizontal.build(context_shape)

    def call(self, inputs, context=None):
        v, h = inputs
        v, vertical_term = self.vertical_step(v, context)
        return [v, self.horizontal_step(h, vertical_term, context)]

    def masked_convs(self):
        """The block's `MaskedConv2D`s (a sampler gathers their one-row weights)."""
        return [self.vertical_conv, self.horizontal_conv, self.horizontal_out]

    def vertical_step(self, v, context=None, one_row=None):
        """The vertical half: `(v', vertical_term)`, the term it adds to the horizontal gate.

        Split from `horizontal_step` so that a raster sampler can compute the vertical stack
        once per row (it sees only rows above) and the horizontal one per sub-pixel.
        `one_row`: None, or `{id(conv): weights}` of `masked_convs` for
        `MaskedConv2D.call_one_row` (a plain-graph sampler's windows).
        """
        v_pre = conv(self.vertical_conv, v, one_row)
        if context is not None:
            v_pre = v_pre + self.context_vertical(context)
        # The horizontal stack reads the vertical pre-activations, context included, so the
        # last block's vertical weights get gradients although its `v'` is unused.
        return gate(v_pre), self.vertical_to_horizontal(v_pre)

    def horizontal_step(self, h, vertical_term, context=None, one_row=None):
        """The horizontal half: `h'` from `h` and `vertical_term` (same height and width);
        `one_row` as in `vertical_step`."""
        h_pre = conv(self.horizontal_conv, h, one_row) + vertical_term
        if context is not None:
            h_pre = h_pre + self.context_horizontal(context)
        return h + conv(self.horizontal_out, gate(h_pre), one_row)

    def compute_output_shape(self, inputs_shape, context_shape=None):
        return list(inputs_shape)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters,
                "kernel_size": self.kernel_size, "data_channels": self.data_channels}
