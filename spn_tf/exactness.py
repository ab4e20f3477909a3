"""What `spn_tf.check` and the tests prove about a model, as library code.

* `all_images` — every image of a tiny space, to sum `exp(log_prob)` over (normalization).
* `assert_normalized` — `sum_x p(x) == 1`.
* `assert_causal` — the Jacobian of logits w.r.t. inputs is exactly zero on every sub-pixel
  generated at the same step or later, and non-zero on some earlier one.
* `assert_samples_follow` — a G-test of the samples' counts against the exact enumerated
  `exp(log_prob)` at a stated false-alarm rate (`g_test`, `chi2_sf`).
* `raster_order`, `subscale_order`, `multiscale_order` — generation steps for
  `assert_causal`; `subscale_logits` lays an SPN's slice logits out as the image.
"""

import itertools

import numpy as np
import tensorflow as tf

from spn_tf import orderings


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


def assert_causal(logits_fn, order, seed=0, modelled=None):
    """Exact causality of a network with respect to a generation order.

    Args:
      logits_fn: float `(1, H, W, C)` → logits `(1, H, W, C, K)`.
      order: int `(H, W, C)`: the step at which each sub-pixel is generated; sub-pixels that
        share a step are generated in parallel and may not see each other.
      modelled: bool `(H, W, C)`: the sub-pixels the network predicts (default all); the
        others' logits are placeholders, exempt from the second check.

    Asserts that d logits[p] / d x[q] is exactly 0 whenever `order[q] >= order[p]`, and that
    every modelled sub-pixel with an earlier one depends on at least one of them.
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
    if modelled is not None:
        has_past &= np.asarray(modelled).reshape(-1)
    sees_past = (jacobian * ~forbidden).max(axis=1) > 0
    blind = np.where(has_past & ~sees_past)[0]
    assert blind.size == 0, f"sub-pixels {blind.tolist()} see none of the earlier sub-pixels"


def sharpen(model, factor=3.0):
    """Scales every weight so the model is far from uniform: a G-test of its sampler needs
    the power (`spn_tf.check` and the tests)."""
    model.build()
    for weight in model.trainable_weights:
        weight.assign(weight * factor)
    return model


def raster_order(height, width, channels):
    """Generation steps of raster order: `(H, W, C)` array `0..H*W*C-1`."""
    return np.arange(height * width * channels).reshape(height, width, channels)


def subscale_order(image_size, channels, subscale_factor, start=0):
    """Generation steps of subscale order: slice by slice, raster order and channels inside
    a slice; slices before `start` (given to a model of slices `[start, S*S)`) share step -1.

    Returns:
      int `(H, W, C)`.
    """
    s, h = subscale_factor, image_size // subscale_factor
    steps = np.arange(s * s * h * h * channels).reshape(1, s * s, h, h, channels)
    steps = np.where(np.arange(s * s)[None, :, None, None, None] < start, -1, steps)
    return orderings.subscale_merge(tf.constant(steps), s)[0].numpy()


def subscale_modelled(image_size, channels, subscale_factor, slice_range):
    """bool `(H, W, C)`: the sub-pixels of the slices in `slice_range = (start, stop)`."""
    s, h = subscale_factor, image_size // subscale_factor
    start, stop = slice_range
    inside = (np.arange(s * s) >= start) & (np.arange(s * s) < stop)
    planes = np.broadcast_to(inside[None, :, None, None, None], (1, s * s, h, h, channels))
    return orderings.subscale_merge(tf.constant(planes), s)[0].numpy()


def subscale_logits(model, cond):
    """float `(1, H, W, C)` → an SPN's logits of every slice, laid out as the image,
    `(1, H, W, C, K)`; zeros for the slices outside its `slice_range` (it does not model them).
    """
    start, stop = model.slice_range

    def logits_fn(x):
        logits = model.call(x, dict(cond or {}), False)["logits"]
        shape = logits.shape
        flat = tf.reshape(logits, [1, shape[1], shape[2], shape[3], shape[4] * shape[5]])
        zeros = lambda n: tf.zeros([1, n] + flat.shape[2:], flat.dtype)  # noqa: E731
        flat = tf.concat([zeros(start), flat, zeros(model.num_slices - stop)], axis=1)
        merged = orderings.subscale_merge(flat, model.subscale_factor)
        return tf.reshape(merged, merged.shape[:3] + (shape[4], shape[5]))

    return logits_fn


def group_steps(side, patch):
    """Steps inside one `side x side` multiscale group: type A (`patch=0`) one, type B `P*P`
    with `P = min(patch, side)`, the position in its patch in raster order.

    Returns:
      `(steps int (side, side), number of steps)`.
    """
    if not patch:
        return np.zeros((side, side), np.int64), 1
    p = min(patch, side)
    i, j = np.meshgrid(np.arange(side) % p, np.arange(side) % p, indexing="ij")
    return i * p + j, p * p


def multiscale_order(image_size, channels, base_size, patch=0):
    """Generation step of each sub-pixel in the multiscale ordering: base in raster order,
    then per (scale, group) the group's steps (`group_steps`), channels in turn; every patch
    of a group in parallel. Returns int `(H, W, C)`."""
    base = np.arange(base_size * base_size * channels).reshape(1, base_size, base_size, channels)
    groups, step, r = [], base.size, base_size
    while r < image_size:
        position, length = group_steps(r, patch)
        steps = (step + length * channels * np.arange(3)[:, None, None, None]
                 + channels * position[None, :, :, None] + np.arange(channels))
        groups.append(steps[None])
        step, r = step + 3 * length * channels, 2 * r
    return orderings.multiscale_merge(tf.constant(base),
                                      [tf.constant(g) for g in groups]).numpy()[0]


def chi2_sf(statistic, dof):
    """Upper tail `P(X >= statistic)` of a chi-square with `dof` degrees of freedom: the
    regularized upper incomplete gamma `Q(dof / 2, statistic / 2)` (`tf.math.igammac`, in
    float64)."""
    if statistic <= 0:
        return 1.0
    return float(tf.math.igammac(tf.constant(0.5 * dof, tf.float64),
                                 tf.constant(0.5 * statistic, tf.float64)))


def pool_cells(probs, num_samples, min_expected=5.0):
    """Cell of each outcome after pooling: outcomes expected fewer than `min_expected` times
    in `num_samples` draws share one cell (merged with the least likely other cell while the
    pool itself is expected fewer times). Returns int `(len(probs),)` cell ids."""
    expected = np.asarray(probs, np.float64) * num_samples
    order = np.argsort(expected)
    cells = np.arange(len(probs))
    small = expected < min_expected
    pooled = list(order[small[order]])
    rest = [i for i in order if not small[i]]
    while pooled and expected[pooled].sum() < min_expected and rest:
        pooled.append(rest.pop(0))
    if pooled:
        cells[pooled] = pooled[0]
    return np.unique(cells, return_inverse=True)[1]


def g_test(indices, probs, min_expected=5.0):
    """G-test (likelihood-ratio goodness of fit) of draws against exact probabilities.

    Args:
      indices: int `(n,)`: the outcome of each draw, in `[0, len(probs))`.
      probs: float `(m,)`, summing to 1.
      min_expected: outcomes expected fewer times are pooled (`pool_cells`), so that the
        chi-square approximation of the statistic's null distribution holds.

    Returns:
      `(statistic, dof, p_value)`; `p_value` from `chi2_sf`. `dof` is 0 (and `p_value` 1) when
      everything pooled into one cell: no test is possible.
    """
    n = len(indices)
    cells = pool_cells(probs, n, min_expected)
    expected = np.bincount(cells, weights=np.asarray(probs, np.float64) * n)
    observed = np.bincount(cells[np.asarray(indices)], minlength=len(expected))
    seen = observed > 0
    statistic = 2.0 * float(np.sum(observed[seen] * np.log(observed[seen] / expected[seen])))
    dof = len(expected) - 1
    return statistic, dof, (chi2_sf(statistic, dof) if dof else 1.0)


def image_index(images, bits):
    """Index of each image in `all_images` order (base `2**bits` digits, raster order)."""
    flat = np.asarray(images).reshape(len(images), -1).astype(np.int64)
    weights = (2 ** bits) ** np.arange(flat.shape[1] - 1, -1, -1, dtype=np.int64)
    return flat @ weights


def exact_probs(model, support=None, cond_row=None, log_prob_fn=None):
    """`exp(log_prob)` over `support` (default: every image of the space), renormalized.

    `log_prob_fn(images, cond)` replaces `model.log_prob` (e.g. the distribution an
    approximate sampler draws from).
    """
    images = support if support is not None else all_images(
        model.image_size, model.image_size, model.channels, model.bits)
    cond = None if cond_row is None else {
        k: np.repeat(np.asarray(v), len(images), axis=0) for k, v in cond_row.items()}
    if log_prob_fn is None:
        log_prob = batched_log_prob(model, images, cond)
    else:
        log_prob = np.asarray(log_prob_fn(images, cond))
    probs = np.exp(log_prob.astype(np.float64))
    return probs / probs.sum()


def assert_samples_follow(model, samples, cond_row=None, support=None, alpha=1e-3,
                          log_prob_fn=None):
    """Asserts that `samples` (int `(n, H, W, C)`) follow `exp(model.log_prob)`: a G-test.

    The exact probability of every image is enumerated; the draws' counts are compared with
    them by a G-test (`g_test`, cells expected fewer than 5 times pooled), which fails with
    probability `alpha` when the sampler is right (the false-alarm rate). Its power is proven
    in `tests/test_sampler_power.py`: samplers at temperatures 0.9 and 1.1 and one with the
    channels permuted fail it.

    Args:
      cond_row: conditioning for one example (arrays with a leading axis of 1).
      support: the images a conditional sampler can reach (e.g. those with a given first
        slice), int `(m, H, W, C)`; `exp(log_prob)` is renormalized over them. Default: every
        image of the space.
      alpha: false-alarm rate.
      log_prob_fn: `(images, cond) -> log p` to test against instead of `model.log_prob`.

    Also checks that the test can fail at all: draws from the uniform distribution over the
    support, in the same number, must be rejected (in expectation).

    Returns:
      `(statistic, p_value)`.
    """
    probs = exact_probs(model, support, cond_row, log_prob_fn)
    n = len(samples)
    if support is None:
        indices = image_index(samples, model.bits)
    else:
        lookup = {tuple(x.ravel()): i for i, x in enumerate(np.asarray(support))}
        outside = [x for x in np.asarray(samples) if tuple(x.ravel()) not in lookup]
        assert not outside, f"{len(outside)} samples fall outside the support"
        indices = np.array([lookup[tuple(x.ravel())] for x in np.asarray(samples)])
    statistic, dof, p_value = g_test(indices, probs)
    assert dof > 0, "test has no power: every outcome pooled into one cell; draw more samples"
    assert p_value > alpha, (
        f"samples do not follow log_prob: G = {statistic:.1f} on {dof} dof, p = {p_value:.2e} "
        f"< alpha = {alpha}")
    # The uniform distribution's expected counts: its G statistic must be significant.
    cells = pool_cells(probs, n)
    expected = np.bincount(cells, weights=probs * n)
    uniform = np.bincount(cells, weights=np.full(len(probs), n / len(probs)))
    seen = uniform > 0
    uniform_g = 2.0 * float(np.sum(uniform[seen] * np.log(uniform[seen] / expected[seen])))
    assert chi2_sf(uniform_g, dof) < alpha, (
        "test has no power: the model is too close to uniform; train it a few steps first")
    return statistic, p_value


