"""`DensityModel`: the verbs every spn_tf model speaks.

* `model(images, cond=None)` → the network's outputs (logits, in the model's own layout);
* `model.log_prob(images, cond=None)` → float32 `(batch,)`, exact natural-log likelihood;
* `model.sample(batch_size, seed, temperature=1.0, cond=None, given=None)` → int32 images;
* `fit` loss: bits per dimension, `-log_prob / (H * W * C * ln 2)`, averaged over the batch.

`fit` feeds `x` as an image batch or a dict `{"images": ..., "label": ..., "embedding": ...}`;
no targets. Subclasses implement `_outputs(images, cond, training)`,
`_log_prob_from_outputs(images, cond, outputs)` and `_sample(...)`.
"""

import math

import keras
import numpy as np
import tensorflow as tf

from spn_tf import inputs as inputs_lib
from spn_tf.distributions import bits_per_dim


class DensityModel(keras.Model):
    """Base of the spn_tf models: image geometry, conditioning, loss, validation.

    Args:
      image_size: height and width of the (square) images.
      channels: 1 or 3.
      bits: bits per sub-pixel; values in `[0, 2**bits)`.
      cond: which conditioning the model takes: `{"label": num_classes}` and/or
        `{"embedding": dim}`; `None` for an unconditional model.
    """

    def __init__(self, image_size, channels=3, bits=8, cond=None, **kwargs):
        super().__init__(**kwargs)
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels}.")
        if not 1 <= bits <= 8:
            raise ValueError(f"bits must be in [1, 8], got {bits}.")
        unknown = set(cond or {}) - {"label", "embedding"}
        if unknown:
            raise ValueError(
                f"cond keys must be 'label' (number of classes) or 'embedding' (vector size); "
                f"got {sorted(unknown)}.")
        self.image_size = int(image_size)
        self.channels = int(channels)
        self.bits = int(bits)
        self.cond_spec = dict(cond or {})

    @property
    def num_values(self):
        return 2 ** self.bits

    @property
    def num_dims(self):
        return self.image_size * self.image_size * self.channels

    def scale(self, images, bits=None):
        """Integers in `[0, 2**bits)` → floats in `[-1, 1]` in the compute dtype."""
        top = 2 ** (bits or self.bits) - 1
        return tf.cast(images, self.compute_dtype) * (2.0 / top) - 1.0

    def dummy_inputs(self, batch_size=1):
        """Zero images and conditioning of the right shapes (used to build the weights)."""
        images = tf.zeros([batch_size, self.image_size, self.image_size, self.channels], tf.int32)
        cond = {}
        if "label" in self.cond_spec:
            cond["label"] = tf.zeros([batch_size], tf.int32)
        if "embedding" in self.cond_spec:
            cond["embedding"] = tf.zeros([batch_size, self.cond_spec["embedding"]], tf.float32)
        return images, cond

    def build(self, input_shape=None):
        if self.built:
            return
        images, cond = self.dummy_inputs()
        self._outputs(images, cond, training=False)
        self.built = True

    def build_from_config(self, config):
        self.build()

    def call(self, inputs, cond=None, training=None):
        images, cond = inputs_lib.split_inputs(inputs, cond)
        return self._outputs(images, cond, training=bool(training))

    def log_prob(self, images, cond=None):
        """Exact log-likelihood.

        Args:
          images: int32/uint8 `(B, H, W, C)` in `[0, 2**bits)`.
          cond: conditioning dict, as built.

        Returns:
          float32 `(B,)`, natural log.
        """
        images, cond = self.check_inputs(images, cond)
        self.build()
        return self._log_prob_from_outputs(images, cond, self._outputs(images, cond, False))

    def bits_per_dim(self, images, cond=None):
        """`-log_prob / (H * W * C * ln 2)`, float32 `(B,)`."""
        return bits_per_dim(self.log_prob(images, cond), self.num_dims)

    def check_inputs(self, images, cond):
        images = inputs_lib.check_images(images, self.bits, self.channels, self.image_size,
                                         self.image_size)
        cond = self.check_cond(cond, images.shape[0])
        return images, cond

    def check_cond(self, cond, batch_size=None):
        """Validates `cond` against `cond_spec`; models that take more keys extend this."""
        return inputs_lib.check_cond(cond, self.cond_spec, batch_size)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        images, cond = inputs_lib.split_inputs(x)
        images = tf.cast(images, tf.int32)
        log_prob = self._log_prob_from_outputs(images, cond, y_pred)
        loss = tf.reduce_mean(bits_per_dim(log_prob, self.num_dims))
        for extra in self.losses:
            loss = loss + tf.cast(extra, loss.dtype)
        # Keras sums the replicas' gradients and its loss tracker multiplies the loss by the
        # replica count: scale as Keras's own `compute_loss` does, so the step is a mean.
        return loss / tf.distribute.get_strategy().num_replicas_in_sync

    def sample(self, batch_size, seed, temperature=1.0, cond=None, given=None, compiled=True):
        """Draws images.

        Args:
          batch_size: positive int.
          seed: int or int32 `(2,)`: stateless; the same seed gives the same images.
          temperature: float >= 0 (0 → the most likely value of every sub-pixel).
          cond: conditioning dict with `batch_size` rows, as built.
          given: model-specific known content (see the subclass), returned unchanged.
          compiled: run the model's XLA-compiled loop (the same images as the reference
            sampler, `compiled=False`, for the same seed; traced once per batch size).

        Returns:
          int32 `(batch_size, H, W, C)` in `[0, 2**bits)`.
        """
        batch_size = inputs_lib.check_batch_size(batch_size)
        seed = inputs_lib.check_seed(seed)
        temperature = float(temperature)
        if not math.isfinite(temperature) or temperature < 0:
            raise ValueError(f"temperature must be a finite float >= 0, got {temperature}.")
        cond = self.check_cond(cond, batch_size)
        self.build()
        sample_fn = self._compiled_sample if compiled else self._sample
        return sample_fn(batch_size, seed, np.float32(temperature), cond, given)

    def get_config(self):
        return {"name": self.name, "image_size": self.image_size, "channels": self.channels,
                "bits": self.bits, "cond": self.cond_spec or None}

    def _outputs(self, images, cond, training):
        raise NotImplementedError

    def _log_prob_from_outputs(self, images, cond, outputs):
        raise NotImplementedError

    def _sample(self, batch_size, seed, temperature, cond, given):
        raise NotImplementedError

    def _compiled_sample(self, batch_size, seed, temperature, cond, given):
        """The compiled sampler; a model without one samples with its reference `_sample`."""
        return self._sample(batch_size, seed, temperature, cond, given)
