"""`spn_tf.codec`: round trips (video, a super-resolver, across processes), coded length at the
model's likelihood, and every refusal (another model, truncated or altered files, other bits or
conditioning)."""

import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from spn_tf import codec, data, models
from spn_tf.codec import container, entropy, tables
from spn_tf.codec.__main__ import read_lossless

import harness

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RNG = np.random.default_rng(7)


def _images(n, side, channels, bits):
    return RNG.integers(0, 2 ** bits, (n, side, side, channels)).astype(np.int32)


def _info_bits(model, images, cond=None):
    return -model.log_prob(images, cond).numpy() / np.log(2)


def _fixed_bits(model, cond, batch_size, count):
    """The file's bits besides the values' words: header, table, checksum, and a flush of two
    words per coding batch."""
    batches = -(-count // batch_size)
    return 8 * (container.header_bytes(model.example_shape, cond, batch_size, count)
                + 8 * batches)


def _check_round_trip(model, images, cond=None, batch_size=2, extra_bits=0.0):
    data = codec.encode(model, images, cond, batch_size)
    np.testing.assert_array_equal(codec.decode(model, data, cond), images)
    # The file: within 1% of -log2 p(x), plus its header, table and flushes.
    info = _info_bits(model, images, cond).sum() + extra_bits
    bound = 1.01 * info + _fixed_bits(model, cond, batch_size, len(images))
    assert 8 * len(data) <= bound, (8 * len(data), info, bound)
    return data, info


def test_round_trip_of_a_super_resolver_given_its_low_res():
    # Every kind's round trip is the harness's "codec" claim (tests/test_harness.py); this
    # adds the coded size bound and the one conditioning the harness's cases lack.
    model = models.build("multiscale", 8, channels=3, bits=3, preset="tiny",
                         condition_on_base=True)
    images = _images(3, 8, 3, 3)
    _check_round_trip(model, images, {"low_res": images[:, ::2, ::2]})


def test_round_trip_video_codes_the_first_frame_raw():
    model = models.build("multiscale_video", 4, channels=1, bits=3, preset="tiny",
                         cond={"action": 2})
    clips = RNG.integers(0, 8, (3, model.num_frames, 4, 4, 1)).astype(np.int32)
    cond = {"action": RNG.normal(size=(3, model.num_frames - 1, 2)).astype(np.float32)}
    raw = 3 * 4 * 4 * 1 * 3  # the given first frames, 3 bits per sub-pixel
    _check_round_trip(model, clips, cond, batch_size=2, extra_bits=raw)


@pytest.mark.parametrize("kind", ["raster", "multiscale"])
def test_trained_model_codes_at_its_likelihood(kind):
    """After a few steps on one photo the model is far from uniform, and the coded size
    follows its -log2 p(x), not the 3 bits per sub-pixel of raw values."""
    photo = np.load(os.path.join(ROOT, "spn_tf", "data_files", "photos.npz"))["astronaut"]
    images = (photo[None, :64, :64] // 32).reshape(1, 8, 8, 8, 8, 3).transpose(
        0, 1, 3, 2, 4, 5).reshape(-1, 8, 8, 3)[:16].astype(np.int32)
    model = models.build(kind, 8, channels=3, bits=3, preset="tiny")
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-2))
    model.fit(images, batch_size=16, epochs=30, verbose=0)
    data, info = _check_round_trip(model, images[:4], batch_size=4)
    assert info / 4 < 0.8 * 8 * 8 * 3 * 3  # trained: well below raw
    assert 8 * len(data) >= 0.99 * info  # and the coder gets no bits for free


@pytest.mark.parametrize("channels, bound", [(1, 0.01), (3, 0.003)])
def test_overhead_on_held_out_32x32_photos(channels, bound):
    """A file of the 320 held-out 32x32 crops costs at most 1% (grayscale) or 0.3% (RGB) more
    than their -log2 p(x): header, per-batch tables and flushes included (an untrained model,
    ~5 bits/sub-pixel; measured 0.10% and 0.035%, and 0.063% grayscale after 3 epochs)."""
    photos, _ = data.embedded_arrays("test", 32)
    images = (photos.mean(-1, keepdims=True) if channels == 1 else photos).astype(np.int32) >> 3
    model = models.build("multiscale", 32, channels=channels, bits=5, preset="tiny")
    data_, info = _check_round_trip(model, images, batch_size=16)
    assert 8 * len(data_) / info - 1 <= bound, 8 * len(data_) / info - 1


