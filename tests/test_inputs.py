"""One validation path: `fit`, `evaluate`, `predict`, `model(x)`, `log_prob` and `sample`
refuse what the model cannot take, with the same messages, and leave the model usable."""

import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from spn_tf import data, models


@pytest.fixture(scope="module")
def model():
    model = models.build("raster", 4, channels=1, bits=2, preset="tiny", cond={"label": 3})
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    return model


IMAGES = np.random.default_rng(0).integers(0, 4, (8, 4, 4, 1)).astype(np.int32)
LABELS = np.zeros(8, np.int32)
FLOAT = "must be integers in [0, 4)"
RANGE = "values must be in [0, 4) for bits=2"


@pytest.mark.parametrize("verb", ["fit", "evaluate", "predict", "call"])
@pytest.mark.parametrize("images, message", [(IMAGES / 3.0, FLOAT), (IMAGES * 60, RANGE)])
def test_float_and_8bit_images_are_refused_by_every_entry(model, verb, images, message):
    x = {"images": images, "label": LABELS}
    run = {"fit": lambda: model.fit(x, epochs=1, verbose=0),
           "evaluate": lambda: model.evaluate(x, verbose=0),
           "predict": lambda: model.predict(x, verbose=0),
           "call": lambda: model(x)}[verb]
    with pytest.raises(ValueError, match=re.escape(message)):
        run()
    # Nothing was traced half-way: the model still trains and evaluates.
    assert np.isfinite(model.fit({"images": IMAGES, "label": LABELS}, epochs=1,
                                 verbose=0).history["loss"][0])


def test_a_float_dataset_is_refused_before_training(model):
    ds = tf.data.Dataset.from_tensor_slices({"images": IMAGES / 3.0, "label": LABELS}).batch(4)
    with pytest.raises(ValueError, match="must be int32 or uint8"):
        model.fit(ds, epochs=1, verbose=0)


def test_out_of_range_values_inside_a_dataset_fail_in_graph_with_the_message(model):
    ds = tf.data.Dataset.from_tensor_slices({"images": IMAGES * 60, "label": LABELS}).batch(4)
    with pytest.raises(tf.errors.InvalidArgumentError, match="images values must be < 4"):
        model.evaluate(ds, verbose=0)


def test_out_of_range_labels_fail_in_graph_with_the_message(model):
    # Labels of a 10-class data set on a 3-class model: the embedding's gather used to fail
    # first ("indices[1] = 5 is not in [0, 3)").
    ds = tf.data.Dataset.from_tensor_slices({"images": IMAGES, "label": LABELS + 5}).batch(4)
    for _ in range(5):
        with pytest.raises(tf.errors.InvalidArgumentError,
                           match=re.escape("values must be in [0, 3)")):
            model.evaluate(ds, verbose=0)
    bits = tf.function(lambda x, y: model.bits_per_dim(x, {"label": y}))
    with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape("must be in [0, 3)")):
        bits(IMAGES, LABELS + 5)


def test_8bit_data_on_a_5bit_model_gives_the_message_every_time_through_fit():
    # The range check gates every op that reads the values, the loss's included: ungated,
    # the loss's gather gradient failed first ("segment_ids ... out of range") in 4 of 20
    # runs of exactly this.
    model = models.build("raster", 16, channels=3, bits=5, preset="tiny")
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    ds = data.load("embedded", image_size=16, bits=8, batch_size=32, repeat=True)
    for _ in range(20):
        with pytest.raises(tf.errors.InvalidArgumentError, match="images values must be < 32"):
            model.fit(ds, steps_per_epoch=2, epochs=1, verbose=0)


def test_conditioning_errors_are_plain_value_errors(model):
    with pytest.raises(ValueError, match=r"takes conditioning \['label'\].*got none") as info:
        model.fit({"images": IMAGES}, epochs=1, verbose=0)
    assert "\x1b[" not in str(info.value)
    with pytest.raises(ValueError, match="cond must be None or a dict"):
        model.log_prob(IMAGES, LABELS)
    with pytest.raises(ValueError, match="seed must be an int"):
        model.sample(2, None, cond={"label": [0, 1]})


def test_repr_states_the_ordering():
    spn = models.build("spn", 8, channels=1, bits=2, preset="tiny")
    assert "subscale S=2: 4 slices of 4x4" in repr(spn)
    multiscale = models.build("multiscale", 8, channels=1, bits=2, preset="tiny", base_size=2)
    assert "base 2x2 in raster order, then 2 resolution doublings" in repr(multiscale)
    upscaling = models.build("upscaling", 4, channels=1, bits=3, preset="tiny", msb_bits=1)
    assert "top msb_bits=1 of 3 first" in repr(upscaling)


def test_errors_name_the_hyperparameter_users_pass():
    with pytest.raises(ValueError, match="msb_bits=3 must be in"):
        models.build("upscaling", 8, bits=3, preset="small")
