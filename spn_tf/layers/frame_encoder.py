"""`FrameEncoder`: the previous frame and the action as one conditioning vector."""

import keras
from keras import ops

from spn_tf import hparams


@keras.saving.register_keras_serializable(package="spn_tf")
class FrameEncoder(keras.layers.Layer):
    """Encodes the frame before a target frame and the action taken from it.

    Reed et al. 2017 (§4, robot pushing) condition each frame of a video on the previous
    frame(s) and the action. Here a ReLU convolution stack reads the previous frame, its
    features are averaged and max-pooled over the image, and a dense layer maps them, with
    the action, to the vector that conditions the frame's multiscale model (its
    `cond["embedding"]`): everything the frame model learns about its past goes through it.

    Args:
      units: size of the output vector.
      filters: features of the convolutions.
      num_layers: 3x3 convolutions, each halving the resolution after the first.

    Call: `(frames float (B, H, W, C) in [-1, 1], actions float (B, A))` → float `(B, units)`.
    """

    def __init__(self, units, filters=32, num_layers=3, **kwargs):
        super().__init__(**kwargs)
        hparams.check_positive("units", units)
        hparams.check_positive("filters", filters)
        hparams.check_positive("num_layers", num_layers)
        self.units, self.filters, self.num_layers = units, filters, num_layers
        self.convs = [keras.layers.Conv2D(filters, 3, strides=1 if i == 0 else 2,
                                          padding="same", activation="relu", name=f"conv_{i}")
                      for i in range(num_layers)]
        self.out = keras.layers.Dense(units, name="out")

    def build(self, frames_shape, actions_shape):
        shape = tuple(frames_shape)
        for conv in self.convs:
            conv.build(shape)
            shape = conv.compute_output_shape(shape)
        self.out.build((None, 2 * self.filters + actions_shape[-1]))

    def call(self, frames, actions):
        h = frames
        for conv in self.convs:
            h = conv(h)
        pooled = ops.concatenate([ops.mean(h, axis=(1, 2)), ops.max(h, axis=(1, 2)),
                                  ops.cast(actions, h.dtype)], axis=-1)
        return self.out(pooled)

    def get_config(self):
        return {**super().get_config(), "units": self.units, "filters": self.filters,
                "num_layers": self.num_layers}
