"""`ConditionEmbedding`: class labels and global embedding vectors as one context vector."""

import keras
from keras import ops


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

    Call: `cond` dict with `label` int32 `(B,)` and/or `embedding` float32 `(B, E)` →
    float `(B, 1, 1, units)`.
    """

    def __init__(self, units, num_classes=None, embedding_dim=None, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.num_classes = num_classes
        self.embedding_dim = embedding_dim
        self.label_embedding = (keras.layers.Embedding(num_classes, units)
                                if num_classes else None)
        self.embedding_projection = keras.layers.Dense(units) if embedding_dim else None

    def build(self, input_shape=None):
        if self.label_embedding is not None:
            self.label_embedding.build((None,))
        if self.embedding_projection is not None:
            self.embedding_projection.build((None, self.embedding_dim))

    def call(self, cond):
        parts = []
        if self.label_embedding is not None:
            parts.append(self.label_embedding(cond["label"]))
        if self.embedding_projection is not None:
            parts.append(self.embedding_projection(ops.cast(cond["embedding"], self.compute_dtype)))
        return ops.sum(ops.stack(parts, axis=0), axis=0)[:, None, None, :]

    def get_config(self):
        return {**super().get_config(), "units": self.units, "num_classes": self.num_classes,
                "embedding_dim": self.embedding_dim}
