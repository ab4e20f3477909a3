"""`spn_tf.codec` on images of any size: the tiling is a cover with no padding, round trips
at odd sizes and strips for every kind of image model, the file's geometry, refusals."""

import hashlib

import numpy as np
import pytest

from spn_tf import codec, models
from spn_tf.codec import container, tiling

RNG = np.random.default_rng(11)


@pytest.mark.parametrize("length, size", [(1, 4), (4, 4), (5, 4), (9, 4), (12, 4), (31, 8)])
def test_tiles_cover_the_axis_without_padding(length, size):
    starts = tiling.origins(length, size)
    if length < size:
        assert starts == ()
        return
    covered = np.zeros(length, int)
    for start in starts:
        assert 0 <= start and start + size <= length  # inside the image: never padding
        covered[start:start + size] += 1
    assert covered.min() >= 1 and covered.max() <= 2
    assert len(starts) == -(-length // size)  # the fewest tiles that cover it
    assert (covered == 2).sum() == len(starts) * size - length  # overlap only at the end


@pytest.mark.parametrize("height, width", [(4, 4), (7, 5), (13, 4), (4, 13)])
def test_paste_inverts_cut(height, width):
    image = RNG.integers(0, 256, (height, width, 3))
    tiles = tiling.cut(image, 4)
    assert len(tiles) == tiling.count(height, width, 4)
    np.testing.assert_array_equal(tiling.paste(tiles, height, width, 4), image)


SIZES = [(8, 8), (11, 19), (1, 1), (1, 23), (17, 1), (3, 12), (16, 9)]


@pytest.mark.parametrize("kind, channels", [("multiscale", 3), ("spn", 3), ("upscaling", 1)])
def test_tiled_round_trip_at_odd_sizes_and_strips(kind, channels):
    model = models.build(kind, 8, channels=channels, bits=4, preset="tiny")
    images = [RNG.integers(0, 16, (h, w, channels)) for h, w in SIZES]
    data = codec.encode_images(model, images, batch_size=4, names=[f"{h}x{w}.png"
                                                                   for h, w in SIZES])
    decoded, names = codec.decode_images(model, data)
    assert names == [f"{h}x{w}.png" for h, w in SIZES]
    for image, out in zip(images, decoded):
        np.testing.assert_array_equal(out, image)
    # The file: tiles at their likelihood, raw images at 4 bits, header and tables.
    tiles = np.concatenate([tiling.cut(image, 8) for image in images])
    info = -model.log_prob(tiles).numpy().sum() / np.log(2)
    raw = sum(image.size * 4 for image in images if not tiling.count(*image.shape[:2], 8))
    fixed = container.header_bytes(model.example_shape, None, 4, len(tiles),
                                   geometry=SIZES, names=names) + 8 * -(-len(tiles) // 4)
    assert 8 * len(data) <= 1.01 * info + raw + 8 * fixed + 8


@pytest.mark.parametrize("channels", [1, 3])
def test_raster_codes_whole_images_of_any_size(channels):
    """The raster kind is fully convolutional: each image is coded whole at its own size
    (strips included, nothing raw), at its likelihood under the same weights built at that
    size (checked where the size is square)."""
    model = models.build("raster", 8, channels=channels, bits=4, preset="tiny",
                         attention_layers=[0])
    sizes = SIZES + [(13, 13), (13, 13), (5, 5)]
    images = [RNG.integers(0, 16, (h, w, channels)) for h, w in sizes]
    data = codec.encode_images(model, images, batch_size=4)
    decoded, _ = codec.decode_images(model, data)
    for image, out in zip(images, decoded):
        np.testing.assert_array_equal(out, image)
    square = [image for image in images if image.shape[0] == image.shape[1]]
    info = 0.0
    for image in square:
        at_size = models.build("raster", image.shape[0], channels=channels, bits=4,
                               preset="tiny", attention_layers=[0])
        at_size.build()
        at_size.set_weights(model.get_weights())
        info += -at_size.log_prob(image[None]).numpy()[0] / np.log(2)
    assert info == pytest.approx(sum(codec.image_bits(model, x) for x in square), rel=1e-5)
    alone = codec.encode_images(model, square, batch_size=4)
    fixed = container.header_bytes(model.example_shape, None, 4, len(square),
                                   geometry=[x.shape[:2] for x in square],
                                   streams=[1] * 4) + 8 * 4
    assert 0.99 * info <= 8 * len(alone) <= 1.01 * info + 8 * fixed


def test_class_conditional_tiles_share_their_image_label():
    model = models.build("multiscale", 4, channels=1, bits=3, preset="tiny", cond={"label": 3})
    images = [RNG.integers(0, 8, (6, 9, 1)), RNG.integers(0, 8, (4, 4, 1))]
    cond = {"label": np.array([2, 0], np.int32)}
    data = codec.encode_images(model, images, cond)
    decoded, _ = codec.decode_images(model, data, cond)
    for image, out in zip(images, decoded):
        np.testing.assert_array_equal(out, image)
    with pytest.raises(ValueError, match="digest mismatch"):
        codec.decode_images(model, data, {"label": np.array([2, 1], np.int32)})


@pytest.fixture(scope="module")
def coded():
    model = models.build("multiscale", 4, channels=1, bits=3, preset="tiny")
    images = [RNG.integers(0, 8, (5, 6, 1)), RNG.integers(0, 8, (2, 3, 1))]
    return model, images, codec.encode_images(model, images)


def test_refuses_bad_images(coded):
    model, images, _ = coded
    with pytest.raises(ValueError, match=r"shape \(5, 6\); this model codes \(H, W, 1\)"):
        codec.encode_images(model, [images[0][..., 0]])
    with pytest.raises(ValueError, match=r"values in \[\d, 8\]; this model codes 3-bit"):
        codec.encode_images(model, [images[0] + 1])
    with pytest.raises(ValueError, match="pass integer pixel values"):
        codec.encode_images(model, [images[0].astype(np.float32)])
    with pytest.raises(ValueError, match="got 1 names for 2 images"):
        codec.encode_images(model, images, names=["a"])


def test_each_decoder_refuses_the_other_files(coded):
    model, images, data = coded
    with pytest.raises(ValueError, match="decode it with decode_images"):
        codec.decode(model, data)
    examples = codec.encode(model, RNG.integers(0, 8, (2, 4, 4, 1)))
    with pytest.raises(ValueError, match="decode it with decode"):
        codec.decode_images(model, examples)


def _resealed(body):
    return body + hashlib.sha256(body).digest()[:8]


def test_hostile_geometry_fails_before_allocating(coded):
    """A header (valid checksum) that claims a huge image, or more images than its bytes
    hold, is refused with a clear error."""
    model, _, data = coded
    body = data[:-8]
    images_at = container._HEAD.size + 3 + 2 + 1 + 1  # after shape, bits, keys, batch, count
    assert body[images_at] == 2
    huge = body[:images_at] + container._varint(2 ** 40) + body[images_at + 1:]
    with pytest.raises(ValueError, match="images do not fit"):
        codec.decode_images(model, _resealed(huge))
    layout = body[:images_at + 1] + bytes([7]) + body[images_at + 2:]
    with pytest.raises(ValueError, match="image layout 7 is not one of"):
        codec.decode_images(model, _resealed(layout))
    whole = body[:images_at + 1] + bytes([1]) + body[images_at + 2:]
    with pytest.raises(ValueError, match="do not cut into its examples|do not fit"):
        codec.decode_images(model, _resealed(whole))
    tall = (body[:images_at + 2] + container._varint(2 ** 40) + body[images_at + 3:])
    with pytest.raises(ValueError, match="do not cut into its examples"):
        codec.decode_images(model, _resealed(tall))
    # The second image (2x3: raw) claimed 2**40 wide: its raw values cannot be in the file.
    strip = (body[:images_at + 6] + container._varint(2 ** 40) + body[images_at + 7:])
    with pytest.raises(ValueError, match="do not add up"):
        codec.decode_images(model, _resealed(strip))
    named = (body[:images_at + 4] + container._varint(2 ** 40) + body[images_at + 5:])
    with pytest.raises(ValueError, match="not those of an spn_tf.codec file"):
        codec.decode_images(model, _resealed(named))
