"""SubscalePixelNetwork: what only the SPN shows (2x2 slices normalized, a slice range, an
unbiased one-slice training loss, size upscaling from a given first slice, `fit`, presets).
The claims every kind makes are `tests/harness.py`'s (tests/test_harness.py)."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from spn_tf import data, models, orderings
import helpers as testing
from helpers import sharpen


def tiny(image_size, channels, bits, **overrides):
    return models.build("spn", image_size, channels=channels, bits=bits, preset="tiny",
                        **overrides)


def test_normalized_over_all_4x4_binary_images():
    # 2x2 slices: the raster order inside a slice, which the harness's 2x2 copy (1x1 slices)
    # does not reach.
    testing.assert_normalized(tiny(4, 1, 1, subscale_factor=2))


def test_slice_range_is_normalized_given_earlier_slices():
    model = tiny(2, 1, 2, subscale_factor=2, slice_range=(1, 4))
    images = testing.all_images(2, 2, 1, 2)
    total = np.exp(testing.batched_log_prob(model, images).astype(np.float64)).sum()
    # Each of the 4 values of slice 0 contributes one normalized conditional distribution.
    assert abs(total - 4.0) < 1e-4


def test_one_slice_training_loss_is_unbiased():
    model = tiny(4, 3, 2, subscale_factor=2, cond={"label": 3})
    images = tf.constant(np.random.default_rng(0).integers(0, 4, (5, 4, 4, 3)), tf.int32)
    cond = {"label": tf.constant([0, 1, 2, 0, 1])}
    per_slice = np.stack([model.slice_log_prob(images, tf.fill([5], k), cond).numpy()
                          for k in range(4)], axis=1)
    np.testing.assert_allclose(4 * per_slice.mean(axis=1), model.log_prob(images, cond),
                               rtol=1e-5)
    drawn = []
    for _ in range(40):
        outputs = model({"images": images, **cond}, training=True)
        index = outputs["slice_index"].numpy()[:, 0]
        drawn.append(index)
        estimate = model.log_prob_from_outputs(images, cond, outputs).numpy()
        np.testing.assert_allclose(estimate, 4 * per_slice[np.arange(5), index], rtol=1e-5)
        loss = model.compute_loss({"images": images, **cond}, y_pred=outputs)
        expected = -np.mean(4 * per_slice[np.arange(5), index]) / (4 * 4 * 3 * math.log(2))
        np.testing.assert_allclose(loss, expected, rtol=1e-5)
    # 200 draws of a uniform index over 4 slices: chi-square with 3 dof well under 16.3
    # (p = 0.001); a sampler stuck on fewer slices is far above it.
    counts = np.bincount(np.concatenate(drawn), minlength=4)
    chi2 = ((counts - 50) ** 2 / 50).sum()
    assert chi2 < 16.3, counts


def test_training_draws_only_modelled_slices():
    model = tiny(4, 1, 1, subscale_factor=2, slice_range=(1, 3))
    images = tf.zeros([64, 4, 4, 1], tf.int32)
    index = model(images, training=True)["slice_index"].numpy()
    assert set(index.ravel()) == {1, 2}


def test_size_upscaling_and_completion_follow_the_conditional():
    model = sharpen(tiny(2, 1, 2, subscale_factor=2))
    low_res = np.array([[[2]]], np.int32)
    n = 3000
    samples = model.sample(n, seed=[4, 4], given={"first_slice": np.repeat(low_res[None], n, 0)})
    samples = samples.numpy()
    assert np.all(samples[:, 0, 0, 0] == 2)
    images = testing.all_images(2, 2, 1, 2)
    testing.assert_samples_follow(model, samples, support=images[images[:, 0, 0, 0] == 2])

    given = tf.constant(np.random.default_rng(1).integers(0, 4, (4, 2, 2, 1)), tf.int32)
    completed = model.sample(4, seed=[0, 1], given={"images": given, "num_slices": 3})
    kept = orderings.subscale_split(completed, 2)[:, :3]
    np.testing.assert_array_equal(kept, orderings.subscale_split(given, 2)[:, :3])


def test_given_errors():
    model = tiny(4, 1, 1, subscale_factor=2, slice_range=(1, 4))
    with pytest.raises(ValueError, match="first 1 slices"):
        model.sample(2, seed=0)
    with pytest.raises(ValueError, match="num_slices"):
        model.sample(2, seed=0, given={"images": np.zeros([2, 4, 4, 1], np.int32),
                                       "num_slices": 5})
    with pytest.raises(ValueError, match="given must be"):
        model.sample(2, seed=0, given={"mask": 1})
    with pytest.raises(ValueError, match="subscale_factor=3"):
        tiny(4, 1, 1, subscale_factor=3)
    with pytest.raises(ValueError, match="slice_range"):
        tiny(4, 1, 1, subscale_factor=2, slice_range=(2, 2))
    depth = tiny(4, 1, 1, subscale_factor=2, msb_bits=1)
    with pytest.raises(ValueError, match="msb"):
        depth.log_prob(np.zeros([1, 4, 4, 1], np.int32))


def test_fit_on_embedded_data_one_slice_per_step():
    ds = data.load("embedded", image_size=8, bits=3, batch_size=8, with_labels=True,
                   repeat=True)
    model = tiny(8, 3, 3, subscale_factor=2, cond={"label": data.num_classes("embedded")})
    model.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=True)
    history = model.fit(ds, steps_per_epoch=20, epochs=2, verbose=0)
    losses = history.history["loss"]
    assert all(math.isfinite(x) for x in losses) and losses[-1] < losses[0]
    # `evaluate` is the exact bits/dim (every slice).
    batch = next(iter(ds))
    exact = model.evaluate(batch, verbose=0)
    np.testing.assert_allclose(exact, np.mean(model.bits_per_dim(
        batch["images"], {"label": batch["label"]})), rtol=1e-4)


def test_build_presets_scale_with_image_size():
    assert models.build("spn", 256, preset="paper").subscale_factor == 8
    assert models.build("spn", 32, preset="small").subscale_factor == 2


@pytest.mark.parametrize("preset, size", [("small", 16), ("small", 8), ("tiny", 4),
                                          ("paper", 32)])
def test_no_preset_drops_subscaling_at_small_sizes(preset, size):
    assert models.build("spn", size, preset=preset).subscale_factor >= 2


def test_a_size_the_preset_factor_does_not_divide_is_refused_naming_it():
    with pytest.raises(ValueError, match="subscale_factor=2 must be a positive divisor"):
        models.build("spn", 5, preset="tiny")
    assert models.build("spn", 5, preset="tiny", subscale_factor=1).subscale_factor == 1
    model = models.build("spn", 4, channels=1, bits=2, preset="tiny")
    with pytest.raises(ValueError, match=r"first_slice.*H/S x W/S for S=2"):
        model.sample(1, 0, given={"first_slice": np.zeros((1, 4, 4, 1), np.int32)})
    with pytest.raises(ValueError, match="unknown hyperparameters"):
        models.build("spn", 8, preset="tiny", slice_sizes=3)
    with pytest.raises(ValueError, match="embedder_half_resolution='false' must be True or"):
        models.build("spn", 8, preset="tiny", embedder_half_resolution="false")
