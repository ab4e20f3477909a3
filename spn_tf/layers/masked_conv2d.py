"""`MaskedConv2D`: a 2-D convolution whose kernel only reaches already generated pixels."""

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from spn_tf import hparams

STACKS = ("raster", "vertical", "horizontal")

def kept_taps(mask):
    """The smallest rectangle of kernel taps holding every non-zero of `mask`: `((top,
    bottom), (left, right))` as slice bounds, or None for an all-zero mask."""
    rows = np.flatnonzero(mask.any(axis=(1, 2, 3)))
    cols = np.flatnonzero(mask.any(axis=(0, 2, 3)))
    if not rows.size:
        return None
    return (int(rows[0]), int(rows[-1]) + 1), (int(cols[0]), int(cols[-1]) + 1)


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
    causal from initialisation on and serializes without lambdas. The convolution runs on the
    kernel cut to the rectangle of taps the mask keeps (`kept_taps`), with the padding that
    keeps each tap where 'same' padding puts it: a 3x3 vertical kernel computes its 2 kept
    rows, a (1, 3) horizontal one its 2 kept columns, not the zeros (a third of a block's
    multiply-adds). The result is the full masked convolution's: the same products, without
    the ones by zero.

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
        self._mask = causal_mask(self.kernel_size, in_features, self.filters, self.mask_type,
                                 self.data_channels, self.stack, self.output_splits)
        self._kept = kept_taps(self._mask)
        # An all-zero mask (e.g. a 1x1 type-A kernel over one data channel) leaves the kernel
        # out of every output: it is kept (checkpoints keep their variables) but not trained,
        # so no optimizer is handed a gradient that cannot exist.
        self.kernel = self.add_weight(
            name="kernel", shape=self.kernel_size + (in_features, self.filters),
            initializer="glorot_uniform", trainable=self._kept is not None)
        self.bias = self.add_weight(
            name="bias", shape=(self.filters,), initializer="zeros") if self.use_bias else None

    def call(self, inputs):
        return self._add_bias(self._cropped_conv(inputs))

    def call_one_row(self, inputs, weights):
        """`call` of a one-row input `(B, 1, W, in)` (a raster sampler's window), or of any
        input of a 1x1 kernel, as one matrix product with `weights`, this layer's
        `one_row_weights()` computed once outside the sampler's loops; any other input (or
        `weights` None) goes to `call`.

        For loops run as plain graphs: there oneDNN's Conv2D costs ~100 us a call on such
        small inputs against ~20 us for the MatMul, and a weight computed inside a loop is
        computed again at every step. Not for XLA loops, where the convolution is the faster
        of the two and XLA hoists what does not change. The same sum of products as the
        convolution, in another order (float rounding only).
        """
        if (weights is None or not (inputs.shape[1] == 1 or self.kernel_size == (1, 1))
                or None in inputs.shape[1:3]):
            return self(inputs)
        return self._add_bias(self._one_row_conv(inputs, ops.cast(weights, inputs.dtype)))

    def _add_bias(self, outputs):
        if self.bias is None:
            return outputs
        return outputs + ops.cast(self.bias, outputs.dtype)

    def _cropped_conv(self, inputs):
        """The masked 'same' convolution on the kept rectangle of the kernel (see the class
        doc). A kernel that keeps no tap (a vertical mask-A kernel one row high) gives zeros."""
        if self._kept is None:
            return tf.zeros(tf.concat([tf.shape(inputs)[:-1], [self.filters]], 0),
                            inputs.dtype)
        (top, bottom), (left, right) = self._kept
        mask = self._mask[top:bottom, left:right]
        kernel = self.kernel[top:bottom, left:right] * ops.convert_to_tensor(
            mask, dtype=self.kernel.dtype)
        # 'same' pads (k - 1) // 2 before: it puts tap (r, c) over input (i + r - before_row,
        # j + c - before_col) (the centre for odd kernels, which validation insists on).
        before_row, before_col = (self.kernel_size[0] - 1) // 2, (self.kernel_size[1] - 1) // 2
        pads = [(before_row - top, bottom - 1 - before_row),
                (before_col - left, right - 1 - before_col)]
        # A rectangle that ends above (left of) the centre never reads the last rows
        # (columns): cut them rather than pad negatively.
        height_cut, width_cut = max(0, -pads[0][1]), max(0, -pads[1][1])
        if height_cut or width_cut:
            inputs = inputs[:, :-height_cut or None, :-width_cut or None]
        padding = [[0, 0], [pads[0][0], max(0, pads[0][1])], [pads[1][0], max(0, pads[1][1])],
                   [0, 0]]
        if any(any(side) for side in padding):
            # A pad, then a 'VALID' convolution: TensorFlow's oneDNN kernels take no explicit
            # padding in their gradients (those fall back to Eigen's, several times slower).
            inputs = tf.pad(inputs, padding)
        return tf.nn.conv2d(inputs, ops.cast(kernel, inputs.dtype), 1, "VALID")

    def _taps(self):
        """Columns of the kernel's centre row that the mask keeps: all a one-row input meets."""
        centre_row = self.kernel_size[0] // 2
        return [dx for dx in range(self.kernel_size[1]) if self._mask[centre_row, dx].any()]

    def one_row_weights(self):
        """The masked kernel's `_taps`, as the matrix `(taps * in, filters)` of
        `_one_row_conv` (None when no tap is kept: a vertical mask-A kernel)."""
        taps = self._taps()
        if not taps:
            return None
        kernel = self.kernel * ops.convert_to_tensor(self._mask, dtype=self.kernel.dtype)
        centre_row = self.kernel_size[0] // 2
        return ops.reshape(ops.stack([kernel[centre_row, dx] for dx in taps]),
                           (-1, self.filters))

    def _one_row_conv(self, inputs, weights):
        """The convolution (no bias) of `call_one_row`'s inputs as one matrix product."""
        taps, centre_col = self._taps(), self.kernel_size[1] // 2
        height, width = inputs.shape[1], inputs.shape[2]
        if taps == [centre_col]:
            columns = inputs
        else:
            padded = ops.pad(inputs, ((0, 0), (0, 0), (centre_col, centre_col), (0, 0)))
            columns = ops.concatenate([padded[:, :, dx:dx + width] for dx in taps], axis=-1)
        outputs = ops.matmul(ops.reshape(columns, (-1, weights.shape[0])), weights)
        return ops.reshape(outputs, (-1, height, width, self.filters))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.filters,)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters,
                "kernel_size": self.kernel_size, "mask_type": self.mask_type,
                "data_channels": self.data_channels, "stack": self.stack,
                "output_splits": self.output_splits, "use_bias": self.use_bias}
