"""The `spn_tf.codec` file: a short header, one coded stream per coding batch, a checksum.

Layout (little-endian; varints are LEB128, 7 bits a byte; read with `struct` and `_varint`
only: no pickle, nothing executed):

    magic b"SPNC" | version u8 | model fingerprint 16 B
    | rank u8 | example shape: rank varints | bits u8
    | conditioning keys u8 (bit mask of COND_KEYS) | conditioning digest 8 B (only if any key)
    | coding batch varint | examples varint
    | images varint: 0 for examples of the model's shape (`encode`), else a layout u8 (0:
      tiles, 1: whole images; `spn_tf.codec.tiling`) and per image (of any size:
      `encode_images`) its height, width and name length varints and its name (UTF-8)
    | per coding batch: stream words varint, CRC-32 of the batch's pixels u32
    | the streams (32-bit words)
    | raw values: the images with no tile (`spn_tf.codec.tiling`), `bits` bits a value
    | SHA-256 of everything before, first 8 B

The examples of an images file are the tiles of its images, in order, or the images whole.
An unconditioned file of 32x32x3 examples costs 38 bytes of header and checksum, plus per coding batch ~6 bytes of
table and the coder's flush of 4-8 bytes (`header_bytes`); a file of images adds 3 bytes and
its name per image, and 1 byte; the conditioning digest adds 8 bytes to a conditioned file.
Reading checks, in order: the length and checksum (a truncated or altered file), the magic
and version, the example shape and bits against the model's, the fingerprint, the
conditioning; the stream sizes must add up to the file's length, so a header can claim no
more batches than its bytes hold, and decoding allocates one coding batch of the model's
own example shape at a time. A batch whose pixels decode to another CRC is refused whole.
"""

import dataclasses
import hashlib
import json
import struct
import zlib

import numpy as np

from spn_tf.codec import tiling
from spn_tf.inputs import COND_KEYS  # bit i of the conditioning-keys byte is COND_KEYS[i]

MAGIC = b"SPNC"
VERSION = 3
_CHECKSUM = 8
_HEAD = struct.Struct("<4sB16sB")
_DIGEST = 8
MAX_BATCH = 2 ** 16  # sampling.MAX_CODED_ROWS: rows a coding batch may have


@dataclasses.dataclass
class Container:
    """A parsed file: what `spn_tf.codec.decode` needs."""

    fingerprint: bytes
    example_shape: tuple
    bits: int
    cond_keys: tuple
    cond_digest: bytes
    batch: int
    count: int
    crcs: list  # one per coding batch
    streams: list  # one per coding batch
    geometry: tuple = ()  # images files: (height, width) per image
    whole: bool = False  # images files: coded whole (else as tiles)
    names: tuple = ()  # images files: a name per image ("" for none)
    raw: bytes = b""  # images files: the raw values of the images with no tile


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


def crc(examples):
    """CRC-32 of int examples' values (as bytes: every value is below 256)."""
    return zlib.crc32(np.ascontiguousarray(examples, np.uint8).tobytes())


def _varint(value):
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _read_varint(body, offset):
    """`(value, offset after it)`; a ValueError past the body's end or beyond 64 bits."""
    value = 0
    for shift in range(0, 64, 7):
        if offset >= len(body):
            raise ValueError("the header ends inside a number: truncated or not an "
                             "spn_tf.codec file.")
        byte = body[offset]
        offset += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, offset
    raise ValueError("the header holds a number longer than 64 bits: not an spn_tf.codec file.")


def _geometry_bytes(geometry, names, whole=False):
    if not geometry:
        return _varint(0)
    return _varint(len(geometry)) + bytes([int(whole)]) + b"".join(
        _varint(height) + _varint(width) + _varint(len(name.encode())) + name.encode()
        for (height, width), name in zip(geometry, names))