@pytest.fixture(scope="module")
def coded():
    """A class-conditional raster model, two images and their file."""
    model = models.build("raster", 4, channels=1, bits=3, preset="tiny", cond={"label": 3})
    images = _images(2, 4, 1, 3)
    cond = {"label": np.array([1, 2], np.int32)}
    return model, images, cond, codec.encode(model, images, cond)


def test_refuses_another_model(coded):
    model, _, cond, data = coded
    other = models.build("raster", 4, channels=1, bits=3, preset="tiny", cond={"label": 3})
    other.build()  # other weights for certain (another test may have reset the global seed)
    other.set_weights([w + 0.5 for w in model.get_weights()])
    with pytest.raises(ValueError, match="encoded with another model"):
        codec.decode(other, data, cond)
    deeper = models.build("raster", 4, channels=1, bits=4, preset="tiny", cond={"label": 3})
    with pytest.raises(ValueError, match="at 3 bits; this model codes 4x4x1 at 4 bits"):
        codec.decode(deeper, data, cond)


def test_refuses_what_is_not_bytes(coded):
    model, _, cond, data = coded
    with pytest.raises(ValueError, match="data must be the bytes encode returned"):
        codec.decode(model, data.hex(), cond)


@pytest.mark.parametrize("cut", [1, 9, 40])
def test_refuses_truncated(coded, cut):
    model, _, cond, data = coded
    with pytest.raises(ValueError, match="truncated"):
        codec.decode(model, data[:-cut], cond)


@pytest.mark.parametrize("position", [2, 30, -12, -1])
def test_refuses_a_flipped_bit(coded, position):
    model, _, cond, data = coded
    altered = bytearray(data)
    altered[position] ^= 0x10
    with pytest.raises(ValueError, match="not an spn_tf.codec file|truncated or altered"):
        codec.decode(model, bytes(altered), cond)


def test_refuses_other_conditioning(coded):
    model, _, cond, data = coded
    with pytest.raises(ValueError, match="digest mismatch"):
        codec.decode(model, data, {"label": np.array([1, 1], np.int32)})
    with pytest.raises(ValueError, match=r"encoded with conditioning \['label'\]; got none"):
        codec.decode(model, data)


def _resealed(body):
    return body + hashlib.sha256(body).digest()[:8]


def test_hostile_header_only_fails(coded):
    """A header with a valid checksum that claims more images than its bytes hold, or
    streams of garbage, fails with a clear error, before allocating anything large."""
    model, _, cond, data = coded
    body = bytearray(data[:-8])
    # The examples varint: after the header, the shape (3 one-byte varints), bits, keys,
    # the conditioning digest and the batch varint.
    count_at = container._HEAD.size + 3 + 2 + 8 + 1
    body[count_at:count_at + 1] = container._varint(2 ** 40)
    with pytest.raises(ValueError, match="do not fit"):
        codec.decode(model, _resealed(bytes(body)), cond)
    garbage = bytearray(data[:-8])
    garbage[-8:] = bytes(range(8))  # the last stream's words
    with pytest.raises(ValueError, match="CRC mismatch|could not be decoded"):
        codec.decode(model, _resealed(bytes(garbage)), cond)


def test_other_probabilities_fail_never_give_wrong_pixels(coded, monkeypatch):
    """Where the decoder's probabilities differ from the encoder's (here another model
    passing as the same), the CRC turns it into an error."""
    model, _, cond, data = coded
    other = models.build("raster", 4, channels=1, bits=3, preset="tiny", cond={"label": 3})
    other.build()  # other weights for certain (another test may have reset the global seed)
    other.set_weights([w + 0.5 for w in model.get_weights()])
    fingerprint = container.fingerprint(model)
    monkeypatch.setattr(container, "fingerprint", lambda m: fingerprint)
    with pytest.raises(ValueError, match="CRC mismatch"):
        codec.decode(other, data, cond)


def test_near_zero_probabilities_still_code_every_value():
    """Values the tables give ~0 (or exactly 0 after float rounding) still round-trip."""
    values = np.array([[0, 7, 3, 7, 0]])
    logits = np.zeros((1, 5, 8), np.float32)
    logits[..., 1:] = -200.0  # p ~ e^-200 for every value but 0
    logits[0, 2, :] = np.linspace(0, -1e30, 8, dtype=np.float32)
    encoder = entropy.Encoder(None, [values], 8)
    carriers = encoder.noise(values.shape)
    np.testing.assert_array_equal(encoder.draw(logits, carriers), values)
    decoder = entropy.Decoder(encoder.finish(), 1)
    np.testing.assert_array_equal(decoder.draw(logits, decoder.noise(values.shape)), values)


