"""Lossless compression with a model's exact likelihood: `encode(model, examples) -> bytes`,
`decode(model, data) -> examples` for examples of the model's own shape, and
`encode_images(model, images) -> bytes`, `decode_images(model, data) -> images` for images
of any size, cut into tiles of the model's size (`spn_tf.codec.tiling`).

An example costs about `-log2 p(x)` bits (the model's likelihood) plus its share of the
container's header (`spn_tf.codec.container`) and of its coding batch's table entry and
coder flush (about 10 bytes a batch). Coding runs the model's own sampler with a range coder
in place of randomness (`run_sampler(mode="coding")`, `spn_tf.codec.entropy`): the decoder
follows the model's order (raster pixel by pixel with the cached loop, an SPN slice by slice,
multiscale group by group in O(log N) network calls, video frame by frame), and the encoder
runs the very same loop, fed the true values. Both run the model's float64 copy
(`coding_model`) and turn its logits into integer tables on a grid (`spn_tf.codec.tables`),
so a file decodes the same under another oneDNN setting, thread count or machine (BUILD_NOTES.md
says what is and is not guaranteed); a CRC-32 of each coding batch's pixels turns any
difference left into an error, never into wrong pixels.
"""

import functools
import threading
import weakref

import keras
import numpy as np
import tensorflow as tf

from spn_tf import sampling
from spn_tf.codec import container, tiling
from spn_tf.codec.entropy import Decoder, Encoder
from spn_tf.models.base import set_sample_size

DEFAULT_BATCH = 16
_COPIES = weakref.WeakKeyDictionary()  # model -> (its fingerprint, its float64 copy)
# One coding run at a time in a process: a float64 copy is shared, and a fully convolutional
# one changes its sample size per batch of whole images.
_LOCK = threading.RLock()


def _one_at_a_time(function):
    @functools.wraps(function)
    def serialized(*args, **kwargs):
        with _LOCK:
            return function(*args, **kwargs)
    return serialized


def coding_model(model):
    """The float64 copy of `model` (same config and weights) that codes for it: its logits
    differ between builds and thread settings by ~1e-15, not float32's ~1e-6, which is what
    lets `spn_tf.codec.tables` give every machine the same tables. Made once per model and
    weights (`container.fingerprint`)."""
    model.build()
    key = container.fingerprint(model)
    cached = _COPIES.get(model)
    if cached is not None and cached[0] == key:
        if model.fully_convolutional:  # back to the model's size after whole images
            set_sample_size(cached[1], *model.example_shape[:2])
        return cached[1]
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float64")
    try:
        copy = model.__class__.from_config(model.get_config())
        copy.build()
    finally:
        keras.config.set_dtype_policy(previous)
    copy.set_weights(model.get_weights())
    _COPIES[model] = (key, copy)
    return copy


def _rows(cond, begin, end):
    return {key: value[begin:end] for key, value in (cond or {}).items()}


def _numpy_cond(cond):
    return {key: np.asarray(value.numpy() if tf.is_tensor(value) else value)
            for key, value in (cond or {}).items()}


def _check_batch(batch_size):
    if not 1 <= batch_size < sampling.MAX_CODED_ROWS:
        raise ValueError(f"batch_size must be in [1, {sampling.MAX_CODED_ROWS}), got "
                         f"{batch_size}.")


@_one_at_a_time
def encode(model, images, cond=None, batch_size=DEFAULT_BATCH, progress=None):
    """Compresses examples of the model's own shape losslessly.

    Args:
      model: an spn_tf model (any kind).
      images: int `(N, *model.example_shape)` in `[0, 2**model.bits)` (clips for video).
      cond: the conditioning the model takes, N rows (decoding needs the same).
      batch_size: examples coded together (the decoder uses the same layout).
      progress: None or `progress(values coded so far, values in all)`, every few seconds.

    Returns:
      bytes: the container (`spn_tf.codec.container`).
    """
    images, cond = model.check_inputs(images, cond)
    _check_batch(batch_size)
    cond = _numpy_cond(cond)
    crcs, streams = _encode_examples(model, images.numpy(), cond, batch_size, progress)
    return container.pack(container.fingerprint(model), model.example_shape, model.bits, cond,
                          batch_size, len(images), crcs, streams)


