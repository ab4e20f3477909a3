"""Samplers: compiled == reference on test models, cached == naive, trace counts, bad arguments."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from spn_tf import distributions, models, sampling
from spn_tf.layers import MaskedDecoder
from helpers import assert_samples_follow


def _raster(size=4, channels=3, bits=3, cond=None, **overrides):
    """A tiny raster model with weights scaled up, so that its logits are far from uniform."""
    model = models.build("raster", size, channels=channels, bits=bits, preset="tiny", cond=cond,
                         **overrides)
    model.build()
    rng = np.random.default_rng(0)
    model.set_weights([w + 0.3 * rng.normal(size=w.shape).astype(np.float32)
                       for w in model.get_weights()])
    return model


REFERENCE = sampling.Draws(sampling.Mode.REFERENCE, sampling.Loops())


def _network(decoder, scale):
    """The reference sampler's graph function of a bare decoder."""
    return REFERENCE.loops.reference(decoder, scale)


def _naive(decoder, scale, *args, head):
    return sampling.raster_sample(_network(decoder, scale), *args, head=head, draws=REFERENCE)


def _cached(decoder, scale, head, mode):
    """`cached_raster_sample` over a bare decoder as the traced function of `mode`."""
    loops = sampling.Loops()
    fn = lambda draws, *args: sampling.cached_raster_sample(decoder, scale, *args, head=head,
                                                            draws=draws)
    return loops.traced("cached", sampling.Draws(sampling.Mode.of(mode), loops), fn,
                        decoder.variables)


def _traces(model, name, mode="xla"):
    """How often `model`'s traced sampler `name` of `mode` was traced."""
    function = model._loops._functions[name, sampling.Mode.of(mode)]
    return function.experimental_get_tracing_count()


def _reference_traces(model):
    """The trace counts of `model`'s reference networks, in the order they were made."""
    return [f.experimental_get_tracing_count() for key, f in model._loops._functions.items()
            if key[0] == "reference"]


def _noise(shape, seed=0):
    return sampling.draw_uniform(tf.constant([0, seed], tf.int32), shape)


@pytest.mark.parametrize("overrides", [
    {},
    {"filters": 12, "num_layers": 3, "first_kernel_size": 5},  # reach 5 > 3 rows of a 4x4
    {"attention_layers": (0,)},  # attention: one query per pixel over cached keys, values
])
def test_compiled_equals_reference_for_seeds_temperatures_and_given(overrides):
    model = _raster(6, 3, 3, {"label": 3}, **overrides)
    cond = {"label": [0, 2]}
    given = np.random.default_rng(1).integers(0, 8, (2, 6, 6, 3)).astype(np.int32)
    mask = np.zeros_like(given, bool)
    mask[:, :3] = True
    for seed in (0, [5, 9]):
        for temperature in (1.0, 0.5, 0.0):
            for known in (None, {"images": given, "mask": mask}):
                reference = model.sample(2, seed, temperature, cond, known, mode="reference")
                compiled = model.sample(2, seed, temperature, cond, known)
                np.testing.assert_array_equal(compiled, reference)
                if known is not None:
                    np.testing.assert_array_equal(compiled.numpy()[mask], given[mask])
    # 18 calls, one batch size: one trace.
    assert _traces(model, "raster") == 1


@pytest.mark.parametrize("head", [distributions.Categorical(8),
                                  distributions.DiscretizedLogisticMixture(8, 2)])
def test_cached_loop_equals_naive_with_spatial_context_and_wide_images(head):
    """A context aligned with the pixels (the SPN's slice embedding) is cut with the windows;
    with either likelihood head."""
    decoder = MaskedDecoder(6, 2, head.num_params, 1, kernel_size=3, first_kernel_size=3)
    shape = (2, 9, 7, 1)
    context = tf.random.stateless_normal((2, 9, 7, 5), seed=[1, 2])
    decoder.build(shape, context.shape)
    scale = lambda x: tf.cast(x, tf.float32) / 3.5 - 1.0
    zeros, unknown = tf.zeros(shape, tf.int32), tf.zeros(shape, tf.bool)
    uniform, temperature = _noise(shape), tf.fill([2], 1.0)
    naive = _naive(decoder, scale, zeros, unknown, uniform, temperature, context, head=head)
    for mode in ("xla", "graph"):
        cached = _cached(decoder, scale, head, mode)(zeros, unknown, uniform, temperature,
                                                     context)
        np.testing.assert_array_equal(cached, naive)
    eager_cached = sampling.cached_raster_sample(decoder, scale, zeros, unknown, uniform,
                                                 temperature, context, head=head,
                                                 draws=REFERENCE)
    np.testing.assert_array_equal(eager_cached, naive)
    assert len(np.unique(naive)) > 3  # the test has power: not a constant image


