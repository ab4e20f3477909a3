"""`FrameEncoder`: the previous frame and the action as a conditioning vector and aligned
features."""

import keras
from keras import ops

from spn_tf import hparams


@keras.saving.register_keras_serializable(package="spn_tf")
class FrameEncoder(keras.layers.Layer):
    """Encodes the frame before a target frame and the action taken from it.

    Reed et al. 2017 (§4, robot pushing) condition each frame of a video on the previous
    frame(s) and the action. Two outputs, both the frame model's conditioning:
      * `embedding` float `(B, units)`: a ReLU convolution stack reads the previous frame,
        its features are averaged and max-pooled over the image, and a dense layer maps them,
        with the action, to one vector (the frame model's `cond["embedding"]`);
      * `aligned` float `(B, H, W, units)` (with `aligned_layers > 0`): full-resolution 3x3
        ReLU convolutions of the previous frame with the action broadcast to every pixel,
        then a 1x1 projection: features spatially aligned with the target frame, so each
        pixel's network reads what the previous frame had at and around it, and where the
        action moves it (the frame model's `cond["aligned"]`).

    Args:
      units: size of both outputs' features.
      filters: features of the convolutions.
      num_layers: 3x3 convolutions of the vector path, each halving the resolution after
        the first.
      aligned_layers: 3x3 convolutions of the aligned path (0: no aligned output; files
        saved before it existed load so).

    Call: `(frames float (B, H, W, C) in [-1, 1], actions float (B, A))` → dict of the
    outputs above.
    """

    def __init__(self, units, filters=32, num_layers=3, aligned_layers=0, **kwargs):
        super().__init__(**kwargs)
        hparams.check_positive("units", units)
        hparams.check_positive("filters", filters)
        hparams.check_positive("num_layers", num_layers)
        hparams.check_non_negative("aligned_layers", aligned_layers)
        self.units, self.filters, self.num_layers = units, filters, num_layers
        self.aligned_layers = aligned_layers
        self.convs = [keras.layers.Conv2D(filters, 3, strides=1 if i == 0 else 2,
                                          padding="same", activation="relu", name=f"conv_{i}")
                      for i in range(num_layers)]
        self.out = keras.layers.Dense(units, name="out")
        self.aligned_convs = [keras.layers.Conv2D(filters, 3, padding="same", activation="relu",
                                                  name=f"aligned_conv_{i}")
                              for i in range(aligned_layers)]
        self.aligned_out = (keras.layers.Dense(units, name="aligned_out") if aligned_layers
                            else None)

    def build(self, frames_shape, actions_shape):
        shape = tuple(frames_shape)
        for conv in self.convs:
            conv.build(shape)
            shape = conv.compute_output_shape(shape)
        self.out.build((None, 2 * self.filters + actions_shape[-1]))
        shape = tuple(frames_shape[:-1]) + (frames_shape[-1] + actions_shape[-1],)
        for conv in self.aligned_convs:
            conv.build(shape)
            shape = conv.compute_output_shape(shape)
        if self.aligned_out is not None:
            self.aligned_out.build(shape)

    def call(self, frames, actions):
        actions = ops.cast(actions, frames.dtype)
        h = frames
        for conv in self.convs:
            h = conv(h)
        pooled = ops.concatenate([ops.mean(h, axis=(1, 2)), ops.max(h, axis=(1, 2)), actions],
                                 axis=-1)
        outputs = {"embedding": self.out(pooled)}
        if self.aligned_out is not None:
            h = ops.concatenate(
                [frames, ops.ones_like(frames[..., :1]) * actions[:, None, None, :]], axis=-1)
            for conv in self.aligned_convs:
                h = conv(h)
            outputs["aligned"] = self.aligned_out(h)
        return outputs

    def get_config(self):
        return {**super().get_config(), "units": self.units, "filters": self.filters,
                "num_layers": self.num_layers, "aligned_layers": self.aligned_layers}
