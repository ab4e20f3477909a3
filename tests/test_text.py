"""Text-to-image conditioning: `cond={"text": max_length}` in every model.

Normalization per caption, captions that change the distribution (before and after training on a
toy caption → colour task), checked strings in process and through a SavedModel, `.keras` round
trip, and the captions shipped for the embedded photos.
"""

import importlib.resources
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from spn_tf import data, export, models, sample
import helpers as testing
from spn_tf.layers import TextEncoder
from spn_tf.layers.text_encoder import text_to_bytes
from spn_tf.run_folder import TrainConfig
from spn_tf.trainer import train_and_evaluate

CAPTIONS = ["a red square", "ciel bleu, café"]  # the second has multi-byte characters
TINY = {
    "raster": dict(name="raster", image_size=2, channels=1, bits=2),
    "spn": dict(name="spn", image_size=2, channels=1, bits=2, subscale_factor=2),
    "multiscale": dict(name="multiscale", image_size=4, channels=1, bits=1, base_size=2),
}


def _text_model(kind, max_length=16):
    return models.build(preset="tiny", cond={"text": max_length}, **TINY[kind])


@pytest.fixture(scope="module", params=sorted(TINY))
def text_model(request):
    return _text_model(request.param)


def test_text_encoder_layer():
    ids = text_to_bytes(tf.constant(CAPTIONS), 16).numpy()
    # Bytes + 1, then zero padding; the second caption fills all 16 bytes, "é" is two.
    assert list(ids[0, :3]) == [ord("a") + 1, ord(" ") + 1, ord("r") + 1]
    assert list(ids[0, 12:]) == [0] * 4
    assert list(ids[1, 14:]) == [0xC3 + 1, 0xA9 + 1]
    testing.run_layer_test(TextEncoder, dict(units=5, max_length=16, width=4), ids, (2, 5))


def test_caption_vector_does_not_depend_on_max_length():
    short, long = TextEncoder(4, 16, width=3), TextEncoder(4, 32, width=3)
    short.build(), long.build()
    long.set_weights(short.get_weights())
    np.testing.assert_allclose(short(tf.constant(CAPTIONS)), long(tf.constant(CAPTIONS)),
                               rtol=1e-5, atol=1e-6)


def test_normalized_per_caption_and_captions_change_log_prob(text_model):
    for caption in CAPTIONS:
        testing.assert_normalized(text_model, {"text": np.array([caption], object)})
    images = testing.all_images(text_model.image_size, text_model.image_size, 1,
                                text_model.bits)[:8]
    first, second = (text_model.log_prob(images, {"text": [caption] * len(images)}).numpy()
                     for caption in CAPTIONS)
    assert np.max(np.abs(first - second)) > 1e-4


def test_upscaling_composite_is_normalized_per_caption():
    """The composite's three SPNs each encode the caption (the shared embedding path)."""
    model = models.build("upscaling", 2, channels=1, bits=2, preset="tiny", subscale_factor=2,
                         msb_bits=1, cond={"text": 16})
    for caption in CAPTIONS:
        testing.assert_normalized(model, {"text": np.array([caption], object)})


def test_caption_forms_agree_and_sample_takes_captions(text_model):
    images = np.zeros([2, text_model.image_size, text_model.image_size, 1], np.int32)
    forms = [CAPTIONS, np.array(CAPTIONS), np.array([c.encode() for c in CAPTIONS]),
             tf.constant(CAPTIONS)]
    values = [text_model.log_prob(images, {"text": text}).numpy() for text in forms]
    for value in values[1:]:
        np.testing.assert_array_equal(value, values[0])
    compiled = text_model.sample(2, seed=3, cond={"text": CAPTIONS})
    reference = text_model.sample(2, seed=3, cond={"text": CAPTIONS}, mode="reference")
    np.testing.assert_array_equal(compiled, reference)


