"""`MaskedConv2D`: a 2-D convolution whose kernel only reaches already generated pixels."""

import keras
import numpy as np
from keras import ops

from spn_tf import hparams

STACKS = ("raster", "vertical", "horizontal")


def _channel_groups(size, data_channels, splits=1):
    """Group (data channel) owning each feature: contiguous blocks, repeated `splits` times."""
    per_split = size // splits
    return (np.arange(size) % per_split) * data_channels // per_split


def causal_mask(kernel_size, in_features, out_features, mask_type, data_channels, stack,
                output_splits=1):
    """The 0/1 mask of a causal kernel, `(kh, kw, in_features, out_features)`.

    Stacks (van den Oord et al. 2016, Conditional PixelCNN):
      * `raster` — rows above the centre, and the centre row left of the centre.
      * `vertical` — rows above; with mask B also the whole centre row (the inputs of a
        vertical stack already see only rows above, so this stays causal).
      * `horizontal` — the centre row left of the centre.
    The centre tap of `raster` and `horizontal` is channel-masked: features belong to the data
    channel groups R, G, B in contiguous blocks; mask A lets group g see groups < g of the
    input, mask B groups <= g. That makes channels autoregressive inside a pixel.
    """
    kh, kw = kernel_size
    ch, cw = kh // 2, kw // 2
    mask = np.zeros((kh, kw, in_features, out_features), np.float32)
    if stack == "vertical":
        mask[:ch] = 1.0
        if mask_type == "B":
            mask[ch] = 1.0
        return mask
    if stack == "raster":
        mask[:ch] = 1.0
    mask[ch, :cw] = 1.0
    g_in = _channel_groups(in_features, data_channels)[:, None]
    g_out = _channel_groups(out_features, data_channels, output_splits)[None, :]
    allowed = (g_in < g_out) if mask_type == "A" else (g_in <= g_out)
    mask[ch, cw] = allowed.astype(np.float32)
    return mask


@keras.saving.register_keras_serializable(package="spn_tf")
class MaskedConv2D(keras.layers.Layer):
    """A 'same'-padded convolution with a causal mask applied inside `call`.

    The mask multiplies the kernel at every call (not a `kernel_constraint`), so the layer is
    causal from initialisation on and serializes without lambdas.

    Args:
      filters: output features; a multiple of `data_channels * output_splits`.
      kernel_size: int or `(kh, kw)`, odd sizes.
      mask_type: `"A"` (the first layer: a pixel's own channel c is hidden from group c) or
        `"B"` (later layers: group c sees group c).
      data_channels: channels of the image (1 or 3): the number of channel groups.
      stack: `"raster"`, `"vertical"` or `"horizontal"` (see `causal_mask`).
      output_splits: the output is read as this many equal chunks (e.g. the two halves of a
        gated activation), each with its own contiguous channel groups.

    Input: float `(batch, height, width, in_features)`; output `(batch, height, width, filters)`.
    """

    def __init__(self, filters, kernel_size, mask_type="B", data_channels=3, stack="raster",
                 output_splits=1, use_bias=True, **kwargs):
        super().__init__(**kwargs)
        if mask_type not in ("A", "B"):
            raise ValueError(f"mask_type must be 'A' or 'B', got {mask_type!r}.")
        if stack not in STACKS:
            raise ValueError(f"stack must be one of {STACKS}, got {stack!r}.")
        hparams.check_positive("data_channels", data_channels)
        hparams.check_positive("output_splits", output_splits)
        hparams.check_channel_features("filters", filters, data_channels, output_splits)
        hparams.check_odd_kernel("kernel_size", kernel_size)
        self.filters = filters
        self.kernel_size = tuple(kernel_size) if not isinstance(kernel_size, int) else (
            kernel_size, kernel_size)
        self.mask_type = mask_type
        self.data_channels = data_channels
        self.stack = stack
        self.output_splits = output_splits
        self.use_bias = use_bias

    def build(self, input_shape):
        in_features = input_shape[-1]
        self.kernel = self.add_weight(
            name="kernel", shape=self.kernel_size + (in_features, self.filters),
            initializer="glorot_uniform")
        self.bias = self.add_weight(
            name="bias", shape=(self.filters,), initializer="zeros") if self.use_bias else None
        self._mask = causal_mask(self.kernel_size, in_features, self.filters, self.mask_type,
                                 self.data_channels, self.stack, self.output_splits)

    def call(self, inputs):
        kernel = self.kernel * ops.convert_to_tensor(self._mask, dtype=self.kernel.dtype)
        outputs = ops.conv(inputs, ops.cast(kernel, inputs.dtype), padding="same")
        if self.bias is not None:
            outputs = outputs + ops.cast(self.bias, outputs.dtype)
        return outputs

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.filters,)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters,
                "kernel_size": self.kernel_size, "mask_type": self.mask_type,
                "data_channels": self.data_channels, "stack": self.stack,
                "output_splits": self.output_splits, "use_bias": self.use_bias}
