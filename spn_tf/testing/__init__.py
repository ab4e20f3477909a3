"""Shared test helpers: the papers' claims as reusable checks.

* `all_images` — every image of a tiny space, to sum `exp(log_prob)` over (normalization).
* `assert_normalized` — `sum_x p(x) == 1`.
* `assert_causal` — the Jacobian of logits w.r.t. inputs is exactly zero on every sub-pixel
  generated at the same step or later, and non-zero on some earlier one.
* `assert_samples_follow` — samples' empirical distribution is within a total-variation bound
  of `exp(log_prob)`; the bound is tight enough that a wrong distribution fails it.
* `run_layer_test` — config round trip, serialization, a jit-compiled `fit` step for a layer.
"""

import itertools
import math

import keras
import numpy as np
import tensorflow as tf


def all_images(height, width, channels, bits):
    """int32 `(2**(bits*H*W*C), H, W, C)`: every image of the space, in lexicographic order."""
    values = range(2 ** bits)
    grid = np.array(list(itertools.product(values, repeat=height * width * channels)), np.int32)
    return grid.reshape(-1, height, width, channels)


def batched_log_prob(model, images, cond=None, batch_size=4096):
    """`model.log_prob` in chunks; `cond` arrays are sliced alongside."""
    out = []
    for start in range(0, len(images), batch_size):
        chunk_cond = None if cond is None else {
            k: v[start:start + batch_size] for k, v in cond.items()}
        out.append(model.log_prob(images[start:start + batch_size], chunk_cond).numpy())
    return np.concatenate(out)


def assert_normalized(model, cond_row=None, atol=1e-4):
    """Sums `exp(log_prob)` over every image of the model's space; asserts it is 1.

    Args:
      model: a `DensityModel` on a tiny space (e.g. 2x2x1 at 2 bits).
      cond_row: conditioning for one example (arrays with a leading axis of 1), repeated.
    """
    images = all_images(model.image_size, model.image_size, model.channels, model.bits)
    cond = None if cond_row is None else {
        k: np.repeat(np.asarray(v), len(images), axis=0) for k, v in cond_row.items()}
    total = float(np.sum(np.exp(batched_log_prob(model, images, cond).astype(np.float64))))
    assert abs(total - 1.0) < atol, f"sum of p(x) over all images is {total}, not 1"
    return total


def assert_causal(logits_fn, order, seed=0):
    """Exact causality of a network with respect to a generation order.

    Args:
      logits_fn: float `(1, H, W, C)` → logits `(1, H, W, C, K)`.
      order: int `(H, W, C)`: the step at which each sub-pixel is generated; sub-pixels that
        share a step are generated in parallel and may not see each other.

    Asserts that d logits[p] / d x[q] is exactly 0 whenever `order[q] >= order[p]`, and that
    every sub-pixel with an earlier one depends on at least one of them.
    """
    order = np.asarray(order)
    rng = np.random.default_rng(seed)
    x = tf.constant(rng.normal(size=(1,) + order.shape).astype(np.float32))
    with tf.GradientTape(persistent=True) as tape:  # jacobian without pfor needs it
        tape.watch(x)
        logits = tf.cast(logits_fn(x), tf.float32)
        probe = tf.constant(rng.normal(size=logits.shape[-1]).astype(np.float32))
        per_subpixel = tf.reshape(tf.reduce_sum(logits * probe, axis=-1), [-1])
    jacobian = tape.jacobian(per_subpixel, x, experimental_use_pfor=False)
    jacobian = np.abs(jacobian.numpy().reshape(order.size, order.size))
    flat = order.reshape(-1)
    forbidden = flat[None, :] >= flat[:, None]
    leaked = jacobian * forbidden
    assert np.all(leaked == 0), (
        f"outputs depend on inputs at the same or a later step: max |grad| {leaked.max()} at "
        f"(output, input) {np.unravel_index(leaked.argmax(), leaked.shape)}")
    has_past = (~forbidden).any(axis=1)
    sees_past = (jacobian * ~forbidden).max(axis=1) > 0
    blind = np.where(has_past & ~sees_past)[0]
    assert blind.size == 0, f"sub-pixels {blind.tolist()} see none of the earlier sub-pixels"


def sharpen(model, factor=3.0):
    """Scales every weight so the model is far from uniform: sampling tests need the power."""
    model.build()
    for weight in model.trainable_weights:
        weight.assign(weight * factor)
    return model


def raster_order(height, width, channels):
    """Generation steps of raster order: `(H, W, C)` array `0..H*W*C-1`."""
    return np.arange(height * width * channels).reshape(height, width, channels)


def total_variation(samples, probs):
    """TV distance between the empirical distribution of `samples` (indices) and `probs`."""
    counts = np.bincount(samples, minlength=len(probs)) / len(samples)
    return 0.5 * float(np.abs(counts - probs).sum())


def tv_bound(probs, num_samples, slack=4.0):
    """A bound that the TV of `num_samples` true draws exceeds with negligible probability.

    E[TV] <= 0.5 * sum_i sqrt(p_i (1 - p_i) / n); `slack` times that leaves room for
    fluctuation (McDiarmid: TV moves by at most 1/n per draw, so deviations beyond
    3 sqrt(1/n) above the mean have probability < 1e-7).
    """
    mean_bound = 0.5 * float(np.sum(np.sqrt(probs * (1 - probs) / num_samples)))
    return slack * mean_bound + 3.0 / math.sqrt(num_samples)


def image_index(images, bits):
    """Index of each image in `all_images` order (base `2**bits` digits, raster order)."""
    flat = np.asarray(images).reshape(len(images), -1).astype(np.int64)
    weights = (2 ** bits) ** np.arange(flat.shape[1] - 1, -1, -1, dtype=np.int64)
    return flat @ weights


def assert_samples_follow(model, samples, cond_row=None, support=None):
    """Asserts that `samples` (int `(n, H, W, C)`) follow `exp(model.log_prob)`.

    Args:
      support: the images a conditional sampler can reach (e.g. those with a given first
        slice), int `(m, H, W, C)`; `exp(log_prob)` is renormalized over them. Default: every
        image of the space.

    Also checks the test has power: the uniform distribution over the support must fail it.
    """
    images = support if support is not None else all_images(
        model.image_size, model.image_size, model.channels, model.bits)
    cond = None if cond_row is None else {
        k: np.repeat(np.asarray(v), len(images), axis=0) for k, v in cond_row.items()}
    probs = np.exp(batched_log_prob(model, images, cond).astype(np.float64))
    probs /= probs.sum()
    n = len(samples)
    bound = tv_bound(probs, n)
    if support is None:
        indices = image_index(samples, model.bits)
    else:
        lookup = {tuple(x.ravel()): i for i, x in enumerate(np.asarray(support))}
        outside = [x for x in np.asarray(samples) if tuple(x.ravel()) not in lookup]
        assert not outside, f"{len(outside)} samples fall outside the support"
        indices = np.array([lookup[tuple(x.ravel())] for x in np.asarray(samples)])
    tv = total_variation(indices, probs)
    assert tv < bound, f"samples are {tv:.4f} in TV from log_prob (bound {bound:.4f})"
    uniform = np.full_like(probs, 1.0 / len(probs))
    assert 0.5 * np.abs(uniform - probs).sum() > 2 * bound, (
        "test has no power: the model is too close to uniform; train it a few steps first")
    return tv, bound


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
