"""MultidimensionalUpscaling: what only the composite shows (log_prob is the sum of its
networks, two-network composites normalized, size and depth upscaling keep what is given,
each part trains alone, part overrides saved). The claims every kind makes are
`tests/harness.py`'s (tests/test_harness.py)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from spn_tf import data, models, orderings
import helpers as testing
from helpers import sharpen
from spn_tf.models.upscaling import MultidimensionalUpscaling


def tiny(image_size, channels, bits, **overrides):
    return models.build("upscaling", image_size, channels=channels, bits=bits, preset="tiny",
                        **overrides)


# The three-network composite is the harness's (tests/test_harness.py: "upscaling").
@pytest.mark.parametrize("image_size,channels,bits,extra,parts", [
    (2, 3, 1, dict(subscale_factor=2, msb_bits=None), 2),  # size upscaling only
    (1, 3, 2, dict(subscale_factor=1, msb_bits=1), 2),  # depth upscaling only
])
def test_two_network_composites_are_normalized(image_size, channels, bits, extra, parts):
    model = sharpen(tiny(image_size, channels, bits, **extra))
    assert len(model.networks) == parts
    cond_row = {"label": np.array([2], np.int32)} if "cond" in extra else None
    testing.assert_normalized(model, cond_row)


def test_log_prob_is_the_sum_of_the_three_networks():
    model = tiny(4, 3, 3, subscale_factor=2, msb_bits=2, cond={"label": 3})
    images = tf.constant(np.random.default_rng(0).integers(0, 8, (3, 4, 4, 3)), tf.int32)
    cond = {"label": tf.constant([0, 1, 2])}
    msb, lsb = images // 2, images % 2
    nets = model.networks
    expected = (nets["first"].log_prob(msb, cond) + nets["size"].log_prob(msb, cond)
                + nets["depth"].log_prob(lsb, {**cond, "msb": msb}))
    np.testing.assert_allclose(model.log_prob(images, cond), expected, rtol=1e-6)
    parts = [nets[part].log_prob(*model.part_inputs(part, images, cond)) for part in nets]
    np.testing.assert_allclose(sum(parts), expected, rtol=1e-6)
    # The whole-model training estimate is the sum of the parts' one-slice estimates.
    outputs = model({"images": images, **cond}, training=True)
    estimate = model.log_prob_from_outputs(images, cond, outputs)
    per_part = [
        (nets["first"], msb, cond), (nets["size"], msb, cond),
        (nets["depth"], lsb, {**cond, "msb": msb})]
    total = sum(
        (net.slice_range[1] - net.slice_range[0])
        * net.slice_log_prob(x, outputs[part]["slice_index"][:, 0], c)
        for part, (net, x, c) in zip(("first", "size", "depth"), per_part))
    np.testing.assert_allclose(estimate, total, rtol=1e-5)


def test_size_and_depth_upscaling_keep_what_is_given():
    model = tiny(4, 3, 3, subscale_factor=2, msb_bits=1, cond={"label": 2})
    rng = np.random.default_rng(0)
    cond = {"label": np.array([0, 1])}
    low_res = rng.integers(0, 8, (2, 2, 2, 3)).astype(np.int32)
    with pytest.raises(ValueError, match="approximate"):
        model.sample(2, seed=1, cond=cond, given={"first_slice": low_res})
    up = model.sample(2, seed=1, cond=cond, given={"first_slice": low_res, "approximate": True})
    np.testing.assert_array_equal(up.numpy()[:, ::2, ::2], low_res)
    low_msb = model.sample(2, seed=1, cond=cond, given={"msb": up // 4, "num_slices": 1})
    np.testing.assert_array_equal(low_msb.numpy()[:, ::2, ::2] // 4, low_res // 4)

    msb = rng.integers(0, 2, (2, 4, 4, 3)).astype(np.int32)
    deep = model.sample(2, seed=1, cond=cond, given={"msb": msb}).numpy()
    np.testing.assert_array_equal(deep // 4, msb)

    images = rng.integers(0, 8, (2, 4, 4, 3)).astype(np.int32)
    done = model.sample(2, seed=1, cond=cond,
                        given={"images": images, "num_slices": 2, "approximate": True})
    np.testing.assert_array_equal(orderings.subscale_split(done, 2)[:, :2],
                                  orderings.subscale_split(images, 2)[:, :2])


def test_depth_upscaling_follows_the_conditional():
    model = sharpen(tiny(1, 3, 2, subscale_factor=1, msb_bits=1))
    msb = np.array([[[[1, 0, 1]]]], np.int32)
    n = 3000
    samples = model.sample(n, seed=3, given={"msb": np.repeat(msb, n, 0)}).numpy()
    images = testing.all_images(1, 1, 3, 2)
    testing.assert_samples_follow(
        model, samples, support=images[np.all(images // 2 == msb, axis=(1, 2, 3))])


def _approximate_log_prob(model):
    """`log q(x | x_0)` of the approximate sampler given the full-depth first slice:
    `p_size(msb_>=1 | msb_0) * p_depth(lsb | msb) / p_depth(lsb_0 | msb)` (the class doc)."""
    nets = model.networks

    def log_prob_fn(images, cond):
        msb, lsb = images // 2, images % 2
        first = np.zeros(len(images), np.int32)
        return (testing.batched_log_prob(nets["size"], msb)
                + testing.batched_log_prob(nets["depth"], lsb, {"msb": msb})
                - nets["depth"].slice_log_prob(lsb, first, {"msb": msb}).numpy())

    return log_prob_fn


def test_upscaling_from_a_full_depth_slice_is_the_documented_approximation():
    """Size upscaling from a full-depth first slice: the exact conditional p(x | x_0) by
    enumeration, the approximation's own distribution q (class doc), and the samplers."""
    model = sharpen(tiny(2, 1, 2, subscale_factor=2, msb_bits=1), 2.0)
    images = testing.all_images(2, 2, 1, 2)
    n = 20_000
    tvs = []
    for value in range(4):
        support = images[images[:, 0, 0, 0] == value]
        exact = testing.exact_probs(model, support)
        approx = testing.exact_probs(model, support, log_prob_fn=_approximate_log_prob(model))
        tvs.append(0.5 * np.abs(exact - approx).sum())
    # The figures the class doc states (TV 0 to 0.33 over the four first slices of this
    # model): an approximation, measured exactly.
    np.testing.assert_allclose(tvs, [0.0, 0.334, 0.320, 0.242], atol=0.005)
    value = int(np.argmax(tvs))
    support = images[images[:, 0, 0, 0] == value]
    low_res = np.full((n, 1, 1, 1), value, np.int32)
    samples = model.sample(n, seed=[2, 5], given={"first_slice": low_res, "approximate": True})
    samples = samples.numpy()
    # It draws from q exactly, and the G-test tells q from the exact conditional.
    testing.assert_samples_follow(model, samples, support=support,
                                  log_prob_fn=_approximate_log_prob(model))
    with pytest.raises(AssertionError, match="do not follow"):
        testing.assert_samples_follow(model, samples, support=support)
    # The exact entry point: given the first slice's top bit, p(x | msb_0) exactly.
    msb = np.zeros((n, 2, 2, 1), np.int32)
    msb[:, 0, 0, 0] = value // 2
    exact_samples = model.sample(n, seed=[2, 5], given={"msb": msb, "num_slices": 1}).numpy()
    testing.assert_samples_follow(model, exact_samples,
                                  support=images[images[:, 0, 0, 0] // 2 == value // 2])


def test_errors():
    with pytest.raises(ValueError, match="train_part='depth'"):
        tiny(4, 1, 2, subscale_factor=2, msb_bits=None, train_part="depth")
    with pytest.raises(ValueError, match="msb_bits=2 must be in"):
        tiny(4, 1, 2, subscale_factor=2, msb_bits=2)
    with pytest.raises(ValueError, match="part_overrides"):
        tiny(4, 1, 2, subscale_factor=2, part_overrides={"second": {}})
    with pytest.raises(ValueError, match="msb"):
        tiny(4, 1, 2, subscale_factor=2, msb_bits=None).sample(
            1, 0, given={"msb": np.zeros([1, 4, 4, 1], np.int32)})


def test_keras_round_trip(tmp_path):
    model = tiny(4, 3, 3, subscale_factor=2, msb_bits=1, cond={"label": 3},
                 train_part="size", attention_layers=(0,),
                 part_overrides={"first": {"filters": 3}})
    images = tf.constant(np.random.default_rng(0).integers(0, 8, (2, 4, 4, 3)), tf.int32)
    cond = {"label": tf.constant([0, 2])}
    expected = model.log_prob(images, cond)
    path = str(tmp_path / "upscaling.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    assert isinstance(restored, MultidimensionalUpscaling)
    assert restored.get_config() == model.get_config()
    assert restored.networks["first"].filters == 3
    np.testing.assert_allclose(restored.log_prob(images, cond), expected, rtol=1e-6)


@pytest.mark.parametrize("part", ["first", "size", "depth"])
def test_fit_trains_one_network_by_name(part):
    ds = data.load("embedded", image_size=8, bits=3, batch_size=8, with_labels=True,
                   repeat=True)
    model = tiny(8, 3, 3, subscale_factor=2, msb_bits=1, train_part=part,
                 cond={"label": data.num_classes("embedded")})
    model.build()
    # Only that network trains: its attention projections too, no other network's.
    trained = {id(w) for w in model.networks[part].weights if w.dtype == "float32"}
    assert {id(w) for w in model.trainable_weights} == trained
    before = {p: [w.numpy().copy() for w in net.weights if w.dtype == "float32"]
              for p, net in model.networks.items()}
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    history = model.fit(ds, steps_per_epoch=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    for p, net in model.networks.items():
        after = [w.numpy() for w in net.weights if w.dtype == "float32"]
        changed = any(not np.array_equal(a, b) for a, b in zip(before[p], after))
        assert changed == (p == part), (p, changed)