@_one_at_a_time
def encode_images(model, images, cond=None, batch_size=DEFAULT_BATCH, progress=None,
                  names=None, whole=None):
    """Compresses images of any height and width with a model of one image size.

    A fully convolutional kind (raster) codes each image whole, consecutive images of one
    size together. Any other kind cuts each image into tiles of the model's size, all tiles
    of all images coded in batches of `batch_size` (`spn_tf.codec.tiling`: overlapping edge
    tiles, never padding); an image shorter or narrower than the model's size is stored raw,
    at `bits` bits per sub-pixel. The file records every image's height, width and name.

    Args:
      model: an spn_tf image model (not video).
      images: a sequence of int `(H, W, C)` arrays, `C = model.channels`, values in
        `[0, 2**model.bits)`; sizes may differ.
      cond: the conditioning the model takes, one row per image (its tiles share it).
      batch_size, progress: as for `encode`.
      names: None, or one string per image (e.g. file names), kept in the file.
      whole: None (the kind's choice, above), or False: tiles even for a fully convolutional
        kind (what `benchmarks/codec.py` compares).

    Returns:
      bytes: the container.
    """
    if len(model.example_shape) != 3:
        raise ValueError("encode_images codes images; this model codes clips: use encode.")
    _check_batch(batch_size)
    images = [_checked_image(model, image, i) for i, image in enumerate(images)]
    if not images:
        raise ValueError("encode_images takes at least one image.")
    names = [""] * len(images) if names is None else [str(name) for name in names]
    if len(names) != len(images):
        raise ValueError(f"got {len(names)} names for {len(images)} images.")
    cond = _numpy_cond(model.check_cond(cond, len(images)))
    geometry = [image.shape[:2] for image in images]
    if whole and not model.fully_convolutional:
        raise ValueError(f"a {model.kind} model codes tiles of its size, not whole images.")
    if model.fully_convolutional if whole is None else whole:
        crcs, streams = _encode_whole(model, images, cond, batch_size, progress)
        return container.pack(container.fingerprint(model), model.example_shape, model.bits,
                              cond, batch_size, len(images), crcs, streams, geometry, names,
                              whole=True)
    tiles = [tiling.cut(image, model.image_size) for image in images]
    repeats = [len(t) for t in tiles]
    tile_cond = {key: np.repeat(value, repeats, axis=0) for key, value in cond.items()}
    crcs, streams = _encode_examples(model, np.concatenate(tiles), tile_cond, batch_size,
                                     progress)
    raw = [image.reshape(-1) for image, n in zip(images, repeats) if not n]
    raw = container.pack_raw(np.concatenate(raw), model.bits) if raw else b""
    return container.pack(container.fingerprint(model), model.example_shape, model.bits, cond,
                          batch_size, sum(repeats), crcs, streams, geometry, names, raw)


@_one_at_a_time
def image_bits(model, image, cond=None):
    """`-log2 p(x)` of one int `(H, W, C)` image as `encode_images` codes it: whole under a
    fully convolutional kind; else its tiles' sum, or `bits` per sub-pixel where it is
    stored raw. `cond`: the image's conditioning, one row."""
    image = _checked_image(model, image, 0)
    if model.fully_convolutional:
        examples, scorer = image[None], coding_model(model)
        set_sample_size(scorer, *image.shape[:2])
    else:
        examples, scorer = tiling.cut(image, model.image_size), model
        if not len(examples):
            return float(image.size * model.bits)
    cond = {key: np.repeat(np.asarray(value), len(examples), axis=0)
            for key, value in _numpy_cond(cond).items()} or None
    return float(sum(-scorer.log_prob(examples[i:i + 64], _rows(cond, i, i + 64) or None)
                     .numpy().sum() for i in range(0, len(examples), 64)) / np.log(2))


def _checked_image(model, image, index):
    image = np.asarray(image)
    if (image.ndim != 3 or image.shape[2] != model.channels or not image.shape[0]
            or not image.shape[1]):
        raise ValueError(f"image {index} has shape {image.shape}; this model codes (H, W, "
                         f"{model.channels}) images of any H, W >= 1.")
    if image.dtype.kind not in "iu":
        raise ValueError(f"image {index} is {image.dtype}; pass integer pixel values.")
    if image.min() < 0 or image.max() >= model.num_values:
        raise ValueError(f"image {index} has values in [{image.min()}, {image.max()}]; this "
                         f"model codes {model.bits}-bit values in [0, {model.num_values - 1}].")
    return image.astype(np.int32)


