"""`GroupPredictor`: logits of one multiscale group from everything generated before it."""

import keras
from keras import ops

from spn_tf.layers.masked_conv2d import MaskedConv2D


@keras.saving.register_keras_serializable(package="spn_tf")
class GroupPredictor(keras.layers.Layer):
    """A size-preserving ResNet over the known content, with a channel-autoregressive head.

    The "type A" group network of Reed et al. 2017 (§3): every pixel of a group is predicted in
    parallel from the lower resolution image and the earlier groups of the same scale, laid out
    spatially aligned at the group's resolution `r x r` (one channel plane per known group).
    The ResNet is not spatially masked: nothing it sees belongs to the group being predicted.
    The head makes the channels autoregressive inside a pixel (R, then G given R, then B given
    R, G): a 1x1 mask-A convolution of the group's own pixel values (a pure channel mask) is
    added to the ResNet features, then 1x1 mask-B layers give `data_channels * num_values`
    logits. So pixels of a group are conditionally independent given the known content.

    The ResNet ends in a 1x1 projection so that every channel's logits read all its features.
    The ResNet features do not depend on the group's pixels, so a sampler computes them once
    per group (`features`) and reruns only the head (`head`) once per channel.

    One network serves every scale: a learned per-scale vector (`scale` in `[0, num_scales)`)
    tells it which resolution it is upscaling.

    Args:
      filters: features of the ResNet and head, a multiple of `data_channels`.
      num_blocks: residual blocks (two convolutions each).
      num_values: categories per sub-pixel (`2**bits`).
      data_channels: image channels (1 or 3).
      kernel_size: kernel of the ResNet convolutions (odd).
      num_scales: number of resolution doublings the network is shared by.

    Call: `(known, pixels, context=None, scale=0)`: `known` float `(B, r, r, D)` (the lower
    resolution image and earlier groups, scaled, stacked on channels), `pixels` float
    `(B, r, r, data_channels)` (the group's own scaled values; only earlier channels of a
    pixel reach its logits), `context` float `(B, 1, 1, E)` or None → logits float
    `(B, r, r, data_channels, num_values)`.

    References:
      Reed, van den Oord, Kalchbrenner, Gómez Colmenarejo, Wang, Belov, de Freitas. Parallel
      Multiscale Autoregressive Density Estimation. ICML 2017.
    """

    def __init__(self, filters, num_blocks, num_values, data_channels=3, kernel_size=3,
                 num_scales=1, **kwargs):
        super().__init__(**kwargs)
        if filters % data_channels:
            raise ValueError(
                f"filters={filters} must be a multiple of the image channels {data_channels}.")
        self.filters = filters
        self.num_blocks = num_blocks
        self.num_values = num_values
        self.data_channels = data_channels
        self.kernel_size = kernel_size
        self.num_scales = num_scales
        self.conv_in = keras.layers.Conv2D(filters, kernel_size, padding="same")
        self.context_projection = keras.layers.Dense(filters)
        self.block_convs = [
            [keras.layers.Conv2D(filters, kernel_size, padding="same", name=f"block_{i}_{j}")
             for j in range(2)] for i in range(num_blocks)]
        # The head's channel masks give each channel a third of the features: a full 1x1
        # projection lets every channel read all the ResNet features.
        self.features_out = keras.layers.Dense(filters)
        c = data_channels
        self.pixels_in = MaskedConv2D(filters, 1, "A", c, "horizontal")
        self.head_hidden = MaskedConv2D(filters, 1, "B", c, "horizontal")
        self.head_out = MaskedConv2D(c * num_values, 1, "B", c, "horizontal")

    def build(self, known_shape, pixels_shape, context_shape=None):
        features = tuple(known_shape[:-1]) + (self.filters,)
        self.conv_in.build(known_shape)
        self.scale_embedding = self.add_weight(
            name="scale_embedding", shape=(self.num_scales, self.filters), initializer="zeros")
        if context_shape is not None:
            self.context_projection.build(context_shape)
        for convs in self.block_convs:
            for conv in convs:
                conv.build(features)
        self.features_out.build(features)
        self.pixels_in.build(pixels_shape)
        self.head_hidden.build(features)
        self.head_out.build(features)

    def features(self, known, context=None, scale=0):
        """ResNet features `(B, r, r, filters)` of the known content."""
        h = self.conv_in(known) + ops.cast(self.scale_embedding[scale], known.dtype)
        if context is not None:
            h = h + self.context_projection(context)
        for first, second in self.block_convs:
            h = h + second(ops.relu(first(ops.relu(h))))
        return self.features_out(ops.relu(h))

    def head(self, features, pixels):
        """Logits `(B, r, r, data_channels, num_values)`; channel c sees `pixels[..., :c]`."""
        h = ops.relu(features + self.pixels_in(pixels))
        out = self.head_out(ops.relu(self.head_hidden(h)))
        shape = ops.shape(out)
        return ops.reshape(out, (shape[0], shape[1], shape[2], self.data_channels,
                                 self.num_values))

    def call(self, known, pixels, context=None, scale=0):
        return self.head(self.features(known, context, scale), pixels)

    def compute_output_shape(self, known_shape, pixels_shape, context_shape=None):
        return tuple(pixels_shape) + (self.num_values,)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "num_blocks": self.num_blocks,
                "num_values": self.num_values, "data_channels": self.data_channels,
                "kernel_size": self.kernel_size, "num_scales": self.num_scales}
