"""Exactness checks of a model through its verbs (`log_prob_map`, `log_prob`, `sample`).

* causality — changing a sub-pixel changes no log-likelihood term of a sub-pixel generated at
  the same step or earlier in the model's own ordering (raster, subscale slices, multiscale
  groups; upscaling: each of its networks; video: frame after frame, the first given): the
  terms are compared bit for bit. The same probes give the receptive-field report: which
  earlier sub-pixels reach each term.
* conditionals — at full size, every probed step's conditional sums to one over its values
  (this also catches a sub-pixel that sees itself, which the causality probe cannot), and
  `log_prob` of a drawn sample equals the sum of its terms.
* normalization — `sum_x p(x) = 1` by enumeration on a tiny copy (same class and layers, a
  2x2 image at 1-2 bits), its weights randomly perturbed (`perturb`: no zero-initialized
  weight hides a term that does not normalize).
* sampler — compiled vs reference agreement over seeds; a G-test that the tiny copy's samples
  follow its `log_prob` (`spn_tf.exactness.assert_samples_follow`).
"""

import numpy as np

from spn_tf import exactness
from spn_tf.check import NA, Verdict, verdict

TINY_SPACE = 4096  # images enumerated for exact normalization, at most


def all_inputs(model):
    """Every example of the model's space: images, or clips (every frame every image)."""
    shape = model.example_shape
    every = exactness.all_images(int(np.prod(shape[:-2])), shape[-2], shape[-1], model.bits)
    return every.reshape((-1,) + shape)


def _repeat(cond, n):
    return {k: np.repeat(v, n, axis=0) for k, v in cond.items()} or None


def _maps(model, images, cond, chunk=64):
    """`log_prob_map` of many images, `chunk` at a time; `cond` has one row, repeated."""
    return np.concatenate([model.log_prob_map(images[i:i + chunk], _repeat(cond, len(
        images[i:i + chunk]))).numpy() for i in range(0, len(images), chunk)])


def _probe_positions(order, max_positions, rng):
    """Flat indices of the sub-pixels to change: all of them on small images, else a sample
    that includes the last generated one."""
    flat = np.flatnonzero(order.reshape(-1) >= 0)
    if len(flat) <= max_positions:
        return flat
    chosen = rng.choice(flat, max_positions - 1, replace=False)
    return np.union1d(chosen, [int(np.argmax(order))])


def causality(name, model, rng, max_positions=64, trials=2):
    """Verdicts: no term depends on a sub-pixel generated at its step or later; the reach.

    Each probe (an image with one sub-pixel changed) is compared with the unchanged image
    computed at the same row of an equal batch: some kernels round differently by batch row,
    never by the other rows' content. `trials` random images; the reach is their union.
    """
    ordering = model.ordering
    order = ordering.order.reshape(-1)
    num_values, shape = 2 ** model.bits, model.example_shape
    positions = _probe_positions(order.reshape(shape), max_positions, rng)
    index = np.arange(len(positions))
    changed = np.zeros((len(positions), order.size), bool)
    for _ in range(trials):
        image = rng.integers(0, num_values, (1, order.size)).astype(np.int32)
        cond, _ = ordering.conditioning(1, rng)
        base = np.repeat(image, len(positions), axis=0)
        probes = base.copy()
        probes[index, positions] = (probes[index, positions] + rng.integers(
            1, num_values, len(positions))) % num_values
        maps = [_maps(model, x.reshape((-1,) + shape), cond).reshape(len(x), -1)
                for x in (base, probes)]
        changed |= maps[1] != maps[0]  # exact
    forbidden = order[None, :] <= order[positions][:, None]
    forbidden[index, positions] = False  # its own term may change
    leaks = np.argwhere(changed & forbidden)
    if len(leaks):
        q, p = positions[leaks[0][0]], leaks[0][1]
        where = lambda flat: tuple(int(i) for i in np.unravel_index(flat, shape))  # noqa: E731
        detail = (f"{len(leaks)} leaks, e.g. the term of sub-pixel {where(p)} (step "
                  f"{order[p]}) changes with sub-pixel {where(q)} (step {order[q]})")
    else:
        detail = (f"{len(positions)} sub-pixels changed ({trials} images), every term at their "
                  f"step or earlier bit-identical")
    verdicts = [verdict(f"causality [{name}]", not len(leaks), detail)]
    later = (order[None, :] > order[positions][:, None]) & ordering.modelled.reshape(-1)[None, :]
    reach = (changed & later).sum(axis=0) / np.maximum(later.sum(axis=0), 1)
    outputs = later.any(axis=0)
    blind = outputs & (reach == 0)
    detail = (f"terms see {100 * reach[outputs].mean():.0f}% of the changed earlier sub-pixels "
              f"on average (min {100 * reach[outputs].min():.0f}%)") if outputs.any() else (
        "no term has a changed earlier sub-pixel")
    probe = ordering.reach_probe
    if probe and later[:, probe[0]].any():
        detail += (f"; {probe[1]} sees {100 * reach[probe[0]]:.0f}% of the changed earlier "
                   f"sub-pixels")
    if blind.any():
        detail += (f"; {int(blind.sum())} terms saw none of the changed earlier sub-pixels in "
                   f"these probes (dead ReLU paths at these weights, or a blind spot)")
    # A report: integer probes can miss a dependence a ReLU hides at these weights, so only a
    # network that sees no earlier sub-pixel at all (e.g. a context path cut off) fails.
    ok = not (outputs.any() and reach[outputs].max() == 0)
    verdicts.append(verdict(f"receptive field [{name}]", ok, detail))
    return verdicts


