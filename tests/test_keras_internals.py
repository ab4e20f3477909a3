"""The one Keras internal spn_tf relies on, pinned: a test that fails when Keras changes it.

`DensityModel.__call__` and `compute_loss` must know when they run inside Keras's shape
inference (`keras.backend.compute_output_spec`), where `fit` under a strategy passes the MEAN
of a distributed batch (floats) in a scratch graph that never runs. Keras 3's TensorFlow
backend names that graph "scratch_graph"; `spn_tf.models.base._keras_shape_inference` reads
the name, in that one function. A layer called on a symbolic `keras.KerasTensor` is Keras's
public way into that inference.
"""

import keras
import tensorflow as tf

from spn_tf.models import base


def test_keras_shape_inference_is_recognised_and_nothing_else_is():
    seen = []

    class Record(keras.layers.Layer):
        def call(self, x):
            seen.append(base._keras_shape_inference())
            return x

    Record()(keras.KerasTensor((2, 3)))
    assert seen == [True], "Keras no longer infers shapes in a graph named scratch_graph*"
    Record()(tf.zeros([2]))
    tf.function(Record())(tf.zeros([2]))
    assert seen == [True, False, False]
