"""MultiscalePixelCNN: what only multiscale shows (4x4 spaces with groups normalized, the group
order, O(log N) sequential calls counted, super-resolution, conditioning that reaches every
group). The claims every kind makes are `tests/harness.py`'s (tests/test_harness.py)."""

import functools
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from spn_tf import data
import helpers as testing
from spn_tf.layers import GroupPredictor, MaskedDecoder
from spn_tf.models import build
from helpers import group_steps, multiscale_order


def tiny(image_size, channels, bits, base_size, cond=None, **overrides):
    return build("multiscale", image_size, channels=channels, bits=bits, preset="tiny",
                 cond=cond, base_size=base_size, **overrides)


def randomize(model, scale=1.0, seed=0):
    """Large random weights: a peaked, far-from-uniform distribution (tests with power)."""
    model.build()
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(scale=scale, size=w.shape).astype(np.float32)
                       for w in model.get_weights()])
    return model


def expected_calls(image_size, channels, base_size, patch=0):
    """The docstring's count: base_size**2 * C base calls; per scale and group C head calls
    (type A) or P*P*C patch PixelCNN calls (type B, `P = min(patch, r)`)."""
    sides = [base_size * 2 ** s for s in range(int(math.log2(image_size // base_size)))]
    return base_size ** 2 * channels + 3 * channels * sum(group_steps(r, patch)[1]
                                                          for r in sides)


class TestNormalization:
    def test_all_4x4_binary_images_with_2x2_base(self):
        model = randomize(tiny(4, 1, 1, base_size=2))
        testing.assert_normalized(model)

    @pytest.mark.parametrize("image_size,channels,base_size", [(4, 1, 2), (2, 3, 1)])
    def test_type_b_patch_pixelcnn(self, image_size, channels, base_size):
        model = randomize(tiny(image_size, channels, 1, base_size, group_pixelcnn_patch=2))
        testing.assert_normalized(model)

    def test_log_prob_is_sum_of_base_and_group_terms(self):
        model = randomize(tiny(4, 1, 2, base_size=2), scale=0.5)
        images = tf.constant(np.random.default_rng(0).integers(0, 4, (3, 4, 4, 1)), tf.int32)
        full = model.log_prob(images).numpy()
        given_base = model.log_prob(images, {"low_res": images[:, ::2, ::2]}).numpy()
        base_only = tiny(2, 1, 2, base_size=2)
        base_only.build()
        base_only.base_decoder.set_weights(model.base_decoder.get_weights())
        np.testing.assert_allclose(full, given_base + base_only.log_prob(images[:, ::2, ::2]),
                                   rtol=1e-5)


class TestCausality:
    # 8x8 from a 2x2 base: two doublings (the harness's cases have one).
    @pytest.mark.parametrize("image_size,channels,base_size", [(8, 1, 2)])
    def test_groups_see_only_earlier_steps(self, image_size, channels, base_size):
        cond = {"label": 3, "embedding": 2}
        # Enough units that no sub-pixel's ReLUs are all inactive at the probe point.
        model = tiny(image_size, channels, 1, base_size, cond=cond, filters=24, base_filters=24)
        cond_row = {"label": tf.constant([1]), "embedding": tf.constant([[0.3, -1.0]])}
        testing.assert_causal(
            lambda x: model.logits_as_image(model.call(x, cond_row, False)),
            multiscale_order(image_size, channels, base_size))

    @pytest.mark.parametrize("image_size,channels,base_size,patch",
                             [(8, 1, 2, 2)])  # four patches per group at the last scale
    def test_type_b_patches_in_raster_order(self, image_size, channels, base_size, patch):
        cond = {"label": 3}
        model = tiny(image_size, channels, 1, base_size, cond=cond, filters=24, base_filters=24,
                     group_pixelcnn_patch=patch, group_pixelcnn_filters=24)
        testing.assert_causal(
            lambda x: model.logits_as_image(model.call(x, {"label": tf.constant([1])},
                                                           False)),
            multiscale_order(image_size, channels, base_size, patch))

    def test_conditioning_reaches_every_group(self):
        model = tiny(4, 3, 1, base_size=1, cond={"embedding": 2}, filters=24, base_filters=24)
        images = tf.constant(np.random.default_rng(0).integers(0, 2, (1, 4, 4, 3)), tf.int32)
        embedding = tf.constant([[0.3, -1.0]])
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(embedding)
            logits = model.logits_as_image(model(images, {"embedding": embedding}))
            per_subpixel = tf.reshape(tf.reduce_sum(logits, axis=-1), [-1])
        grads = tape.jacobian(per_subpixel, embedding, experimental_use_pfor=False)
        assert np.all(np.abs(grads.numpy()).sum(axis=(1, 2)) > 0)

    def test_order_counts_log_n_steps(self):
        order = multiscale_order(16, 3, 4)
        assert len(np.unique(order)) == expected_calls(16, 3, 4) == 4 * 4 * 3 + 3 * 3 * 2
        order = multiscale_order(16, 3, 4, patch=4)
        assert len(np.unique(order)) == expected_calls(16, 3, 4, 4) == 48 + 2 * 3 * 16 * 3
        # Patches smaller than M where the group is: 2x2 base, M = 4: 1 + 4 + 16 + 16 steps.
        assert expected_calls(32, 1, 1, 4) == 1 + 3 * (1 + 4 + 16 + 16 + 16)
        # The 512x512 config's geometry (base 8, type A): 8*8*3 base calls, then 3 groups x 3
        # channels per doubling (6 doublings).
        assert expected_calls(512, 3, 8) == 8 * 8 * 3 + 3 * 3 * 6 == 246


class TestSampling:
    @pytest.mark.parametrize("patch", [0, 4])
    # Counted at 8 and 64 (one and four doublings); the 512x512 geometry is the same formula
    # (test_order_counts_log_n_steps), not a 512x512 draw.
    @pytest.mark.parametrize("image_size", [8, 64])
    def test_sequential_network_calls(self, image_size, patch, monkeypatch):
        # Variables, not Python ints: the count stays right if a sampler traces the network.
        counters = {key: tf.Variable(0) for key in ("base", "features", "head", "patch")}

        def counts():
            return {key: int(counter.numpy()) for key, counter in counters.items()}

        def counting(key, method):
            @functools.wraps(method)  # Keras reads the call signature to build layers
            def wrapped(layer, *args, **kwargs):
                # A MaskedDecoder is the base, or (type B) a group's patch PixelCNN.
                name = "patch" if layer.name == "patch_pixelcnn" else key
                counters[name].assign_add(1)
                return method(layer, *args, **kwargs)
            return wrapped

        monkeypatch.setattr(MaskedDecoder, "call", counting("base", MaskedDecoder.call))
        monkeypatch.setattr(GroupPredictor, "features",
                            counting("features", GroupPredictor.features))
        monkeypatch.setattr(GroupPredictor, "head", counting("head", GroupPredictor.head))
        model = tiny(image_size, 3, 2, base_size=4, group_pixelcnn_patch=patch)
        model.build()
        for counter in counters.values():
            counter.assign(0)
        images = model.sample(1, seed=0, mode="reference")  # the reference: one call per step
        assert images.shape == (1, image_size, image_size, 3)
        scales = int(math.log2(image_size // 4))
        # Per group: C head calls (type A) or, type B, 4 * 4 * C patch PixelCNN calls.
        per_group = {"head": 0 if patch else 3, "patch": 48 if patch else 0}
        assert counts() == {"base": 48, "features": 3 * scales,
                            **{k: 3 * v * scales for k, v in per_group.items()}}
        assert (counts()["base"] + counts()["head"] + counts()["patch"]
                == expected_calls(image_size, 3, 4, patch))
        # Super-resolution from N/2 runs only the last scale.
        for counter in counters.values():
            counter.assign(0)
        model.sample(1, seed=1, cond={"low_res": images[:, ::2, ::2]}, mode="reference")
        assert counts() == {"base": 0, "features": 3, **{k: 3 * v for k, v in per_group.items()}}

    def test_super_resolution_samples_follow_conditional(self):
        model = randomize(tiny(2, 1, 2, base_size=1), scale=0.5, seed=5)
        low_res = np.full((20000, 1, 1, 1), 2, np.int32)
        samples = model.super_resolve(low_res, seed=[1, 7]).numpy()
        assert np.all(samples[:, 0, 0, 0] == 2)
        testing.assert_samples_follow(model, samples, {"low_res": low_res[:1]})

    def test_same_seed_same_images_and_temperature_zero(self):
        model = randomize(tiny(8, 3, 3, base_size=2), scale=0.5)
        a = model.sample(2, seed=[3, 4])
        np.testing.assert_array_equal(a, model.sample(2, seed=[3, 4]))
        greedy = model.sample(2, seed=[3, 4], temperature=0.0).numpy()
        np.testing.assert_array_equal(greedy[0], greedy[1])
        assert a.dtype == tf.int32 and a.numpy().max() < 8

    def test_super_resolution_keeps_low_res(self):
        model = tiny(16, 3, 3, base_size=4)
        low_res = np.random.default_rng(0).integers(0, 8, (2, 8, 8, 3)).astype(np.int32)
        images = model.super_resolve(low_res, seed=0).numpy()
        np.testing.assert_array_equal(images[:, ::2, ::2], low_res)


class TestConditioning:
    def test_label_and_embedding_are_normalized_and_matter(self):
        model = randomize(tiny(2, 3, 1, base_size=1, cond={"label": 4, "embedding": 2}))
        rows = [{"label": np.array([k]), "embedding": np.array([[0.5 * k, -1.0]], np.float32)}
                for k in (0, 3)]
        for row in rows:
            testing.assert_normalized(model, row)
        images = testing.all_images(2, 2, 3, 1)[:64]
        lp = [testing.batched_log_prob(model, images, {k: np.repeat(v, 64, 0)
                                                        for k, v in row.items()})
              for row in rows]
        assert np.abs(lp[0] - lp[1]).max() > 1e-3

    def test_super_resolution_log_prob_is_normalized(self):
        model = randomize(tiny(4, 1, 1, base_size=1))
        low_res = np.array([[[[1], [0]], [[0], [1]]]], np.int32)  # 2x2
        total = testing.assert_normalized(model, {"low_res": low_res})
        assert total == pytest.approx(1.0, abs=1e-4)

    def test_condition_on_base_super_resolver(self):
        model = randomize(tiny(4, 1, 1, base_size=2, condition_on_base=True))
        assert model.base_decoder is None
        low_res = np.array([[[[1], [0]], [[1], [1]]]], np.int32)
        images = testing.all_images(4, 4, 1, 1)
        match = np.all(images[:, ::2, ::2] == low_res, axis=(1, 2, 3))
        p = np.exp(testing.batched_log_prob(model, images).astype(np.float64))
        assert p[match].sum() == pytest.approx(1.0, abs=1e-4)  # p(x | x_base) over completions
        with pytest.raises(ValueError, match="condition_on_base"):
            model.sample(1, seed=0)
        sharp = model.super_resolve(low_res, seed=0).numpy()
        np.testing.assert_array_equal(sharp[:, ::2, ::2], low_res)

    @pytest.mark.parametrize("bad", [np.zeros((1, 3, 3, 1), np.int32),
                                     np.zeros((1, 8, 8, 1), np.int32),
                                     np.zeros((1, 2, 2, 3), np.int32)])
    def test_bad_low_res_is_a_value_error(self, bad):
        model = tiny(8, 1, 1, base_size=2)
        with pytest.raises(ValueError, match="low_res"):
            model.super_resolve(bad, seed=0)

    def test_bad_geometry_and_given(self):
        with pytest.raises(ValueError, match="power of 2"):
            tiny(12, 1, 1, base_size=8)
        for patch in (-1, 3):
            with pytest.raises(ValueError, match="group_pixelcnn_patch"):
                tiny(16, 1, 1, base_size=4, group_pixelcnn_patch=patch)
        with pytest.raises(ValueError, match="given"):
            tiny(4, 1, 1, base_size=2).sample(1, seed=0, given=np.zeros((1, 4, 4, 1)))


class TestKeras:
    def test_group_predictor_layer(self):
        known = np.random.default_rng(0).normal(size=(2, 4, 4, 6)).astype(np.float32)
        pixels = np.random.default_rng(1).normal(size=(2, 4, 4, 3)).astype(np.float32)
        testing.run_layer_test(
            GroupPredictor, dict(filters=6, num_blocks=1, num_outputs=4, data_channels=3,
                                 num_scales=2),
            known, (2, 4, 4, 3, 4), call_kwargs={"pixels": pixels, "scale": 1})

    def test_type_b_group_predictor_layer(self):
        known = np.random.default_rng(0).normal(size=(2, 4, 4, 6)).astype(np.float32)
        pixels = np.random.default_rng(1).normal(size=(2, 4, 4, 3)).astype(np.float32)
        testing.run_layer_test(
            GroupPredictor, dict(filters=6, num_blocks=1, num_outputs=4, data_channels=3,
                                 num_scales=2, patch_size=2, patch_layers=1, patch_filters=6),
            known, (2, 4, 4, 3, 4), call_kwargs={"pixels": pixels, "scale": 1})

    def test_fit_on_embedded_data(self):
        ds = data.load("embedded", image_size=8, bits=3, batch_size=8, with_labels=True,
                       repeat=True)
        model = tiny(8, 3, 3, base_size=2, cond={"label": data.num_classes("embedded")},
                     filters=12, base_filters=12)
        model.compile(optimizer=keras.optimizers.Adam(1e-2))
        before = float(np.mean(model.bits_per_dim(*next(
            (b["images"], {"label": b["label"]}) for b in ds.take(1)))))
        history = model.fit(ds, steps_per_epoch=25, epochs=2, verbose=0)
        losses = history.history["loss"]
        assert np.all(np.isfinite(losses)) and losses[-1] < before - 0.1


def test_one_channel_fit_gives_no_missing_gradient_warning(tmp_path):
    """A 1x1 type-A kernel over one data channel has an all-zero mask: its kernel is kept
    (saved and loaded) but not trained, so Keras's fit warns of no missing gradient."""
    import warnings
    model = build("multiscale", 8, channels=1, bits=3, preset="tiny")
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    images = np.random.default_rng(0).integers(0, 8, (4, 8, 8, 1)).astype(np.int32)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(images, batch_size=4, epochs=1, verbose=0)
    assert not [str(w.message) for w in caught if "Gradients do not exist" in str(w.message)]
    frozen = [w for w in model.weights if not w.trainable]
    assert frozen and all(w.path.endswith("kernel") for w in frozen)
    model.save(str(tmp_path / "model.keras"))
    loaded = keras.saving.load_model(str(tmp_path / "model.keras"))
    np.testing.assert_array_equal(loaded.log_prob(images), model.log_prob(images))
