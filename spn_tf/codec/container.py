"""The `spn_tf.codec` file: a short header, one coded stream per example, a checksum.

Layout (little-endian, read with `struct` only: no pickle, nothing executed):

    magic b"SPNC" | version u8 | model fingerprint 16 B
    | rank u8 | example shape rank x u16 | bits u8
    | conditioning keys u8 (bit mask of COND_KEYS) | conditioning digest 8 B
    | coding batch u16 | examples u32
    | per example: stream bytes u32, pixel CRC-32 u32
    | the streams | SHA-256 of everything before, first 8 B

Reading checks, in order: the length and checksum (a truncated or altered file), the magic
and version, the example shape and bits against the model's, the fingerprint, the
conditioning; the sizes must add up to the file's length, so a header can claim no more
examples than its bytes hold, and decoding allocates one coding batch of the model's own
example shape at a time.
"""

import dataclasses
import hashlib
import json
import struct
import zlib

import numpy as np

from spn_tf.inputs import COND_KEYS  # bit i of the conditioning-keys byte is COND_KEYS[i]

MAGIC = b"SPNC"
VERSION = 1
_CHECKSUM = 8
_HEAD = struct.Struct("<4sB16sB")
_TAIL = struct.Struct("<BB8sHI")
_ENTRY = struct.Struct("<II")


@dataclasses.dataclass
class Container:
    """A parsed file: what `spn_tf.codec.decode` needs."""

    fingerprint: bytes
    example_shape: tuple
    bits: int
    cond_keys: tuple
    cond_digest: bytes
    batch: int
    crcs: list
    streams: list


def fingerprint(model):
    """16 bytes that change with the architecture, the compute dtype or any weight: SHA-256
    of the model's config (without its instance name), its compute dtype and every weight's
    shape, dtype and bytes."""
    config = {k: v for k, v in model.get_config().items() if k != "name"}
    digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode())
    digest.update(model.compute_dtype.encode())
    for weight in model.weights:
        value = np.ascontiguousarray(weight.numpy())
        digest.update(f"{value.shape}{value.dtype.str}".encode())
        digest.update(value.tobytes())
    return digest.digest()[:16]


def cond_digest(cond):
    """8 bytes of SHA-256 over the conditioning of every example (keys, dtypes, shapes, values;
    captions as length-prefixed UTF-8); zeros for none."""
    if not cond:
        return bytes(8)
    digest = hashlib.sha256()
    for key in sorted(cond):
        value = np.asarray(cond[key])
        digest.update(f"{key}{value.shape}".encode())
        if value.dtype.kind in "OSU":
            for text in value.reshape(-1):
                text = text if isinstance(text, bytes) else str(text).encode("utf-8")
                digest.update(struct.pack("<I", len(text)) + text)
        else:
            digest.update(value.dtype.str.encode() + np.ascontiguousarray(value).tobytes())
    return digest.digest()[:8]


def crc(example):
    """CRC-32 of an int example's values (as bytes: every value is below 256)."""
    return zlib.crc32(np.ascontiguousarray(example, np.uint8).tobytes())


def pack(model_fingerprint, example_shape, bits, cond, batch, crcs, streams):
    """The file's bytes."""
    mask = sum(1 << COND_KEYS.index(key) for key in cond or {})
    parts = [_HEAD.pack(MAGIC, VERSION, model_fingerprint, len(example_shape)),
             struct.pack(f"<{len(example_shape)}H", *example_shape),
             _TAIL.pack(bits, mask, cond_digest(cond), batch, len(streams))]
    parts += [_ENTRY.pack(len(s), c) for s, c in zip(streams, crcs)]
    body = b"".join(parts + list(streams))
    return body + hashlib.sha256(body).digest()[:_CHECKSUM]


def parse(data, model, model_fingerprint):
    """A `Container` of `data`, checked against `model` (see the module doc).

    Raises:
      ValueError: what is wrong and what to do.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ValueError(f"data must be the bytes encode returned (or a file's contents), got "
                         f"{type(data).__name__}.")
    data = bytes(data)
    minimum = _HEAD.size + _TAIL.size + _CHECKSUM
    if len(data) < minimum:
        raise ValueError(f"the data is {len(data)} bytes, shorter than any spn_tf.codec file "
                         f"({minimum}): truncated, or not such a file.")
    body, checksum = data[:-_CHECKSUM], data[-_CHECKSUM:]
    magic, version, stored_fingerprint, rank = _HEAD.unpack_from(body)
    if magic != MAGIC:
        raise ValueError(f"not an spn_tf.codec file (it starts with {magic!r}, not {MAGIC!r}).")
    if hashlib.sha256(body).digest()[:_CHECKSUM] != checksum:
        raise ValueError("the file's checksum does not match its contents: it was truncated or "
                         "altered after encoding; nothing was decoded.")
    if version != VERSION:
        raise ValueError(f"spn_tf.codec format version {version}; this spn_tf reads version "
                         f"{VERSION}: decode it with the spn_tf that wrote it.")
    offset = _HEAD.size
    if rank > 8 or len(body) < offset + 2 * rank + _TAIL.size:
        raise ValueError(f"the header's example rank {rank} does not fit the file.")
    shape = struct.unpack_from(f"<{rank}H", body, offset)
    offset += 2 * rank
    bits, mask, digest, batch, count = _TAIL.unpack_from(body, offset)
    offset += _TAIL.size
    if tuple(shape) != tuple(model.example_shape) or bits != model.bits:
        raise ValueError(
            f"the file holds {'x'.join(map(str, shape))} examples at {bits} bits; this model "
            f"codes {'x'.join(map(str, model.example_shape))} at {model.bits} bits: decode "
            f"with the model that encoded it.")
    if stored_fingerprint != model_fingerprint:
        raise ValueError(
            f"the file was encoded with another model (fingerprint {stored_fingerprint.hex()}; "
            f"this model's is {model_fingerprint.hex()}: other weights, architecture or "
            f"compute dtype): decode with the model that encoded it.")
    if batch < 1 or count < 1 or offset + count * _ENTRY.size > len(body):
        raise ValueError(f"the header's {count} examples (coding batch {batch}) do not fit "
                         f"the file's {len(data)} bytes.")
    entries = [_ENTRY.unpack_from(body, offset + i * _ENTRY.size) for i in range(count)]
    offset += count * _ENTRY.size
    if offset + sum(size for size, _ in entries) != len(body) or any(
            size % 4 for size, _ in entries):
        raise ValueError("the header's stream sizes do not add up to the file's length.")
    streams = []
    for size, _ in entries:
        streams.append(body[offset:offset + size])
        offset += size
    keys = tuple(key for i, key in enumerate(COND_KEYS) if mask >> i & 1)
    return Container(stored_fingerprint, tuple(shape), bits, keys, digest, batch,
                     [c for _, c in entries], streams)
