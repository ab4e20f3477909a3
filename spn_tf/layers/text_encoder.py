"""`TextEncoder`: captions as UTF-8 bytes → one trainable vector, no tokenizer, no download."""

import keras
import tensorflow as tf
from keras import ops

# Byte ids: 0 is padding, byte b is b + 1.
NUM_BYTE_IDS = 257


def text_to_bytes(text, max_length):
    """Captions → padded byte ids, in graph ops (they run inside a SavedModel / TF Serving).

    Checks in the graph (`InvalidArgumentError` naming the rule): every caption is non-empty,
    at most `max_length` UTF-8 bytes (longer captions are refused, never truncated), and valid
    UTF-8.

    Args:
      text: tf.string `(B,)`.
      max_length: the longest caption in bytes.

    Returns:
      int32 `(B, max_length)`: byte `b` as `b + 1`, then zeros.
    """
    text = tf.convert_to_tensor(text, tf.string)
    length = tf.strings.length(text)  # in bytes
    # Transcoding with replacement changes a string exactly when it is not valid UTF-8.
    valid = tf.strings.unicode_transcode(text, "UTF-8", "UTF-8", errors="replace")
    checks = [
        tf.debugging.assert_positive(length, message="text: every caption must be non-empty"),
        tf.debugging.assert_less_equal(
            length, max_length,
            message=f"text: captions must be at most {max_length} UTF-8 bytes (the model's "
                    f"cond['text']); shorten them"),
        # Not `assert_equal`: its message would quote the invalid bytes, and no client could
        # decode that message.
        tf.debugging.Assert(tf.reduce_all(tf.equal(valid, text)),
                            ["text: captions must be valid UTF-8"]),
    ]
    with tf.control_dependencies(checks):
        raw = tf.io.decode_raw(text, tf.uint8, fixed_length=max_length)
    present = tf.range(max_length)[None, :] < length[:, None]
    return tf.where(present, tf.cast(raw, tf.int32) + 1, 0)


@keras.saving.register_keras_serializable(package="spn_tf")
class TextEncoder(keras.layers.Layer):
    """A caption as a vector: byte embedding, masked 1-D convolutions, masked mean pooling.

    The text-conditional PixelCNNs (Reed et al. 2017, the Parallel Multiscale PixelCNN's
    text-to-image domain) condition on a caption encoder's vector; here the encoder is small and
    trained with the density model, reading raw UTF-8 bytes (as character-level text encoders
    do, Reed et al. 2016), so nothing is downloaded. Padding positions are zeroed after every
    layer and left out of the mean, so a caption's vector does not depend on `max_length`.

    Args:
      units: size of the output vector.
      max_length: the longest caption in UTF-8 bytes.
      width: channels of the byte embedding and convolutions.
      num_layers: residual convolutions (kernel 3, ReLU) over the bytes.

    Call: tf.string `(B,)` captions (converted by `text_to_bytes`, which checks them), or their
    int32 byte ids `(B, max_length)` → float `(B, units)`.

    References:
      Reed, Akata, Lee, Schiele. Learning Deep Representations of Fine-Grained Visual
      Descriptions. CVPR 2016.
      Reed, van den Oord, Kalchbrenner, Colmenarejo, Wang, Belov, de Freitas. Parallel
      Multiscale Autoregressive Density Estimation. ICML 2017.
    """

    def __init__(self, units, max_length, width=32, num_layers=2, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.max_length = max_length
        self.width = width
        self.num_layers = num_layers
        self.byte_embedding = keras.layers.Embedding(NUM_BYTE_IDS, width)
        self.convolutions = [keras.layers.Conv1D(width, 3, padding="same", activation="relu")
                             for _ in range(num_layers)]
        self.projection = keras.layers.Dense(units)

    def build(self, input_shape=None):
        self.byte_embedding.build((None, self.max_length))
        for conv in self.convolutions:
            conv.build((None, self.max_length, self.width))
        self.projection.build((None, self.width))

    def call(self, text):
        if text.dtype == tf.string:
            text = text_to_bytes(text, self.max_length)
        mask = ops.cast(ops.greater(text, 0), self.compute_dtype)[:, :, None]
        hidden = self.byte_embedding(text) * mask
        for conv in self.convolutions:
            hidden = (hidden + conv(hidden)) * mask
        pooled = ops.sum(hidden, axis=1) / ops.maximum(ops.sum(mask, axis=1), 1.0)
        return self.projection(pooled)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.units)

    def get_config(self):
        return {**super().get_config(), "units": self.units, "max_length": self.max_length,
                "width": self.width, "num_layers": self.num_layers}
