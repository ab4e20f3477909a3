"""Exact held-out bits/dim over a whole dataset."""

import tensorflow as tf

from spn_tf import inputs as inputs_lib


def mean_bits_per_dim(model, dataset):
    """Mean of `model.bits_per_dim` over every example of `dataset` (exact log-likelihood).

    Args:
      model: a `DensityModel`.
      dataset: batches of images or of dicts `{"images", "label", ...}`.

    Returns:
      float.
    """

    @tf.function(reduce_retracing=True)
    def batch_sum(batch):
        images, cond = inputs_lib.split_inputs(batch)
        values = model.bits_per_dim(images, cond or None)
        return tf.reduce_sum(values), tf.size(values)

    total, count = 0.0, 0
    for batch in dataset:
        batch_total, batch_count = batch_sum(batch)
        total += float(batch_total)
        count += int(batch_count)
    if not count:
        raise ValueError("the held-out dataset is empty.")
    return total / count
