"""Test helpers: `spn_tf.exactness` (the proofs, `sharpen`), plus what only tests need."""

import keras
import numpy as np
import tensorflow as tf

from spn_tf.exactness import *  # noqa: F401,F403 - the tests reach the proofs through here


def run_layer_test(cls, init_kwargs, input_data, expected_output_shape, call_kwargs=None):
    """One line per layer: config round trip, JSON serialization, eager and jit `fit` step."""
    call_kwargs = call_kwargs or {}
    layer = cls(**init_kwargs)
    output = layer(input_data, **call_kwargs)
    assert tuple(output.shape) == tuple(expected_output_shape), output.shape
    clone = cls.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(restored) is cls and restored.get_config() == layer.get_config()
    clone(input_data, **call_kwargs)
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(clone(input_data, **call_kwargs), output, rtol=1e-5, atol=1e-5)

    class Wrapper(keras.Model):
        def __init__(self):
            super().__init__()
            self.inner = cls(**init_kwargs)

        def call(self, x):
            return self.inner(x, **call_kwargs)

    model = Wrapper()
    model.compile(optimizer="sgd", loss="mse", jit_compile=True)
    model.fit(input_data, tf.zeros_like(output), epochs=1, batch_size=len(input_data), verbose=0)
    return output