@pytest.mark.parametrize("text, message", [
    (["a red square", ""], r"cond\['text'\]\[1\] is empty"),
    (["x" * 17, "ok"], r"cond\['text'\]\[0\] is 17 UTF-8 bytes, more than this model's "
                       r"max_length=16"),
    ([b"\xff\xfe", b"ok"], r"cond\['text'\]\[0\] is not valid UTF-8"),
    ([1, 2], r"cond\['text'\] must be captions \(str or bytes\)"),
    (tf.constant([1, 2]), r"cond\['text'\] must be tf.string captions, got int32"),
    ([["a"], ["b"]], r"cond\['text'\] must have shape \(batch,\)"),
    (["only one"], r"cond\['text'\] has batch 1 but the images have 2"),
])
def test_bad_captions_are_refused(text, message):
    model = _text_model("raster")
    with pytest.raises(ValueError, match=message):
        model.log_prob(np.zeros([2, 2, 2, 1], np.int32), {"text": text})


def test_missing_or_unwanted_text_is_refused():
    with pytest.raises(ValueError, match=r"takes conditioning \['text'\]"):
        _text_model("raster").log_prob(np.zeros([1, 2, 2, 1], np.int32))
    with pytest.raises(ValueError, match="'text' \\(longest caption in UTF-8 bytes\\)"):
        models.build("raster", 2, preset="tiny", cond={"txt": 16})


