"""Lossless compression with a model's exact likelihood: `encode(model, images) -> bytes`,
`decode(model, data) -> images`.

An image costs about `-log2 p(x)` bits (the model's likelihood) plus its share of the
container's header (`spn_tf.codec.container`) and of its coding batch's table entry and
coder flush (about 10 bytes a batch). Coding runs the model's own sampler with a range coder
in place of randomness (`run_sampler(mode="coding")`, `spn_tf.codec.entropy`): the decoder follows the model's order (raster pixel by pixel with
the cached loop, an SPN slice by slice, multiscale group by group in O(log N) network calls,
video frame by frame), and the encoder runs the very same loop, fed the true values, so both
compute the same probabilities from the same graph, batch layout and order. That makes the
round trip exact on the same build and machine kind (BUILD_NOTES.md says what is and is not
guaranteed); a CRC-32 of each coding batch's pixels turns any difference into an error,
never into wrong pixels.
"""

import weakref

import keras
import numpy as np
import tensorflow as tf

from spn_tf import sampling
from spn_tf.codec import container
from spn_tf.codec.entropy import Decoder, Encoder

DEFAULT_BATCH = 16
_COPIES = weakref.WeakKeyDictionary()  # model -> (its fingerprint, its float64 copy)


def coding_model(model):
    """The float64 copy of `model` (same config and weights) that codes for it: its logits
    differ between builds and thread settings by ~1e-15, not float32's ~1e-6, which is what
    lets `spn_tf.codec.tables` give every machine the same tables. Made once per model and
    weights (`container.fingerprint`)."""
    model.build()
    key = container.fingerprint(model)
    cached = _COPIES.get(model)
    if cached is not None and cached[0] == key:
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


def encode(model, images, cond=None, batch_size=DEFAULT_BATCH, progress=None):
    """Compresses examples losslessly.

    Args:
      model: an spn_tf model (any kind).
      images: int `(N, *model.example_shape)` in `[0, 2**model.bits)` (clips for video).
      cond: the conditioning the model takes, N rows (decoding needs the same).
      batch_size: examples coded together (the decoder uses the same layout).
      progress: None or `progress(values coded so far)`, every few seconds.

    Returns:
      bytes: the container (`spn_tf.codec.container`).
    """
    images, cond = model.check_inputs(images, cond)
    if not 1 <= batch_size < sampling.MAX_CODED_ROWS:
        raise ValueError(f"batch_size must be in [1, {sampling.MAX_CODED_ROWS}), got "
                         f"{batch_size}.")
    images = images.numpy()
    cond = _numpy_cond(cond)
    coder_model = coding_model(model)
    streams, crcs = [], []
    for begin in range(0, len(images), batch_size):
        chunk = images[begin:begin + batch_size]
        raw, draws = coder_model.coding_plan.parts(tf.constant(chunk))
        raw = None if raw is None else np.asarray(raw)
        coder = Encoder(raw, draws, model.num_values, progress)
        out = _coded_sample(coder_model, coder, _rows(cond, begin, begin + len(chunk)),
                            coder_model.coding_plan.given(raw), len(chunk)).numpy()
        if not np.array_equal(out, chunk):
            raise RuntimeError("the model's sampler did not reproduce the images it coded "
                               "(its coding plan disagrees with its sampler): a bug in spn_tf.")
        streams.append(coder.finish())
        crcs.append(container.crc(chunk))
    return container.pack(container.fingerprint(model), model.example_shape, model.bits, cond,
                          batch_size, len(images), crcs, streams)


def _coded_sample(model, coder, cond, given, rows):
    """The model's sampler with `coder` in place of randomness: `rows` examples, in the
    model's own order, its fast loops as plain graphs (the same trace for the encoder and the
    decoder)."""
    return model.run_sampler(tf.zeros([2], tf.int32), tf.ones([rows], tf.float32),
                             model.check_cond(cond, rows), given, mode="coding", coder=coder)


def count(data, model):
    """The number of examples in `data` (checked as `decode` checks it)."""
    return container.parse(data, model, container.fingerprint(model)).count


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
    count = box.count
    keys = tuple(sorted(cond or {}))
    if keys != tuple(sorted(box.cond_keys)):
        raise ValueError(f"the file was encoded with conditioning {list(box.cond_keys) or 'none'}"
                         f"; got {list(keys) or 'none'}: pass the cond given to encode.")
    cond = _numpy_cond(model.check_cond(cond, count))
    if container.cond_digest(cond) != box.cond_digest:
        raise ValueError("the conditioning differs from the one the file was encoded with "
                         "(digest mismatch): pass the cond given to encode, row for row.")
    coder_model = coding_model(model)
    chunks = []
    for index, begin in enumerate(range(0, count, box.batch)):
        end = min(count, begin + box.batch)
        coder = Decoder(box.streams[index], end - begin, progress)
        raw, _ = coder_model.coding_plan.parts(
            tf.zeros([end - begin, *model.example_shape], tf.int32))
        if raw is not None:
            raw = coder.decode_raw(tuple(raw.shape), model.num_values)
        try:
            out = _coded_sample(coder_model, coder, _rows(cond, begin, end),
                                coder_model.coding_plan.given(raw), end - begin).numpy()
        except (tf.errors.InvalidArgumentError, tf.errors.UnknownError) as error:
            reason = error.message.splitlines()[0]
            raise ValueError(f"examples {begin}-{end - 1} could not be decoded ({reason}).") \
                from None
        if container.crc(out) != box.crcs[index]:
            raise ValueError(
                f"examples {begin}-{end - 1} decoded to other values than were encoded (CRC "
                f"mismatch): the probabilities computed here differ from the encoder's "
                f"(the round trip is exact on the same spn_tf build and machine kind; see "
                f"BUILD_NOTES.md), or the file was rewritten under a new checksum. Nothing "
                f"wrong was returned.")
        chunks.append(out)
    return np.concatenate(chunks)