def header_bytes(example_shape, cond, batch, count, streams=None, geometry=(), names=()):
    """Bytes of a file besides the coded values' words and raw values: header, table,
    checksum (`streams`: the batches' word counts, default one word each for the table's
    size; `geometry`, `names`: an images file's)."""
    batches = -(-count // batch)
    streams = streams or [1] * batches
    table = sum(len(_varint(words)) + 4 for words in streams)
    return (_HEAD.size + sum(len(_varint(d)) for d in example_shape) + 2
            + (_DIGEST if cond else 0) + len(_varint(batch)) + len(_varint(count))
            + len(_geometry_bytes(geometry, names or [""] * len(geometry))) + table
            + _CHECKSUM)


def raw_bytes(geometry, channels, bits, size, whole=False):
    """Bytes of the raw values of the images of `geometry` with no tile of `size`."""
    if whole:
        return 0
    values = sum(h * w * channels for h, w in geometry if not tiling.count(h, w, size))
    return -(-values * bits // 8)


def pack_raw(values, bits):
    """int values `(n,)` below `2**bits` as `bits` bits each, most significant first."""
    bits_of = (np.asarray(values, np.uint8)[:, None] >> np.arange(bits - 1, -1, -1)) & 1
    return np.packbits(bits_of.astype(np.uint8).reshape(-1)).tobytes()


def unpack_raw(data, count, bits):
    """int32 `(count,)`: the values of `pack_raw`."""
    bits_of = np.unpackbits(np.frombuffer(data, np.uint8))[:count * bits].reshape(count, bits)
    return (bits_of.astype(np.int32) << np.arange(bits - 1, -1, -1)).sum(axis=1, dtype=np.int32)


def pack(model_fingerprint, example_shape, bits, cond, batch, count, crcs, streams,
         geometry=(), names=(), raw=b"", whole=False):
    """The file's bytes: `count` examples coded in batches of `batch`, one stream and one
    CRC-32 (`crc` of the batch's examples) per batch; for an images file, their `geometry`,
    `names`, `raw` values (`pack_raw`) and layout (`whole`)."""
    mask = sum(1 << COND_KEYS.index(key) for key in cond or {})
    parts = [_HEAD.pack(MAGIC, VERSION, model_fingerprint, len(example_shape)),
             b"".join(_varint(d) for d in example_shape), bytes([bits, mask]),
             cond_digest(cond) if mask else b"", _varint(batch), _varint(count),
             _geometry_bytes(geometry, names or [""] * len(geometry), whole)]
    parts += [_varint(len(s) // 4) + struct.pack("<I", c) for s, c in zip(streams, crcs)]
    body = b"".join(parts + list(streams) + [raw])
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
    minimum = _HEAD.size + 5 + _CHECKSUM
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
    if rank > 8:
        raise ValueError(f"the header's example rank {rank} does not fit the file.")
    offset, shape = _HEAD.size, []
    for _ in range(rank):
        dim, offset = _read_varint(body, offset)
        shape.append(dim)
    if offset + 2 > len(body):
        raise ValueError("the header is truncated: not an spn_tf.codec file.")
    bits, mask = body[offset], body[offset + 1]
    offset += 2
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
    digest = bytes(_DIGEST)
    if mask:
        digest, offset = body[offset:offset + _DIGEST], offset + _DIGEST
    batch, offset = _read_varint(body, offset)
    count, offset = _read_varint(body, offset)
    geometry, names, whole, offset = _read_geometry(body, offset)
    batches = -(-count // batch) if batch else 0
    if whole and batch:
        batches = len(tiling.whole_batches(geometry, batch))
    # Each batch takes at least 5 bytes of table: a count the bytes cannot hold is refused
    # before anything is allocated for it.
    if (not 1 <= batch < MAX_BATCH or count < (0 if geometry else 1)
            or offset + 5 * batches > len(body)):
        raise ValueError(f"the header's {count} examples (coding batch {batch}) do not fit "
                         f"the file's {len(data)} bytes.")
    if geometry and (len(shape) != 3 or count != (len(geometry) if whole else sum(
            tiling.count(height, width, shape[0]) for height, width in geometry))):
        raise ValueError("the header's images do not cut into its examples: not an "
                         "spn_tf.codec file.")
    sizes, crcs = [], []
    for _ in range(batches):
        words, offset = _read_varint(body, offset)
        if offset + 4 > len(body):
            raise ValueError("the header's stream sizes do not add up to the file's length.")
        sizes.append(4 * words)
        crcs.append(struct.unpack_from("<I", body, offset)[0])
        offset += 4
    raw = raw_bytes(geometry, shape[-1], bits, shape[0], whole) if geometry else 0
    if offset + sum(sizes) + raw != len(body):
        raise ValueError("the header's stream sizes do not add up to the file's length.")
    streams = []
    for size in sizes:
        streams.append(body[offset:offset + size])
        offset += size
    keys = tuple(key for i, key in enumerate(COND_KEYS) if mask >> i & 1)
    return Container(stored_fingerprint, tuple(shape), bits, keys, digest, batch, count, crcs,
                     streams, tuple(geometry), whole, tuple(names), body[offset:])


def _read_geometry(body, offset):
    """`(geometry, names, whole, offset after them)`; checks that the tiles add up to the
    examples is the caller's."""
    images, offset = _read_varint(body, offset)
    if offset + 1 + 3 * images > len(body):  # each image takes at least 3 bytes
        raise ValueError(f"the header's {images} images do not fit the file's bytes.")
    if not images:
        return [], [], False, offset
    whole, offset = body[offset], offset + 1
    if whole > 1:
        raise ValueError(f"the header's image layout {whole} is not one of spn_tf.codec's.")
    geometry, names = [], []
    for _ in range(images):
        height, offset = _read_varint(body, offset)
        width, offset = _read_varint(body, offset)
        length, offset = _read_varint(body, offset)
        if not height or not width or offset + length > len(body):
            raise ValueError("the header's image sizes are not those of an spn_tf.codec file.")
        try:
            names.append(body[offset:offset + length].decode("utf-8"))
        except UnicodeDecodeError:
            raise ValueError("the header's image names are not UTF-8: not an spn_tf.codec "
                             "file.") from None
        geometry.append((height, width))
        offset += length
    return geometry, names, bool(whole), offset
