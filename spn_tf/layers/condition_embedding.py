"""`ConditionEmbedding`: class labels, embedding vectors and captions as one context vector."""

import keras
from keras import ops

from spn_tf.layers.text_encoder import TextEncoder


@keras.saving.register_keras_serializable(package="spn_tf")
class ConditionEmbedding(keras.layers.Layer):
    """Maps the global conditioning inputs to a context vector broadcast over the image.

    Conditional PixelCNN (van den Oord et al. 2016) adds `V h` to every gate; here `h` is a
    learned class embedding, a projection of a given embedding vector (e.g. a caption
    embedding, Reed et al. 2017), or their sum.

    Args:
      units: size of the context vector.
      num_classes: classes of `cond["label"]`, or None.
      embedding_dim: size of `cond["embedding"]`, or None.
      text_length: the longest caption of `cond["text"]` in UTF-8 bytes, or None.

    Call: `cond` dict with `label` int32 `(B,)`, `embedding` float32 `(B, E)` and/or `text`
    tf.string `(B,)` (or its byte ids, see `TextEncoder`) → float `(B, 1, 1, units)`.
    """

    def __init__(self, units, num_classes=None, embedding_dim=None, text_length=None, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.num_classes = num_classes
        self.embedding_dim = embedding_dim
        self.text_length = text_length
        self.label_embedding = (keras.layers.Embedding(num_classes, units)
                                if num_classes else None)
        self.embedding_projection = keras.layers.Dense(units) if embedding_dim else None
        self.text_encoder = (TextEncoder(units, text_length, width=units)
                             if text_length else None)

    @classmethod
    def for_cond(cls, units, cond_spec):
        """The embedding of a model built with `cond=cond_spec` (e.g. `{"text": 64}`), or None
        when it takes no global conditioning."""
        if not {"label", "embedding", "text"} & set(cond_spec or {}):
            return None
        return cls(units, cond_spec.get("label"), cond_spec.get("embedding"),
                   cond_spec.get("text"))

    def build(self, input_shape=None):
        if self.label_embedding is not None:
            self.label_embedding.build((None,))
        if self.embedding_projection is not None:
            self.embedding_projection.build((None, self.embedding_dim))
        if self.text_encoder is not None:
            self.text_encoder.build((None, self.text_length))

    def call(self, cond):
        parts = []
        if self.label_embedding is not None:
            parts.append(self.label_embedding(cond["label"]))
        if self.embedding_projection is not None:
            parts.append(self.embedding_projection(ops.cast(cond["embedding"], self.compute_dtype)))
        if self.text_encoder is not None:
            parts.append(self.text_encoder(cond["text"]))
        return ops.sum(ops.stack(parts, axis=0), axis=0)[:, None, None, :]

    def get_config(self):
        return {**super().get_config(), "units": self.units, "num_classes": self.num_classes,
                "embedding_dim": self.embedding_dim, "text_length": self.text_length}
