"""Checkpoints restore by attribute path: a model whose code creates its layers in another
order gets every weight and optimizer slot back in its place."""

import keras
import numpy as np
import pytest

from spn_tf.training.checkpoints import RunCheckpoints
from spn_tf.training.variable_paths import checkpoint_variables, structural_paths


class TwoBranches(keras.Model):
    """Two same-shape branches; `reverse` creates them in the other order (a code change)."""

    def __init__(self, reverse=False):
        super().__init__()
        if reverse:
            self.right = [keras.layers.Dense(4)]
            self.left = [keras.layers.Dense(4)]
        else:
            self.left = [keras.layers.Dense(4)]
            self.right = [keras.layers.Dense(4)]
        self.noise = keras.random.SeedGenerator(7)

    def call(self, x):
        return self.left[0](x) + 2.0 * self.right[0](x)


def _trained(reverse):
    model = TwoBranches(reverse)
    model(np.zeros((1, 4), np.float32))
    optimizer = keras.optimizers.Adam(0.1, use_ema=True)
    optimizer.build(model.trainable_variables)
    return model, optimizer


def _step(model, optimizer):
    import tensorflow as tf

    x = np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(model(x) ** 2)
    optimizer.apply(tape.gradient(loss, model.trainable_variables), model.trainable_variables)


def test_reordered_creation_restores_every_variable_in_place(tmp_path):
    saved, saved_optimizer = _trained(reverse=False)
    _step(saved, saved_optimizer)
    RunCheckpoints(str(tmp_path), 1, variables=checkpoint_variables(
        saved, saved_optimizer)).save(1)

    restored, optimizer = _trained(reverse=True)
    # Same shapes in the opposite creation order: a restore by position would swap them.
    assert [v.shape for v in restored.variables] == [v.shape for v in saved.variables]
    RunCheckpoints(str(tmp_path), 1, variables=checkpoint_variables(
        restored, optimizer)).restore_latest()
    want = checkpoint_variables(saved, saved_optimizer)
    got = checkpoint_variables(restored, optimizer)
    assert sorted(got) == sorted(want)
    for key in want:
        np.testing.assert_array_equal(got[key].numpy(), want[key].numpy(), err_msg=key)
    assert "optimizer/left/0/_kernel/momentum" in want
    np.testing.assert_array_equal(restored.left[0].kernel.numpy(), saved.left[0].kernel.numpy())


def test_paths_do_not_depend_on_keras_layer_counters():
    first, second = TwoBranches(), TwoBranches()
    for model in (first, second):
        model(np.zeros((1, 4), np.float32))
    assert [v.path for v in first.variables] != [v.path for v in second.variables]
    assert sorted(structural_paths(first)) == sorted(structural_paths(second))


def test_a_variable_reached_by_no_attribute_is_refused():
    model = TwoBranches()
    model(np.zeros((1, 4), np.float32))
    model._layers.append(hidden := keras.layers.Dense(2))  # tracked, but under no attribute
    hidden.build((None, 4))
    with pytest.raises(ValueError, match="not reachable by an attribute path"):
        structural_paths(model)
