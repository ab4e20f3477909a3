"""`assert_samples_follow` has power: a G-test against exact enumerated probabilities that the
honest sampler passes at a stated false-alarm rate and wrong samplers (temperature 0.9 or 1.1,
channels in the wrong order) fail."""

import math

import numpy as np
import pytest

from spn_tf import models
import helpers as testing

ALPHA = 1e-3
NUM_SAMPLES = 20_000


@pytest.mark.parametrize("statistic,dof,p_value", [
    # Chi-square table values (upper tail).
    (3.841, 1, 0.05), (10.828, 1, 0.001), (16.266, 3, 0.001), (124.342, 100, 0.05),
    (0.5, 4, 0.97350), (20.0, 2, math.exp(-10.0)), (1e-3, 2, math.exp(-5e-4)),
])
def test_chi2_sf_matches_the_tables(statistic, dof, p_value):
    assert testing.chi2_sf(statistic, dof) == pytest.approx(p_value, rel=2e-3)


def test_g_test_false_alarm_rate_and_pooling():
    """Exact draws from a skewed distribution with many rare outcomes (pooled): the rejection
    rate at alpha = 0.01 is what it says (binomial 99.9% range for 2000 repeats: 7 to 38)."""
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.full(500, 0.3))
    cells = testing.pool_cells(probs, 2000)
    expected = np.bincount(cells, weights=probs * 2000)
    assert expected.min() >= 5 and len(expected) < 500  # rare outcomes share a cell
    rejections = sum(testing.g_test(rng.choice(500, 2000, p=probs), probs)[2] < 0.01
                     for _ in range(2000))
    assert 7 <= rejections <= 38, rejections


@pytest.fixture(scope="module")
def model():
    """A raster model over 2x2 RGB 1-bit images (4096 of them) whose distribution is far from
    uniform and far from deterministic (entropy 4.3 nats of 8.3; largest p 0.18)."""
    model = models.build("raster", 2, channels=3, bits=1, preset="tiny")
    model.build()
    rng = np.random.default_rng(0)
    model.set_weights([rng.normal(scale=0.5, size=w.shape).astype(np.float32)
                       for w in model.get_weights()])
    return model


@pytest.mark.parametrize("mode", ["xla", "reference"])
def test_the_honest_sampler_passes(model, mode):
    samples = model.sample(NUM_SAMPLES, seed=[1, 2], mode=mode).numpy()
    testing.assert_samples_follow(model, samples, alpha=ALPHA)


@pytest.mark.parametrize("temperature", [0.9, 1.1])
def test_a_sampler_at_another_temperature_fails(model, temperature):
    samples = model.sample(NUM_SAMPLES, seed=[1, 2], temperature=temperature).numpy()
    with pytest.raises(AssertionError, match="do not follow"):
        testing.assert_samples_follow(model, samples, alpha=ALPHA)


def test_a_sampler_with_the_channels_swapped_fails(model):
    """Channels drawn in the order B, G, R: the honest draws with R and B exchanged."""
    samples = model.sample(NUM_SAMPLES, seed=[1, 2]).numpy()[..., ::-1]
    with pytest.raises(AssertionError, match="do not follow"):
        testing.assert_samples_follow(model, samples, alpha=ALPHA)
