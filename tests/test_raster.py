"""GatedPixelCNN: what only the raster kind shows (fit, completion, greedy sampling, bad input,
mixed precision). Normalization, causality, the sampler's G-test, export, codec and `.keras`
round trip are `tests/harness.py`'s claims (tests/test_harness.py)."""

import numpy as np
import pytest

import keras
import spn_tf
from spn_tf import data, models
from helpers import assert_normalized


def _tiny(size=2, channels=1, bits=2, cond=None, **kw):
    return models.build("raster", size, channels=channels, bits=bits, preset="tiny", cond=cond,
                        **kw)


def test_build_is_exported_and_small_for_tiny():
    model = _tiny(8, 3, 3)
    model.build()
    assert isinstance(model, spn_tf.GatedPixelCNN)
    assert model.count_params() < 10_000


def test_fit_on_embedded_data_lowers_loss():
    ds = data.load("embedded", image_size=8, bits=3, channels=3, batch_size=16, repeat=True,
                   with_labels=True)
    model = _tiny(8, 3, 3, {"label": data.num_classes("embedded")}, filters=12)
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    history = model.fit(ds, steps_per_epoch=40, epochs=2, verbose=0).history["loss"]
    assert history[-1] < history[0] - 0.05, history


def test_sampling_is_deterministic_keeps_given_and_greedy_is_mode():
    model = _tiny(3, 3, 2)
    a, b = model.sample(4, [1, 2]), model.sample(4, [1, 2])
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, model.sample(4, [1, 3]))
    given = np.full((4, 3, 3, 3), 3, np.int32)
    mask = np.zeros((4, 3, 3, 3), bool)
    mask[:, 0] = True
    completed = model.sample(4, 0, given={"images": given, "mask": mask}).numpy()
    np.testing.assert_array_equal(completed[:, 0], given[:, 0])
    greedy = model.sample(2, 0, temperature=0.0)
    np.testing.assert_array_equal(greedy, model.sample(2, 9, temperature=0.0))


@pytest.mark.parametrize("images,match", [
    (np.zeros((2, 4, 4, 1), np.float32), "float"),
    (np.full((2, 4, 4, 1), 4, np.int32), r"\[0, 4\)"),
    (np.full((2, 4, 4, 1), -1, np.int32), r"\[0, 4\)"),
    (np.zeros((4, 4, 1), np.int32), "rank 4"),
    (np.zeros((2, 4, 4, 3), np.int32), "does not match"),
])
def test_bad_images_raise_clear_errors(images, match):
    with pytest.raises(ValueError, match=match):
        _tiny(4, 1, 2).log_prob(images)


def test_bad_conditioning_and_sampling_arguments():
    model = _tiny(2, 1, 2, {"label": 3})
    x = np.zeros((2, 2, 2, 1), np.int32)
    with pytest.raises(ValueError, match="takes conditioning"):
        model.log_prob(x)
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        model.log_prob(x, {"label": np.array([0, 5])})
    with pytest.raises(ValueError, match="batch_size"):
        model.sample(0, 0, cond={"label": []})
    with pytest.raises(ValueError, match="seed"):
        model.sample(1, [1.0, 2.0], cond={"label": [0]})
    with pytest.raises(ValueError, match="temperature"):
        model.sample(1, 0, temperature=-1.0, cond={"label": [0]})
    with pytest.raises(ValueError, match="unknown hyperparameters"):
        models.build("raster", 4, preset="tiny", filterz=3)
    with pytest.raises(ValueError, match="unknown model"):
        models.build("pixelrnn", 4)
    for kind in ("raster", "spn"):  # one int, as `--hparams=attention_layers=0` gives
        with pytest.raises(ValueError, match=r"attention_layers=0 must be a list of block "
                                             r"indices, e.g. --hparams=attention_layers=\[0\]"):
            models.build(kind, 4, preset="tiny", attention_layers=0)


def test_normalized_under_mixed_precision():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = _tiny(2, 1, 2)
        model.build()
        assert model.decoder.compute_dtype == "bfloat16"
        # bfloat16 logits, float32 log-softmax: still exactly normalized.
        assert_normalized(model)
    finally:
        keras.mixed_precision.set_global_policy("float32")