def conditionals(name, model, rng, positions=8, atol=1e-4):
    """Verdicts: probed conditionals sum to one; `log_prob` of a drawn sample = its terms."""
    shape = model.example_shape
    num_values = 2 ** model.bits
    ordering = model.ordering
    cond, given = ordering.conditioning(1, rng)
    sample = model.sample(1, int(rng.integers(1 << 30)), cond=_repeat(cond, 1),
                          given=given).numpy()
    log_prob = float(model.log_prob(sample, _repeat(cond, 1))[0])
    total = float(model.log_prob_map(sample, _repeat(cond, 1)).numpy().sum())
    verdicts = [verdict(
        f"log_prob = sum of terms [{name}]", np.isfinite(log_prob) and abs(
            log_prob - total) <= atol * max(1.0, abs(log_prob)),
        f"drawn sample: log_prob {log_prob:.4f}, sum of its {np.prod(shape)} terms {total:.4f}")]
    flat = np.flatnonzero(ordering.modelled.reshape(-1))
    chosen = rng.choice(flat, min(positions, len(flat)), replace=False)
    images = np.repeat(sample.reshape(1, -1), len(chosen) * num_values, axis=0)
    rows = np.arange(len(images))
    images[rows, np.repeat(chosen, num_values)] = np.tile(np.arange(num_values), len(chosen))
    maps = _maps(model, images.reshape((-1,) + shape), cond).reshape(len(images), -1)
    terms = maps[rows, np.repeat(chosen, num_values)].reshape(len(chosen), num_values)
    sums = np.exp(terms.astype(np.float64)).sum(axis=1)
    worst = float(np.abs(sums - 1).max())
    verdicts.append(verdict(
        f"conditionals sum to 1 [{name}]", worst <= atol,
        f"{len(chosen)} steps of a drawn sample, each over its {num_values} values: max "
        f"|sum - 1| = {worst:.2e}"))
    return verdicts


def tiny_copy(model):
    """The same kind on a 2x2 image at the fewest bits its head takes (`ordering.tiny_config`;
    one channel when three would make the space too large to enumerate). Fresh weights.

    Raises:
      ValueError: the configuration does not fit a 2x2 image (the message says why).
    """
    config = model.ordering.tiny_config
    tiny = type(model).from_config(config)
    if 2 ** (tiny.bits * int(np.prod(tiny.example_shape))) > TINY_SPACE:
        tiny = type(model).from_config({**config, "channels": 1})
    return tiny


def perturb(model, rng, scale=0.5):
    """Adds Gaussian noise to every weight (in place), `scale` times the weight's own spread
    (at least `scale * 0.1`): zero-initialized biases and gates become non-zero, so a check
    sees every path of the network. Returns `model`."""
    model.build()
    for weight in model.trainable_weights:
        if "float" in str(weight.dtype):
            value = np.asarray(weight.numpy())
            spread = max(float(value.std()), 0.1)
            weight.assign(value + scale * spread * rng.standard_normal(value.shape).astype(
                value.dtype))
    return model