def test_cli_on_a_folder_of_any_size(tmp_path):
    """A folder of PNGs of odd sizes (and one strip narrower than the model) compresses into
    one file and decompresses under the same names; refusals are one line."""
    from PIL import Image
    model = models.build("multiscale", 4, channels=3, bits=3, preset="tiny")
    model.save(str(tmp_path / "model.keras"))
    (tmp_path / "photos").mkdir()
    images = {"a.png": _images(1, 4, 3, 3)[0], "b.png": RNG.integers(0, 8, (7, 5, 3)),
              "strip.png": RNG.integers(0, 8, (1, 9, 3))}
    for name, image in images.items():
        Image.fromarray(image.astype(np.uint8)).save(tmp_path / "photos" / name)

    def run(*args):
        return subprocess.run([sys.executable, "-m", "spn_tf.codec", *args,
                               f"--model_dir={tmp_path}"], cwd=tmp_path, capture_output=True,
                              text=True)
    result = run("compress", "photos", "--out=all.spnc")
    assert result.returncode == 0, result.stderr
    assert "photos/b.png: 5x7, model -log2 p(x)" in result.stderr
    assert "strip.png: 9x1" in result.stderr and "stored raw" in result.stderr
    assert "bits/sub-pixel over 3 images" in result.stderr
    result = run("decompress", "all.spnc", "--out=decoded")
    assert result.returncode == 0, result.stderr
    for name, image in images.items():
        np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "decoded" / name)),
                                      image)
    result = run("decompress", "photos/a.png", "--out=x")
    assert result.returncode == 1 and "not an spn_tf.codec file" in result.stderr
    result = run("decompress", "all.spnc", "--out=one.png")
    assert result.returncode == 1 and "holds 3 images: give --out a directory" in result.stderr
    (tmp_path / "empty").mkdir()
    result = run("compress", "empty", "--out=none.spnc")
    assert result.returncode == 1 and "holds no PNG files" in result.stderr
    Image.fromarray((images["a.png"] * 32).astype(np.uint8)).save(tmp_path / "deep.png")
    with pytest.raises(ValueError, match="--reduce_bits"):
        read_lossless(str(tmp_path / "deep.png"), model, reduce=False)
    np.testing.assert_array_equal(read_lossless(str(tmp_path / "deep.png"), model, True),
                                  images["a.png"])
    Image.fromarray(images["a.png"][..., 0].astype(np.uint8)).save(tmp_path / "gray.png")
    with pytest.raises(ValueError, match="has 1 channels; this model codes 3"):
        read_lossless(str(tmp_path / "gray.png"), model, reduce=False)


@pytest.mark.parametrize("head", ["categorical", "logistic_mixture"])
def test_tables_equal_under_xla_and_another_computation(head, monkeypatch):
    """The coding loop runs as a plain graph only (its host calls cannot run inside XLA), so
    XLA against graph is proved on the tables: the raster coding loop's (one sub-pixel per
    draw, a cached decoder with one-row matrix products) equal, table for table, those of
    the whole network compiled with XLA on the true image (another computation and
    compiler). In float32 the two loops' logits differ (the test's power)."""
    model = harness.make_model("raster", image_size=6, channels=3, bits=4, head=head)
    images = _images(3, 6, 3, 4)
    copy = codec.coding_model(model)

    def loop_logits(network):
        seen, frequencies = [], tables.frequencies
        monkeypatch.setattr(tables, "frequencies", lambda logits: (
            seen.append(np.array(logits)), frequencies(logits))[1])
        raw, draws = network.coding_plan.parts(tf.constant(images))
        codec._coded_sample(network, entropy.Encoder(raw, draws, network.num_values), None,
                            network.coding_plan.given(raw), len(images))
        monkeypatch.setattr(tables, "frequencies", frequencies)
        return np.stack(seen, 1).reshape(len(images), 6, 6, 3, -1)  # raster draw order

    def xla_logits(network):
        return tf.function(lambda x: network.distribution.value_logits(network._outputs(
            x, None, False)), jit_compile=True)(tf.constant(images)).numpy()
    np.testing.assert_array_equal(tables.frequencies(loop_logits(copy)),
                                  tables.frequencies(xla_logits(copy)))
    assert not np.array_equal(loop_logits(model), xla_logits(model))