@pytest.mark.parametrize("shape,attention_layers,context_shape", [
    ((2, 5, 4, 3), (0,), "spatial"),  # attention after the first block, a slice embedding
    ((2, 6, 7, 1), (1, 2), "global"),  # two attention layers, a class embedding
    ((3, 4, 9, 3), (2,), None),  # after the last block; wider than the window
])
def test_cached_loop_with_attention_equals_naive(shape, attention_layers, context_shape):
    """Attention outputs from cached keys and values: the same images, eager and compiled."""
    decoder = MaskedDecoder(6, 3, 8, shape[3], kernel_size=3, first_kernel_size=3,
                            attention_layers=attention_layers, num_heads=2, key_dim=4)
    batch, height, width, _ = shape
    context = {"spatial": tf.random.stateless_normal((batch, height, width, 5), seed=[1, 2]),
               "global": tf.random.stateless_normal((batch, 1, 1, 5), seed=[1, 2]),
               None: None}[context_shape]
    decoder.build(shape, None if context is None else context.shape)
    rng = np.random.default_rng(0)
    decoder.set_weights([w + 0.5 * rng.normal(size=w.shape).astype(np.float32)
                         for w in decoder.get_weights()])
    scale = lambda x: tf.cast(x, tf.float32) / 3.5 - 1.0
    given = tf.constant(rng.integers(0, 8, shape), tf.int32)
    head = distributions.Categorical(8)
    compiled, graph = _cached(decoder, scale, head, "xla"), _cached(decoder, scale, head, "graph")
    for seed, temperature, known in ((0, 1.0, np.zeros(shape, bool)),
                                     (1, 0.0, np.zeros(shape, bool)),
                                     (2, 0.7, rng.random(shape) < 0.3)):
        uniform, known = _noise(shape, seed), tf.constant(known)
        temperatures = tf.fill([batch], temperature)
        naive = _naive(decoder, scale, given, known, uniform, temperatures, context, head=head)
        eager = sampling.cached_raster_sample(decoder, scale, given, known, uniform,
                                              temperatures, context, head=head,
                                              draws=REFERENCE)
        for loop in (compiled, graph):
            np.testing.assert_array_equal(loop(given, known, uniform, temperatures, context),
                                          naive)
        np.testing.assert_array_equal(eager, naive)
        assert len(np.unique(naive)) > 3  # the test has power: not a constant image
    assert compiled.experimental_get_tracing_count() == 1


def test_attention_step_equals_call_at_every_pixel():
    """`CausalSelfAttention.step`, pixel by pixel, gives `call`'s outputs."""
    decoder = MaskedDecoder(6, 1, 4, 3, attention_layers=(0,), num_heads=2, key_dim=4)
    decoder.build((2, 3, 4, 3))
    layer = decoder.attentions[0]
    inputs = tf.random.stateless_normal((2, 3, 4, 6), seed=[3, 4])
    full = layer(inputs).numpy().reshape(2, 12, 6)
    flat = tf.reshape(inputs, (2, 12, 6))
    cache, previous = layer.initial_cache(2, 12), tf.zeros((2, 6))
    for p in range(12):
        out, cache = layer.step(previous, tf.constant(p), cache)
        np.testing.assert_allclose(out, full[:, p], rtol=1e-5, atol=1e-6)
        previous = flat[:, p]


def test_trace_once_per_batch_size_and_temperature_is_an_input():
    model = _raster(4, 1, 2)
    first = model.sample(3, 0, 1.0)
    second = model.sample(3, 1, 0.7)
    assert _traces(model, "raster") == 1
    assert not np.array_equal(first, second)
    model.sample(5, 0)
    assert _traces(model, "raster") == 2