def _progress_of(progress, done, total):
    """The coder's `progress(coded in this batch)` as the caller's `progress(done, total)`."""
    return None if progress is None else (lambda coded: progress(done + coded, total))


def _encode_examples(model, examples, cond, batch_size, progress):
    """`(crcs, streams)`: one per coding batch of checked int examples."""
    coder_model = coding_model(model)
    total, crcs, streams = examples.size, [], []
    for begin in range(0, len(examples), batch_size):
        end = min(len(examples), begin + batch_size)
        crc, stream = _encode_batch(coder_model, examples[begin:end], _rows(cond, begin, end),
                                    _progress_of(progress, begin * examples[0].size, total))
        crcs.append(crc)
        streams.append(stream)
    return crcs, streams


def _encode_whole(model, images, cond, batch_size, progress):
    """`(crcs, streams)` of whole images (`tiling.whole_batches`) with a fully
    convolutional model."""
    coder_model = coding_model(model)
    total, done, crcs, streams = sum(x.size for x in images), 0, [], []
    for begin, end in tiling.whole_batches([x.shape[:2] for x in images], batch_size):
        set_sample_size(coder_model, *images[begin].shape[:2])
        crc, stream = _encode_batch(coder_model, np.stack(images[begin:end]),
                                    _rows(cond, begin, end), _progress_of(progress, done, total))
        crcs.append(crc)
        streams.append(stream)
        done += images[begin].size * (end - begin)
    return crcs, streams


def _encode_batch(coder_model, chunk, cond, progress):
    """`(crc, stream)` of one coding batch of int examples `chunk` of the coder's shape."""
    raw, draws = coder_model.coding_plan.parts(tf.constant(chunk))
    raw = None if raw is None else np.asarray(raw)
    coder = Encoder(raw, draws, coder_model.num_values, progress)
    out = _coded_sample(coder_model, coder, cond, coder_model.coding_plan.given(raw),
                        len(chunk)).numpy()
    if not np.array_equal(out, chunk):
        raise RuntimeError("the model's sampler did not reproduce the images it coded "
                           "(its coding plan disagrees with its sampler): a bug in spn_tf.")
    return container.crc(chunk), coder.finish()


def _coded_sample(model, coder, cond, given, rows):
    """The model's sampler with `coder` in place of randomness: `rows` examples, in the
    model's own order, its fast loops as plain graphs (the same trace for the encoder and the
    decoder)."""
    return model.run_sampler(tf.zeros([2], tf.int32), tf.ones([rows], tf.float32),
                             model.check_cond(cond, rows), given, mode="coding", coder=coder)


def count(data, model):
    """The number of examples (or, for `encode_images`' files, images) in `data` (checked as
    `decode` checks it)."""
    box = container.parse(data, model, container.fingerprint(model))
    return len(box.geometry) or box.count


def _checked_cond(model, box, cond, rows):
    keys = tuple(sorted(cond or {}))
    if keys != tuple(sorted(box.cond_keys)):
        raise ValueError(f"the file was encoded with conditioning {list(box.cond_keys) or 'none'}"
                         f"; got {list(keys) or 'none'}: pass the cond given to encode.")
    cond = _numpy_cond(model.check_cond(cond, rows))
    if container.cond_digest(cond) != box.cond_digest:
        raise ValueError("the conditioning differs from the one the file was encoded with "
                         "(digest mismatch): pass the cond given to encode, row for row.")
    return cond


@_one_at_a_time
def decode(model, data, cond=None, progress=None):
    """Decompresses what `encode` wrote with the same model.

    Args:
      model: the model that encoded `data` (checked by its fingerprint).
      data: bytes of `encode`.
      cond: the conditioning given to `encode` (checked by its digest).
      progress: as for `encode`.

    Returns:
      int32 `(N, *model.example_shape)`.

    Raises:
      ValueError: another model, a truncated or altered file, other conditioning, or pixels
        that decode differently than they were encoded (another build or machine kind).
    """
    box = container.parse(data, model, container.fingerprint(model))
    if box.geometry:
        raise ValueError("the file holds images of any size (encode_images): decode it with "
                         "decode_images.")
    cond = _checked_cond(model, box, cond, box.count)
    return _decode_examples(model, box, cond, progress)


