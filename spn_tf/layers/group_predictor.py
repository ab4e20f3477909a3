"""`GroupPredictor`: logits of one multiscale group from everything generated before it."""

import keras
from keras import ops

from spn_tf import hparams
from spn_tf.layers.masked_conv2d import MaskedConv2D
from spn_tf.layers.masked_decoder import MaskedDecoder


@keras.saving.register_keras_serializable(package="spn_tf")
class GroupPredictor(keras.layers.Layer):
    """A size-preserving ResNet over the known content, with a channel-autoregressive head.

    The "type A" group network of Reed et al. 2017 (§3): every pixel of a group is predicted in
    parallel from the lower resolution image and the earlier groups of the same scale, laid out
    spatially aligned at the group's resolution `r x r` (one channel plane per known group).
    The ResNet is not spatially masked: nothing it sees belongs to the group being predicted.
    The head makes the channels autoregressive inside a pixel (R, then G given R, then B given
    R, G): a 1x1 mask-A convolution of the group's own pixel values (a pure channel mask) is
    added to the ResNet features, then 1x1 mask-B layers give `data_channels * num_outputs`
    outputs (the likelihood head's parameters). So pixels of a group are conditionally
    independent given the known content.

    The ResNet ends in a 1x1 projection so that every channel's logits read all its features.
    The ResNet features do not depend on the group's pixels, so a sampler computes them once
    per group (`features`) and reruns only the head (`head`) once per channel.

    One network serves every scale: a learned per-scale vector (`scale` in `[0, num_scales)`)
    tells it which resolution it is upscaling.

    Type B (`patch_size=M > 0`, Reed et al. 2017 §3): the head is a shallow PixelCNN instead.
    The group's `r x r` grid is cut into `P x P` patches, `P = min(M, r)`, folded into the
    batch; a `MaskedDecoder` (`patch_layers` gated blocks of `patch_filters` features) models
    each patch in raster order, channels R, G, B, with the ResNet features of the patch as its
    spatial context. Its weights are shared by every patch and every scale (one per group).
    Patches of a group stay conditionally independent given the known content, the pixels of a
    patch do not: sampling a group takes `P * P * C` head calls instead of `C`.

    Args:
      filters: features of the ResNet and head, a multiple of `data_channels`.
      num_blocks: residual blocks (two convolutions each).
      num_outputs: outputs per sub-pixel, the parameters of the model's likelihood head
        (`spn_tf.distributions`: `2**bits` logits for the categorical).
      data_channels: image channels (1 or 3).
      kernel_size: kernel of the ResNet convolutions (odd).
      num_scales: number of resolution doublings the network is shared by.
      patch_size: 0 for type A; `M > 0` for type B (a PixelCNN over `M x M` patches). Every
        resolution `r` it is used at must be a multiple of `min(M, r)`.
      patch_layers, patch_filters: the type-B PixelCNN (gated blocks, features per stack, a
        multiple of `data_channels`); unused for type A.

    Call: `(known, pixels, context=None, scale=0)`: `known` float `(B, r, r, D)` (the lower
    resolution image and earlier groups, scaled, stacked on channels), `pixels` float
    `(B, r, r, data_channels)` (the group's own scaled values; only earlier channels of a
    pixel reach its logits; type B: also the pixels before it in its patch, raster order),
    `context` float `(B, 1, 1, E)` or None → the head's outputs float `(B, r, r,
    data_channels, num_outputs)`.

    References:
      Reed, van den Oord, Kalchbrenner, Gómez Colmenarejo, Wang, Belov, de Freitas. Parallel
      Multiscale Autoregressive Density Estimation. ICML 2017.
    """

    def __init__(self, filters, num_blocks, num_outputs, data_channels=3, kernel_size=3,
                 num_scales=1, patch_size=0, patch_layers=2, patch_filters=48, **kwargs):
        super().__init__(**kwargs)
        hparams.check_positive("data_channels", data_channels)
        hparams.check_channel_features("filters", filters, data_channels)
        hparams.check_non_negative("num_blocks", num_blocks)
        # Not for causality: the ResNet sees known content only.
        hparams.check_odd_kernel("kernel_size", kernel_size, hparams.ALIGNED)
        hparams.check_positive("num_scales", num_scales)
        if not hparams.is_int(patch_size) or patch_size < 0:
            raise ValueError(f"patch_size={patch_size!r} must be 0 (type A) or a patch side "
                             f"M > 0 (type B).")
        if patch_size:
            hparams.check_positive("patch_layers", patch_layers)
            hparams.check_channel_features("patch_filters", patch_filters, data_channels)
        self.filters = filters
        self.num_blocks = num_blocks
        self.num_outputs = num_outputs
        self.data_channels = data_channels
        self.kernel_size = kernel_size
        self.num_scales = num_scales
        self.patch_size = patch_size
        self.patch_layers = patch_layers
        self.patch_filters = patch_filters
        self.conv_in = keras.layers.Conv2D(filters, kernel_size, padding="same")
        self.context_projection = keras.layers.Dense(filters)
        self.block_convs = [
            [keras.layers.Conv2D(filters, kernel_size, padding="same", name=f"block_{i}_{j}")
             for j in range(2)] for i in range(num_blocks)]
        # The head's channel masks give each channel a third of the features: a full 1x1
        # projection lets every channel read all the ResNet features.
        self.features_out = keras.layers.Dense(filters)
        c = data_channels
        if patch_size:
            # Shallow: 3x3 kernels already reach the whole of a 4x4 patch in two layers.
            self.patch_pixelcnn = MaskedDecoder(patch_filters, patch_layers, num_outputs, c,
                                                kernel_size=3, first_kernel_size=3,
                                                name="patch_pixelcnn")
        else:
            self.pixels_in = MaskedConv2D(filters, 1, "A", c, "horizontal")
            self.head_hidden = MaskedConv2D(filters, 1, "B", c, "horizontal")
            self.head_out = MaskedConv2D(c * num_outputs, 1, "B", c, "horizontal")

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
        if self.patch_size:
            # Patches are folded into the batch; the weights do not depend on their side.
            self.patch_pixelcnn.build((None, None, None, pixels_shape[-1]),
                                      (None, None, None, self.filters))
        else:
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
        """The head's outputs `(B, r, r, data_channels, num_outputs)` of the group's pixels.

        Type A: channel c sees `pixels[..., :c]` of its own pixel. Type B: the patch PixelCNN
        on every patch at once (`patch_head`).
        """
        if self.patch_size:
            side = features.shape[1]
            logits = self.patch_head(self.to_patches(features), self.to_patches(pixels))
            # Static sizes but the batch, which a signature leaves unknown.
            patch = logits.shape[1]
            logits = ops.reshape(logits, (-1, patch, patch,
                                          self.data_channels * self.num_outputs))
            logits = self.from_patches(logits, side)
            shape = ops.shape(logits)
            return ops.reshape(logits, (shape[0], side, side, self.data_channels,
                                        self.num_outputs))
        h = ops.relu(features + self.pixels_in(pixels))
        out = self.head_out(ops.relu(self.head_hidden(h)))
        shape = ops.shape(out)
        return ops.reshape(out, (shape[0], shape[1], shape[2], self.data_channels,
                                 self.num_outputs))

    def patch_head(self, feature_patches, pixel_patches):
        """Type B: the head's outputs `(B', P, P, data_channels, num_outputs)` of `to_patches`
        pixels `(B', P, P, data_channels)` (raster order in each patch) given their
        features."""
        return self.patch_pixelcnn(pixel_patches, context=feature_patches)

    def patch_side(self, side):
        """Side `P = min(patch_size, r)` of the type-B patches of an `r x r` group."""
        patch = min(self.patch_size, side)
        if side % patch:
            raise ValueError(f"group side {side} is not a multiple of the patch side {patch} "
                             f"(patch_size={self.patch_size}).")
        return patch

    def to_patches(self, x):
        """`(B, r, r, D)` → `(B * (r/P)**2, P, P, D)`: patches folded into the batch,
        image-major, patches in raster order."""
        side, depth = x.shape[1], x.shape[3]
        patch = self.patch_side(side)
        n = side // patch
        x = ops.reshape(x, (-1, n, patch, n, patch, depth))
        return ops.reshape(ops.transpose(x, (0, 1, 3, 2, 4, 5)), (-1, patch, patch, depth))

    def from_patches(self, x, side):
        """Inverse of `to_patches`: `(B * (r/P)**2, P, P, D)` → `(B, r, r, D)`."""
        patch, depth = x.shape[1], x.shape[3]
        n = side // patch
        x = ops.reshape(x, (-1, n, n, patch, patch, depth))
        return ops.reshape(ops.transpose(x, (0, 1, 3, 2, 4, 5)), (-1, side, side, depth))

    def call(self, known, pixels, context=None, scale=0):
        return self.head(self.features(known, context, scale), pixels)

    def compute_output_shape(self, known_shape, pixels_shape, context_shape=None):
        return tuple(pixels_shape) + (self.num_outputs,)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "num_blocks": self.num_blocks,
                "num_outputs": self.num_outputs, "data_channels": self.data_channels,
                "kernel_size": self.kernel_size, "num_scales": self.num_scales,
                "patch_size": self.patch_size, "patch_layers": self.patch_layers,
                "patch_filters": self.patch_filters}
