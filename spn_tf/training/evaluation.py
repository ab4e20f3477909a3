"""Exact held-out bits/dim over a whole dataset, in bounded memory for slice models."""

import tensorflow as tf
from absl import logging

from spn_tf import inputs as inputs_lib
from spn_tf.distributions import bits_per_dim


def slice_chunks_log_prob(model, images, cond, slices_per_call):
    """Exact `log_prob` of an SPN with at most `slices_per_call` slices per network call.

    `model.log_prob` folds all `S*S` slices of every image into one batch; here the
    (example, slice) pairs are taken `slices_per_call` at a time (`model.slice_log_prob`)
    and summed per example, so memory stays that of a training batch of that many slices.

    Args:
      model: a `SubscalePixelNetwork`.
      images: int32 `(B, H, W, C)`; cond: conditioning dict or None.
      slices_per_call: positive int.

    Returns:
      float32 `(B,)`, natural log.
    """
    start, stop = model.slice_range
    batch = tf.shape(images)[0]
    pairs = batch * (stop - start)
    example = tf.range(pairs) // (stop - start)
    slice_index = start + tf.range(pairs) % (stop - start)
    total = tf.zeros([batch], tf.float32)
    for offset in tf.range(0, pairs, slices_per_call):
        chunk = tf.range(offset, tf.minimum(offset + slices_per_call, pairs))
        rows = tf.gather(example, chunk)
        chunk_cond = None if not cond else {k: tf.gather(v, rows) for k, v in cond.items()}
        values = model.slice_log_prob(tf.gather(images, rows), tf.gather(slice_index, chunk),
                                      chunk_cond)
        total += tf.math.unsorted_segment_sum(values, rows, batch)
    return total


def chunked_log_prob(model, images, cond, slices_per_call):
    """Exact `log_prob` in chunks of slices: an SPN, or the upscaling composite (the sum of
    its SPNs' terms); `None` for a model without slices."""
    if hasattr(model, "slice_log_prob"):
        return slice_chunks_log_prob(model, images, cond, slices_per_call)
    if hasattr(model, "part_inputs"):
        return tf.add_n([
            slice_chunks_log_prob(network, *model.part_inputs(part, images, cond or {}),
                                  slices_per_call)
            for part, network in model.networks.items()])
    return None


def mean_bits_per_dim(model, dataset, slices_per_call=0):
    """Mean of exact bits/dim over every example of `dataset`.

    Args:
      model: a `DensityModel`.
      dataset: batches of images or of dicts `{"images", "label", ...}`.
      slices_per_call: for SPNs and the upscaling composite, evaluate this many slices per
        network call (0: `model.log_prob`, all slices of the batch at once).

    Returns:
      float.

    Raises:
      FloatingPointError: a batch's bits/dim stay negative when computed again eagerly.
    """

    def batch_values(batch):
        images, cond = inputs_lib.split_inputs(batch)
        log_prob = None
        if slices_per_call:
            log_prob = chunked_log_prob(model, images, cond or None, slices_per_call)
        if log_prob is None:
            return model.bits_per_dim(images, cond or None)
        return bits_per_dim(log_prob, model.num_dims)

    compiled = tf.function(batch_values, reduce_retracing=True)
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


# Exact bits/dim of a normalized discrete distribution are >= 0; float32 sums of log-softmax
# values may round a little below.
NEGATIVE_TOLERANCE = -1e-3


def _recomputed(batch_values, batch, values):
    """The batch's bits/dim computed again eagerly, after the compiled function returned a
    negative value (impossible for an exact likelihood; observed once here after a long
    training run, see BUILD_NOTES "Trust at the edges"); an error if it stays negative."""
    again = batch_values(batch).numpy()
    if again.min() < NEGATIVE_TOLERANCE:
        raise FloatingPointError(
            f"bits/dim {again.min():.4f} < 0 for an exact likelihood (compiled: "
            f"{values.min():.4f}): a numerical fault, not a result. Run the evaluation again "
            f"(python -m spn_tf.evaluate --model_dir=...) and report it if it persists.")
    logging.warning("a compiled evaluation returned bits/dim %.4f < 0; recomputed eagerly: "
                    "%.4f", values.min(), again.min())
    return again
