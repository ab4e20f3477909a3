"""Exact held-out bits/dim over a whole dataset, in bounded memory for models with slices
(`DensityModel.log_prob(..., slices_per_call)`)."""

import weakref

import tensorflow as tf
from absl import logging

from spn_tf import inputs as inputs_lib
from spn_tf.distributions import bits_per_dim


def mean_bits_per_dim(model, dataset, slices_per_call=0):
    """Mean of exact bits/dim over every example of `dataset`.

    Args:
      model: a `DensityModel`.
      dataset: batches of images or of dicts `{"images", "label", ...}`.
      slices_per_call: evaluate this many slices per network call where the model has
        slices (`model.log_prob(..., slices_per_call)`; 0: all slices at once).

    Returns:
      float.

    Raises:
      FloatingPointError: a batch's bits/dim stay negative when computed again eagerly.
    """

    # The cached function below must not keep the model alive: it holds a weak reference.
    held, num_dims = weakref.ref(model), model.num_dims

    def batch_values(batch):
        images, cond = inputs_lib.split_inputs(batch)
        return bits_per_dim(held().log_prob(images, cond or None, slices_per_call or None),
                            num_dims)

    # One traced function per model and setting, kept across calls: a training run scores
    # its held-out set at every evaluation, and a new `tf.function` each time would trace
    # again each time (and TensorFlow warns about it after five).
    compiled = _COMPILED.setdefault(model, {}).setdefault(
        slices_per_call, tf.function(batch_values, reduce_retracing=True))
    total, count = 0.0, 0
    for batch in dataset:
        values = compiled(batch).numpy()
        if values.min() < NEGATIVE_TOLERANCE:
            values = _recomputed(batch_values, batch, values)
        total += float(values.sum())
        count += len(values)
    if not count:
        raise ValueError("the held-out dataset is empty.")
    return total / count


_COMPILED = weakref.WeakKeyDictionary()  # model → {slices_per_call: tf.function}

# Exact bits/dim of a normalized discrete distribution are >= 0; float32 sums of log-softmax
# values may round a little below.
NEGATIVE_TOLERANCE = -1e-3


def _recomputed(batch_values, batch, values):
    """The batch's bits/dim computed again eagerly, after the compiled function returned a
    negative value (impossible for an exact likelihood; observed once, after a 600-step run
    on a 2-core CPU, not reproduced since); an error if it stays negative."""
    again = batch_values(batch).numpy()
    if again.min() < NEGATIVE_TOLERANCE:
        raise FloatingPointError(
            f"bits/dim {again.min():.4f} < 0 for an exact likelihood (compiled: "
            f"{values.min():.4f}): a numerical fault, not a result. Run the evaluation again "
            f"(python -m spn_tf.evaluate --model_dir=...) and report it if it persists.")
    logging.warning("a compiled evaluation returned bits/dim %.4f < 0; recomputed eagerly: "
                    "%.4f", values.min(), again.min())
    return again