def normalization(name, model, rng):
    """Verdict: `sum_x p(x) = 1` over every image of the tiny copy, its weights perturbed."""
    try:
        tiny = perturb(tiny_copy(model), rng)
        ordering = tiny.ordering
        cond, _ = ordering.conditioning(1, rng)
        images = all_inputs(tiny)
        log_prob = exactness.batched_log_prob(tiny, images, _repeat(cond, len(images)))
        # Sub-pixels a network is given (or leaves to another) take every value once each.
        free = int((~ordering.modelled).sum())
        total = float(np.exp(log_prob.astype(np.float64)).sum()) / 2 ** (tiny.bits * free)
        what = f" per value of its {free} given sub-pixels" if free else ""
        return [verdict(f"normalization [{name}]", abs(total - 1) < 1e-4,
                        f"tiny copy {_space(tiny)}: sum of p(x){what} = {total:.6f}")]
    except ValueError as error:
        return [Verdict(f"normalization [{name}]", NA, f"no tiny copy: {error}")]


def samples_follow(name, model, rng, num_samples=3000):
    """Verdict: the tiny copy's compiled samples follow its `log_prob` (G-test).

    The tiny copy's fresh weights are scaled so the test has power: by 2, or, where that
    left one outcome with nearly all the mass (every outcome pooled into one cell), by 1,
    else 4 — each try draws new samples, and any try with power that fails is a FAIL.
    """
    check, last = f"samples follow log_prob [{name}]", None
    for factor in (2.0, 1.0, 4.0):
        try:
            tiny = exactness.sharpen(tiny_copy(model), factor)
        except ValueError as error:
            return [Verdict(check, NA, f"no tiny copy: {error}")]
        ordering = tiny.ordering
        cond, given = ordering.conditioning(num_samples, rng)
        cond = {k: v[:1] for k, v in cond.items()}
        samples = tiny.sample(num_samples, int(rng.integers(1 << 30)),
                              cond=_repeat(cond, num_samples), given=given).numpy()
        support, free = None, ~ordering.modelled
        if free.any():  # the images that keep what the network is given (or leaves to another)
            every = all_inputs(tiny)
            support = every[(every == samples[:1])[:, free].all(axis=1)]
        try:
            statistic, p_value = exactness.assert_samples_follow(tiny, samples, cond or None,
                                                               support)
        except AssertionError as error:
            if "no power" not in str(error):
                return [Verdict(check, "FAIL", str(error))]
            last = error
            continue
        return [verdict(check, True,
                        f"G-test on the tiny copy (weights x{factor:g}), {num_samples} "
                        f"samples: G = {statistic:.1f}, p = {p_value:.2f} (false-alarm rate "
                        f"1e-3)")]
    return [Verdict(check, NA, str(last))]


def agreement(model, rng, seeds=2):
    """Verdict: the compiled sampler draws the reference sampler's images for the same seeds.

    Observed, not guaranteed: float rounding can flip a draw at a CDF boundary, so
    this fails only when most images differ (e.g. a compiled path at another temperature).
    """
    cond, given = model.ordering.conditioning(1, rng)
    cond, same = _repeat(cond, 1), 0
    for seed in range(seeds):
        compiled = model.sample(1, [7, seed], cond=cond, given=given, mode="xla").numpy()
        reference = model.sample(1, [7, seed], cond=cond, given=given, mode="reference").numpy()
        same += int(np.array_equal(compiled, reference))
    return [verdict("compiled = reference sampler", same * 2 > seeds,
                    f"{same}/{seeds} seeds give identical images (observed rate; rare "
                    f"rounding flips are allowed)")]


def _space(model):
    shape = model.example_shape
    frames = f"{shape[0]} frames of " if len(shape) == 4 else ""
    return (f"{frames}{model.image_size}x{model.image_size}x{model.channels} at {model.bits} "
            f"bit{'s' if model.bits > 1 else ''}")


def audit_model(model, seed=0, agreement_seeds=2, max_positions=64, gtest_samples=3000):
    """Every model check, network by network; returns the verdicts."""
    rng = np.random.default_rng(seed)
    model.build()
    verdicts = []
    for name, network in model.ordering.units:
        verdicts += causality(name, network, rng, max_positions)
        verdicts += conditionals(name, network, rng)
        verdicts += normalization(name, network, rng)
        verdicts += samples_follow(name, network, rng, gtest_samples)
    verdicts += agreement(model, rng, agreement_seeds)
    return verdicts