def test_keras_round_trip(tmp_path):
    model = _text_model("multiscale")
    images = testing.all_images(4, 4, 1, 1)[:2]
    cond = {"text": CAPTIONS}
    want = model.log_prob(images, cond)
    path = str(tmp_path / "text.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    assert restored.cond_spec == {"text": 16}
    np.testing.assert_array_equal(restored.log_prob(images, cond), want)


def test_training_on_captions_learns_the_colour():
    """'a red square' / 'a blue square' → images of that colour: after a few `fit` steps
    (strings through the data pipeline) each caption gives its own colour the higher
    likelihood; untrained, the captions barely matter and this fails."""
    red, blue = np.zeros([2, 2, 2, 3], np.int32)  # 2x2 RGB at 1 bit: all red, all blue
    red[..., 0] = blue[..., 2] = 1
    captions = np.array(["a red square", "a blue square"] * 8, object)
    images = np.stack([red, blue] * 8)
    dataset = tf.data.Dataset.from_tensor_slices(
        {"images": images, "text": captions}).batch(16).repeat()
    keras.utils.set_random_seed(0)
    model = models.build("raster", 2, channels=3, bits=1, preset="tiny", cond={"text": 16})
    # Keras's "auto" would XLA-compile `fit` on a GPU, and XLA has no strings.
    model.compile(optimizer=keras.optimizers.Adam(0.03), jit_compile=False)
    model.fit(dataset, steps_per_epoch=40, epochs=1, verbose=0)
    both = np.stack([red, blue])
    for caption, matching in (("a red square", 0), ("a blue square", 1)):
        log_prob = model.log_prob(both, {"text": [caption] * 2}).numpy()
        assert log_prob[matching] > log_prob[1 - matching] + 1.0, (caption, log_prob)


@pytest.fixture(scope="module")
def exported_text(tmp_path_factory):
    model = _text_model("raster")
    path = export.export_model(model, str(tmp_path_factory.mktemp("text") / "1"))
    return model, tf.saved_model.load(path)


def test_export_round_trip_takes_strings(exported_text):
    model, loaded = exported_text
    images = testing.all_images(2, 2, 1, 2)[:2]
    signature = loaded.signatures["log_prob"]
    assert signature.structured_input_signature[1]["text"].dtype == tf.string
    got = signature(images=tf.constant(images), text=tf.constant(CAPTIONS))
    np.testing.assert_allclose(got["log_prob"], model.log_prob(images, {"text": CAPTIONS}),
                               rtol=1e-6)
    seeds = np.array([[0, 1], [5, 2]], np.int32)
    drawn = loaded.signatures["sample"](seed=tf.constant(seeds),
                                        temperature=tf.constant([1.0, 0.5]),
                                        text=tf.constant(CAPTIONS))["images"]
    for i, (temperature, caption) in enumerate(zip([1.0, 0.5], CAPTIONS)):
        np.testing.assert_array_equal(
            drawn[i], model.sample(1, seeds[i], temperature, {"text": [caption]})[0])


@pytest.mark.parametrize("text, message", [
    ([b"", b"ok"], "every caption must be non-empty"),
    ([b"x" * 17, b"ok"], "captions must be at most 16 UTF-8 bytes"),
    ([b"\xc3(", b"ok"], "captions must be valid UTF-8"),
])
def test_exported_signatures_check_captions(exported_text, text, message):
    _, loaded = exported_text
    images = tf.zeros([2, 2, 2, 1], tf.int32)
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        loaded.signatures["log_prob"](images=images, text=tf.constant(text))
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        loaded.signatures["sample"](seed=tf.zeros([2, 2], tf.int32),
                                    temperature=tf.ones([2]), text=tf.constant(text))


def test_captions_cover_every_embedded_photo():
    captions = data.embedded_captions()
    path = importlib.resources.files("spn_tf") / "data_files" / "photos.npz"
    with importlib.resources.as_file(path) as file, np.load(file) as photos:
        assert sorted(captions) == sorted(photos.files)
    for name, texts in captions.items():
        assert texts, name
        for text in texts:
            assert 0 < len(text.encode("utf-8")) <= data.CAPTION_LENGTH, (name, text)


def test_embedded_dataset_yields_each_crops_photo_captions():
    captions = data.embedded_captions()
    names = sorted(captions)
    batch = next(iter(data.load(data.EMBEDDED, "test", image_size=4, bits=2, batch_size=1000,
                                shuffle=False, with_labels=True, with_text=True)))
    texts = [t.decode("utf-8") for t in batch["text"].numpy()]
    for label, text in zip(batch["label"].numpy(), texts):
        assert text in captions[names[label]]
    assert set(texts) == {text for name in names for text in captions[name]}  # all are used
    with pytest.raises(ValueError, match="captions ship only with the embedded photos"):
        data.load("mnist", with_text=True)


def test_text_conditional_training_run(tmp_path):
    """The train CLI's path: embedded captions, an XLA-compiled step, evaluation, samples."""
    config = TrainConfig(model="multiscale", preset="tiny", image_size=4, bits=2,
                         text_conditional=True, steps=2, batch_size=8, num_samples=2,
                         eval_batches=1, checkpoint_every=2, hparams={"base_size": 2},
                         xla=True,
                         model_dir=str(tmp_path / "run"))
    train_and_evaluate(config)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert 0 < metrics["held_out_bits_per_dim"] < 4  # 2 bits: a uniform model gives 2
    model = keras.saving.load_model(str(tmp_path / "run" / "model.keras"))
    assert model.cond_spec == {"text": data.CAPTION_LENGTH}
    with pytest.raises(ValueError, match="--text_conditional needs captions"):
        train_and_evaluate(TrainConfig(dataset="mnist", text_conditional=True,
                                       model_dir=str(tmp_path / "other")))


def test_sample_cli_takes_captions(tmp_path):
    model = _text_model("raster")
    model.build()
    model.save(str(tmp_path / "model.keras"))
    args = dict(model_dir=str(tmp_path), num=3, batch_size=3, seed=5, temperature=1.0,
                labels=None, given_path=None, sampler="xla", out=str(tmp_path / "s.png"))
    images = sample.run(captions=CAPTIONS, **args)
    want = model.sample(3, [5, 0], 1.0, {"text": [CAPTIONS[0], CAPTIONS[1], CAPTIONS[0]]})
    np.testing.assert_array_equal(images, want)
    with pytest.raises(ValueError, match="this model is text-conditional: pass --captions"):
        sample.run(**args)
    with pytest.raises(ValueError, match="more than this model's max_length=16"):
        sample.run(captions=["x" * 20], **args)