@_one_at_a_time
def decode_images(model, data, cond=None, progress=None):
    """Decompresses what `encode_images` wrote with the same model.

    Returns:
      `(images, names)`: int32 `(H, W, C)` arrays of the sizes encoded, and their names.

    Raises:
      ValueError: as `decode`.
    """
    box = container.parse(data, model, container.fingerprint(model))
    if not box.geometry:
        raise ValueError("the file holds examples of the model's shape (encode): decode it "
                         "with decode.")
    cond = _checked_cond(model, box, cond, len(box.geometry))
    if box.whole:
        if not model.fully_convolutional:  # (its fingerprint matched: a forged layout)
            raise ValueError("the file's images are coded whole, which this kind cannot do: "
                             "not an spn_tf.codec file of this model.")
        return _decode_whole(model, box, cond, progress), list(box.names)
    size = model.image_size
    repeats = [tiling.count(h, w, size) for h, w in box.geometry]
    tile_cond = {key: np.repeat(value, repeats, axis=0) for key, value in cond.items()}
    tiles = _decode_examples(model, box, tile_cond, progress)
    raw_shapes = [(h, w, model.channels) for (h, w), n in zip(box.geometry, repeats) if not n]
    raw = container.unpack_raw(box.raw, sum(int(np.prod(s)) for s in raw_shapes), model.bits)
    images, begin, raw_begin = [], 0, 0
    for (height, width), n in zip(box.geometry, repeats):
        if n:
            images.append(tiling.paste(tiles[begin:begin + n], height, width, size))
        else:
            values = height * width * model.channels
            images.append(raw[raw_begin:raw_begin + values].reshape(height, width, -1))
            raw_begin += values
        begin += n
    return images, list(box.names)


def _decode_examples(model, box, cond, progress):
    """int32 `(box.count, *model.example_shape)`: the coded examples of a parsed file."""
    coder_model = coding_model(model)
    total = box.count * int(np.prod(model.example_shape))
    chunks = [np.zeros((0, *model.example_shape), np.int32)]
    for index, begin in enumerate(range(0, box.count, box.batch)):
        end = min(box.count, begin + box.batch)
        chunks.append(_decode_batch(coder_model, box, index, begin, end, _rows(cond, begin, end),
                                    _progress_of(progress, total * begin // box.count, total)))
    return np.concatenate(chunks)


def _decode_whole(model, box, cond, progress):
    """The images of a parsed file of whole images."""
    coder_model = coding_model(model)
    total = sum(h * w for h, w in box.geometry) * model.channels
    images, done = [], 0
    for index, (begin, end) in enumerate(tiling.whole_batches(box.geometry, box.batch)):
        set_sample_size(coder_model, *box.geometry[begin])
        out = _decode_batch(coder_model, box, index, begin, end, _rows(cond, begin, end),
                            _progress_of(progress, done, total))
        images += list(out)
        done += out.size
    return images


def _decode_batch(coder_model, box, index, begin, end, cond, progress):
    """int32 `(end - begin, *coder_model.example_shape)`: coding batch `index` of `box`."""
    coder = Decoder(box.streams[index], end - begin, progress)
    raw, _ = coder_model.coding_plan.parts(
        tf.zeros([end - begin, *coder_model.example_shape], tf.int32))
    if raw is not None:
        raw = coder.decode_raw(tuple(raw.shape), coder_model.num_values)
    try:
        out = _coded_sample(coder_model, coder, cond, coder_model.coding_plan.given(raw),
                            end - begin).numpy()
    except (tf.errors.InvalidArgumentError, tf.errors.UnknownError) as error:
        reason = error.message.splitlines()[0]
        raise ValueError(f"examples {begin}-{end - 1} could not be decoded ({reason}).") \
            from None
    if container.crc(out) != box.crcs[index]:
        raise ValueError(
            f"examples {begin}-{end - 1} decoded to other values than were encoded (CRC "
            f"mismatch): the probabilities computed here differ from the encoder's (see "
            f"BUILD_NOTES.md on what decodes the same where), or the file was rewritten under "
            f"a new checksum. Nothing wrong was returned.")
    return out
