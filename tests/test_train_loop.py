"""The training loop's parts on one device: the step, schedules, EMA, clipping, precision."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from spn_tf import models
from spn_tf.run_folder import TrainConfig
from spn_tf.trainer import build_model, make_optimizer
from spn_tf.training.averaging import averaged_weights
from spn_tf.training.evaluation import mean_bits_per_dim
from spn_tf.training.schedules import WarmupThenDecay
from spn_tf.training.step import TrainStep

IMAGES = np.random.default_rng(0).integers(0, 4, (32, 4, 4, 3)).astype(np.int32)


def _setup(config, model_name="raster"):
    keras.utils.set_random_seed(0)
    config = TrainConfig(**{"model": model_name, "preset": "tiny", "image_size": 4, "bits": 2,
                            "steps": 8, "learning_rate": 1e-2, **config})
    model = build_model(config)
    optimizer = make_optimizer(config)
    optimizer.build(model.trainable_variables)
    return model, optimizer


def _iterator(batch=8):
    strategy = tf.distribute.get_strategy()
    ds = tf.data.Dataset.from_tensor_slices({"images": IMAGES}).batch(batch).repeat()
    return iter(strategy.experimental_distribute_dataset(ds))


def _train(config=(), steps=4, xla=False, model_name="raster"):
    model, optimizer = _setup(dict(config), model_name)
    step = TrainStep(model, optimizer, tf.distribute.get_strategy(), xla=xla,
                     clip_grad_norm=dict(config).get("clip_grad_norm"))
    iterator = _iterator()
    history = [[float(v) for v in step(iterator)] for _ in range(steps)]
    return model, optimizer, step, np.array(history)


def test_step_is_traced_once_and_equals_keras_fit():
    model, optimizer, step, history = _train(steps=5)
    assert step.traces == 1
    assert int(optimizer.iterations.numpy()) == 5
    reference, reference_optimizer = _setup({})
    reference.compile(optimizer=reference_optimizer)
    ds = tf.data.Dataset.from_tensor_slices({"images": IMAGES}).batch(8).repeat()
    fit_losses = reference.fit(ds, steps_per_epoch=1, epochs=5, verbose=0).history["loss"]
    np.testing.assert_allclose(history[:, 0], fit_losses, rtol=1e-5)
    for a, b in zip(model.get_weights(), reference.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_a_step_of_one_upscaling_network_changes_that_network_alone():
    """`train_part` (the CLI's `--upscaling_part`): the step trains the size network; the
    others keep every weight, attention projections included (the step crashed on those)."""
    model, optimizer = _setup({"hparams": {"msb_bits": 1, "train_part": "size"}},
                              "upscaling")
    before = {part: [w.numpy() for w in net.weights if w.dtype == "float32"]
              for part, net in model.networks.items()}
    step = TrainStep(model, optimizer, tf.distribute.get_strategy())
    iterator = _iterator()
    for _ in range(2):
        step(iterator)
    for part, net in model.networks.items():
        weights = [w for w in net.weights if w.dtype == "float32"]
        assert any("attention" in w.path for w in weights)
        same = [np.array_equal(w.numpy(), b) for w, b in zip(weights, before[part])]
        assert all(same) if part != "size" else not all(same), part


def test_xla_compiled_step_matches_and_traces_once():
    _, _, _, plain = _train()
    _, _, step, compiled = _train(xla=True)
    assert step.traces == 1
    np.testing.assert_allclose(compiled, plain, rtol=1e-4)


def test_clip_grad_norm_reports_the_unclipped_norm_and_changes_the_step():
    _, _, _, clipped = _train({"clip_grad_norm": 1e-3, "optimizer": "rmsprop"}, steps=3)
    _, _, _, free = _train({"optimizer": "rmsprop"}, steps=3)
    assert clipped[0, 1] == pytest.approx(free[0, 1], rel=1e-5)  # same first gradient
    assert not np.allclose(clipped[1:, 0], free[1:, 0])


def test_warmup_then_decay_shapes():
    for decay, final in (("constant", 1.0), ("linear", 0.1), ("cosine", 0.1)):
        schedule = WarmupThenDecay(1.0, 10, warmup_steps=4, decay=decay, final_learning_rate=0.1)
        rates = [float(schedule(step)) for step in range(11)]
        np.testing.assert_allclose(rates[:4], [0.25, 0.5, 0.75, 1.0])
        assert rates[4] == pytest.approx(1.0)
        assert rates[10] == pytest.approx(final)
        assert all(a >= b - 1e-7 for a, b in zip(rates[4:], rates[5:]))
    assert float(WarmupThenDecay(1.0, 10, decay="cosine")(5)) == pytest.approx(0.5)
    restored = WarmupThenDecay.from_config(schedule.get_config())
    assert float(restored(7)) == pytest.approx(float(schedule(7)))
    with pytest.raises(ValueError, match="decay must be one of"):
        WarmupThenDecay(1.0, 10, decay="step")
    with pytest.raises(ValueError, match="warmup_steps"):
        WarmupThenDecay(1.0, 10, warmup_steps=11)


def test_cosine_schedule_is_keras_cosine_decay_after_warmup_and_skips_no_step():
    ours = WarmupThenDecay(1.0, 10, warmup_steps=4, decay="cosine", final_learning_rate=0.1)
    theirs = keras.optimizers.schedules.CosineDecay(0.0, 6, alpha=0.1, warmup_target=1.0,
                                                    warmup_steps=4)
    for step in range(4, 11):
        assert float(ours(step)) == pytest.approx(float(theirs(step)), abs=1e-6)
    # Why ours stays: Keras's warm-up starts at its initial rate, so step 0 would not move.
    assert float(theirs(0)) == 0.0 and float(ours(0)) == pytest.approx(0.25)


def test_ema_weights_are_used_inside_the_block_and_training_weights_come_back():
    model, optimizer, _, _ = _train({"ema_decay": 0.5}, steps=3)
    trained = model.get_weights()
    with averaged_weights(model, optimizer):
        averaged = model.get_weights()
        bits = float(np.mean(model.bits_per_dim(IMAGES).numpy()))
    assert any(not np.allclose(a, b) for a, b in zip(trained, averaged))
    for a, b in zip(model.get_weights(), trained):
        np.testing.assert_array_equal(a, b)
    # By hand: EMA starts at the first step's weights, then avg = 0.5 avg + 0.5 w.
    assert np.isfinite(bits)
    with pytest.raises(ValueError, match="ema_decay"):
        TrainConfig(ema_decay=1.0)


@pytest.mark.parametrize("model_name,overrides", [
    ("raster", {}), ("spn", {"subscale_factor": 2}),
    ("upscaling", {"subscale_factor": 2, "msb_bits": 1}), ("multiscale", {}),
    ("raster", {"head": "logistic_mixture"}),  # the mixture's arithmetic stays float32
])
def test_mixed_bfloat16_trains_without_nan_and_matches_float32(model_name, overrides):
    _, _, _, float32 = _train({"hparams": overrides}, steps=3, model_name=model_name)
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model, _, _, mixed = _train({"hparams": overrides}, steps=3, model_name=model_name)
        bits = model.bits_per_dim(IMAGES).numpy()
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert np.isfinite(mixed).all() and np.isfinite(bits).all()
    # bfloat16 keeps 8 mantissa bits: per-step bits/dim agree within 2%.
    np.testing.assert_allclose(mixed[:, 0], float32[:, 0], rtol=0.02)


def test_exact_spn_evaluation_by_chunks_equals_one_batch_and_bounds_the_slice_batch():
    keras.utils.set_random_seed(0)
    model = models.build("spn", 4, channels=3, bits=2, preset="tiny", subscale_factor=2,
                         cond={"label": 3})
    model.build()
    images = IMAGES[:5]
    cond = {"label": np.arange(5, dtype=np.int32) % 3}
    expected = model.log_prob(images, cond).numpy()
    built = []
    slice_logits = model._slice_logits

    def recording(slices, slice_index, context, visible):
        if tf.executing_eagerly():  # log_prob by chunks runs eagerly below
            built.append(int(tf.size(slice_index)))
        return slice_logits(slices, slice_index, context, visible)

    model._slice_logits = recording
    for chunk in (3, 7):  # 5 images x 4 slices = 20 slices, in uneven chunks
        built.clear()
        got = model.log_prob(tf.constant(images), cond, slices_per_call=chunk).numpy()
        np.testing.assert_allclose(got, expected, rtol=1e-5)
        assert max(built) <= chunk and sum(built) == 20
    ds = tf.data.Dataset.from_tensor_slices({"images": images, **cond}).batch(2)
    expected_bits = float(np.mean(model.bits_per_dim(images, cond).numpy()))
    assert mean_bits_per_dim(model, ds, slices_per_call=3) == pytest.approx(expected_bits,
                                                                            rel=1e-5)
    assert mean_bits_per_dim(model, ds) == pytest.approx(expected_bits, rel=1e-5)


def test_upscaling_composite_evaluation_by_chunks_equals_its_log_prob():
    keras.utils.set_random_seed(0)
    model = models.build("upscaling", 4, channels=3, bits=2, preset="tiny", subscale_factor=2,
                         msb_bits=1)
    model.build()
    images = IMAGES[:3]
    expected = model.log_prob(images).numpy()
    got = model.log_prob(tf.constant(images), None, slices_per_call=4).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    ds = tf.data.Dataset.from_tensor_slices(images).batch(2)
    assert mean_bits_per_dim(model, ds, slices_per_call=5) == pytest.approx(
        float(np.mean(model.bits_per_dim(images).numpy())), rel=1e-5)


class _FaultyModel:
    """Returns negative bits/dim from a compiled function (eagerly: `eager`)."""

    num_dims = 1

    def __init__(self, eager):
        self.eager = eager

    def log_prob(self, images, cond=None, slices_per_call=None):
        value = self.eager if tf.executing_eagerly() else -1.0  # in bits/dim
        return tf.fill(tf.shape(images)[:1], -value * float(np.log(2.0)))


def test_negative_bits_per_dim_are_recomputed_or_refused():
    batches = [tf.zeros([2, 1, 1, 1], tf.int32)]
    assert mean_bits_per_dim(_FaultyModel(0.5), batches) == pytest.approx(0.5)
    with pytest.raises(FloatingPointError, match="a numerical fault, not a result"):
        mean_bits_per_dim(_FaultyModel(-1.0), batches)


def test_evaluating_again_does_not_trace_again_nor_keep_the_model_alive():
    import gc
    import weakref

    from spn_tf.training import evaluation

    keras.utils.set_random_seed(0)
    model = models.build("raster", 4, channels=3, bits=2, preset="tiny")
    model.build()
    ds = tf.data.Dataset.from_tensor_slices(IMAGES[:4]).batch(2)
    first = mean_bits_per_dim(model, ds)
    for _ in range(6):  # a training run's periodic evaluations
        assert mean_bits_per_dim(model, ds) == first
    assert evaluation._COMPILED[model][0].experimental_get_tracing_count() == 1
    held = weakref.ref(model)
    del model
    gc.collect()
    assert held() is None