def test_reference_networks_trace_once_per_shape():
    """The reference samplers reuse one graph function per network: no retrace per call, per
    slice or per group (a trace costs several warm calls)."""
    raster = _raster(4, 1, 2)
    spn = models.build("spn", 4, channels=1, bits=2, preset="tiny")  # S = 2: four slices
    type_b = models.build("multiscale", 8, channels=1, bits=2, preset="tiny", base_size=2,
                          group_pixelcnn_patch=2)
    for model in (raster, spn, type_b):
        model.build()
        for seed in range(3):
            model.sample(2, seed, mode="reference")
    assert _reference_traces(raster) == [1]
    assert _reference_traces(spn) == [1]
    # The base network, then the groups 2x2 then 4x4 in 2x2 patches: 2 and 8 patches per
    # call, one trace each.
    assert _reference_traces(type_b) == [1, 2, 2, 2]
    raster.sample(3, 0, mode="reference")
    assert _reference_traces(raster) == [2]


def test_compiled_samples_follow_log_prob():
    model = models.build("raster", 2, channels=1, bits=2, preset="tiny")
    rng = np.random.default_rng(0)
    images = ((rng.random((64, 2, 2, 1)) < 0.2) * 3).astype(np.int32)
    model.compile(optimizer=keras.optimizers.Adam(0.05))
    model.fit(tf.data.Dataset.from_tensor_slices(images).batch(16).repeat(), steps_per_epoch=30,
              epochs=1, verbose=0)
    assert_samples_follow(model, model.sample(3000, seed=[3, 1]).numpy())


def test_same_seed_same_images_across_calls_and_save_load(tmp_path):
    model = _raster(4, 3, 3, {"label": 2})
    cond = {"label": [1, 0, 1]}
    a, b = model.sample(3, [2, 2], cond=cond), model.sample(3, [2, 2], cond=cond)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, model.sample(3, [2, 3], cond=cond))
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(loaded.sample(3, [2, 2], cond=cond), a)
    np.testing.assert_array_equal(loaded.sample(3, [2, 2], cond=cond, mode="reference"), a)


@pytest.mark.parametrize("kwargs,message", [
    (dict(batch_size=0, seed=0), "batch_size"),
    (dict(batch_size=-2, seed=0), "batch_size"),
    (dict(batch_size=2, seed=[1.0, 2.0]), "seed"),
    (dict(batch_size=2, seed=[1, 2, 3]), "seed"),
    (dict(batch_size=2, seed=0, temperature=float("nan")), "temperature"),
    (dict(batch_size=2, seed=0, given={"images": np.zeros((2, 4, 4, 3), np.int32),
                                       "mask": np.ones((2, 4, 4, 3), bool)}), "given"),
    (dict(batch_size=2, seed=0, given={"images": np.full((2, 4, 4, 1), 9, np.int32),
                                       "mask": np.ones((2, 4, 4, 1), bool)}), r"\[0, 8\)"),
    (dict(batch_size=2, seed=0, given={"images": np.zeros((3, 4, 4, 1), np.int32),
                                       "mask": np.ones((3, 4, 4, 1), bool)}), "given"),
    (dict(batch_size=2, seed=0, given={"images": np.zeros((2, 4, 4, 1), np.int32)}), "given"),
])
@pytest.mark.parametrize("mode", ["xla", "reference"])
def test_bad_arguments_raise_clear_errors(kwargs, message, mode):
    model = _raster(4, 1, 3)
    with pytest.raises(ValueError, match=message):
        model.sample(**kwargs, mode=mode)


def _spn(**overrides):
    model = models.build("spn", 4, channels=3, bits=3, preset="tiny", cond={"label": 3},
                         **overrides)
    model.build()
    rng = np.random.default_rng(0)
    model.set_weights([w + 0.3 * rng.normal(size=w.shape).astype(np.float32)
                       for w in model.get_weights()])
    return model


@pytest.mark.parametrize("overrides", [
    {}, {"attention_layers": (0,)},
    {"num_layers": 2, "attention_layers": (1,)}])
def test_spn_compiled_equals_reference_with_upscaling_and_completion(overrides):
    model = _spn(**overrides)
    cond = {"label": [1, 2]}
    rng = np.random.default_rng(3)
    images = rng.integers(0, 8, (2, 4, 4, 3)).astype(np.int32)
    for seed in (0, [7, 1]):
        for temperature in (1.0, 0.0):
            for given in (None, {"first_slice": images[:, :2, :2]},
                          {"images": images, "num_slices": 2}):
                reference = model.sample(2, seed, temperature, cond, given, mode="reference")
                compiled = model.sample(2, seed, temperature, cond, given)
                np.testing.assert_array_equal(compiled, reference)
    np.testing.assert_array_equal(compiled.numpy()[:, 0, :], images[:, 0, :])  # slices 0, 1
    # 12 calls of up to 4 slices each: one trace serves every slice.
    assert _traces(model, "slice") == 1


def test_multiscale_compiled_equals_reference_with_super_resolution():
    model = models.build("multiscale", 8, channels=3, bits=3, preset="tiny", base_size=2,
                         cond={"label": 3})
    model.build()
    rng = np.random.default_rng(0)
    model.set_weights([w + 0.3 * rng.normal(size=w.shape).astype(np.float32)
                       for w in model.get_weights()])
    low_res = rng.integers(0, 8, (2, 4, 4, 3)).astype(np.int32)
    for seed in (0, [3, 4]):
        for temperature in (1.0, 0.0):
            for extra in ({}, {"low_res": low_res}):
                cond = {"label": [0, 2], **extra}
                reference = model.sample(2, seed, temperature, cond, mode="reference")
                compiled = model.sample(2, seed, temperature, cond)
                np.testing.assert_array_equal(compiled, reference)
    np.testing.assert_array_equal(compiled.numpy()[:, ::2, ::2], low_res)
    # Two starting resolutions (base, 4x4): two traces for 8 calls.
    assert _traces(model, "scales") == 2


def test_progress_reports_each_host_side_step_and_changes_no_image():
    spn = models.build("spn", 4, channels=1, bits=2, preset="tiny")
    calls = []
    drawn = spn.sample(2, 3, progress=lambda *step: calls.append(step)).numpy()
    assert calls == [(f"{spn.name} slices", k, 4) for k in range(1, 5)]
    np.testing.assert_array_equal(drawn, spn.sample(2, 3).numpy())
    upscaling = models.build("upscaling", 4, channels=1, bits=2, preset="tiny", msb_bits=1)
    calls.clear()
    upscaling.sample(1, 0, progress=lambda *step: calls.append(step))
    assert [stage for stage, done, total in calls if done == total] == [
        f"{net.name} slices" for net in upscaling.networks.values()]
    video = models.build("multiscale_video", 4, channels=1, bits=1, preset="tiny",
                         cond={"action": 2}, num_frames=3, base_size=2)
    calls.clear()
    video.sample_video(np.zeros((1, 4, 4, 1), np.int32), np.zeros((1, 2, 2), np.float32), 0,
                       progress=lambda *step: calls.append(step))
    assert calls == [("frames", 1, 2), ("frames", 2, 2)]
    calls.clear()  # one compiled call: nothing to report before it returns
    models.build("raster", 4, channels=1, bits=1, preset="tiny").sample(
        1, 0, progress=lambda *step: calls.append(step))
    assert calls == []


def test_concurrent_samplers_in_other_modes_give_their_own_results():
    """Nothing shared selects an algorithm: threads sampling one model at once in different
    modes, each with its own progress callback, get what each gets alone."""
    import threading
    model = _spn()
    cond = {"label": [0, 2]}
    checked = model.check_cond(cond, 2)  # what `run_sampler` takes: tensors
    runs = {mode: dict(batch_size=2, seed=[4, k], cond=cond, mode=mode)
            for k, mode in enumerate(("reference", "xla"))}
    alone = {mode: model.sample(**kwargs).numpy() for mode, kwargs in runs.items()}
    graph_alone = model.run_sampler([4, 9], np.ones(2, np.float32), checked).numpy()
    results, reports, errors = {}, {mode: [] for mode in runs}, []

    def work(mode):
        try:
            for _ in range(3):
                results.setdefault(mode, []).append(model.sample(
                    **runs[mode], progress=lambda *step: reports[mode].append(step)).numpy())
            if mode == "xla":
                results["graph"] = model.run_sampler([4, 9], np.ones(2, np.float32),
                                                     checked).numpy()
        except Exception as error:  # surfaced below, not lost in the thread
            errors.append(error)

    threads = [threading.Thread(target=work, args=(mode,)) for mode in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    for mode in runs:
        for images in results[mode]:
            np.testing.assert_array_equal(images, alone[mode])
        assert reports[mode] == [(f"{model.name} slices", k, 4) for k in range(1, 5)] * 3
    np.testing.assert_array_equal(results["graph"], graph_alone)
    assert not np.array_equal(alone["reference"], alone["xla"])  # the seeds differ: power


def test_an_unknown_mode_is_refused():
    model = _raster(4, 1, 3)
    with pytest.raises(ValueError, match="mode must be one of"):
        model.sample(2, 0, mode="compiled")
    with pytest.raises(ValueError, match="coding"):
        model.sample(2, 0, mode="coding")
