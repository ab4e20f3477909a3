"""Real file sizes of lossless classical codecs for uint8 images (the learned codec's baselines).

Each codec runs lossless at its strongest setting, and every result is decoded and compared
exactly with the input (`sizes` raises if a codec is not lossless). Sizes are whole files,
headers included:

- "PNG": Pillow, `optimize=True, compress_level=9` (zlib, best filter/strategy search).
- "WebP lossless": Pillow, `lossless=True, quality=100, method=6` (quality is the effort
  in lossless mode; method 6 is the slowest, best). WebP has no grayscale mode: Pillow stores
  a 2-D image as RGB with equal channels, which the check takes into account.
- "JPEG XL lossless": imagecodecs (libjxl), `jpegxl_encode(lossless=True, effort=10)`, a bare
  codestream (no container); effort 10 is the highest libjxl takes without expert options
  (imagecodecs >= 2024.6 passes it through; older ones clamp to 9). Grayscale goes in as a 2-D array.
- FLIF: no pip package provides it (no imagecodecs release ever had it), so it is left out.

`mosaic` tiles many equal-size images into one near-square image: one file for many small
images, the classical codecs' best case (one header, and context learned over all of them).

Self-check: `python benchmarks/classical.py` prints bits per sub-pixel on the embedded test
crops, one file per image and one mosaic of them all.
"""

import functools
import io
import math

import numpy as np
import PIL
from PIL import Image, features

try:
    import imagecodecs
except ImportError:  # an optional benchmark dependency (the `bench` extra)
    imagecodecs = None


def _pillow(image, **options):
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, **options)
    data = buffer.getvalue()
    with Image.open(io.BytesIO(data)) as decoded:
        decoded = np.asarray(decoded)
    if image.ndim == 2 and decoded.ndim == 3:  # WebP: gray stored as RGB
        if not all(np.array_equal(decoded[..., c], decoded[..., 0]) for c in range(3)):
            return data, decoded
        decoded = decoded[..., 0]
    return data, decoded


def _jxl(image):
    data = imagecodecs.jpegxl_encode(image, lossless=True, effort=10, numthreads=1)
    return data, imagecodecs.jpegxl_decode(data)


CODECS = {  # name -> (encode: image -> (bytes, decoded), version)
    "PNG": (lambda x: _pillow(x, format="PNG", optimize=True, compress_level=9),
            lambda: f"Pillow {PIL.__version__}, zlib {features.version('zlib')}"),
    "WebP lossless": (lambda x: _pillow(x, format="WEBP", lossless=True, quality=100, method=6),
                      lambda: f"Pillow {PIL.__version__}, libwebp {features.version('webp')}"),
}
if imagecodecs is not None:
    CODECS["JPEG XL lossless"] = (
        _jxl, lambda: f"imagecodecs {imagecodecs.__version__}, {imagecodecs.jpegxl_version()}")


def _prepare(image):
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"images must be uint8, got {image.dtype}")
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.ndim != 2 and not (image.ndim == 3 and image.shape[-1] == 3):
        raise ValueError(f"images must be (H, W), (H, W, 1) or (H, W, 3), got {image.shape}")
    return np.ascontiguousarray(image)


@functools.lru_cache(maxsize=None)
def available():
    """Name -> version string of each codec that encodes and decodes losslessly here."""
    probe = np.arange(8 * 8 * 3, dtype=np.uint8).reshape(8, 8, 3)
    found = {}
    for name, (encode, version) in CODECS.items():
        try:
            ok = all(np.array_equal(encode(x)[1], x) for x in (probe, probe[..., 1].copy()))
        except Exception:  # a codec missing from this build
            ok = False
        if ok:
            found[name] = version()
    return found


def sizes(image):
    """Name -> file bytes of `image` for every available codec, each checked lossless."""
    image = _prepare(image)
    result = {}
    for name in available():
        data, decoded = CODECS[name][0](image)
        if decoded.shape != image.shape or not np.array_equal(decoded, image):
            raise RuntimeError(f"{name} did not decode to the image it encoded")
        result[name] = len(data)
    return result


def mosaic(images, columns=None):
    """Equal-size images `(N, H, W[, C])` tiled row-major into one uint8 image.

    `columns` defaults to N / d for the largest divisor d <= sqrt(N) (no padding, columns >=
    rows), or to ceil(sqrt(N)) where that grid would be over twice as wide as high; the
    last row is then padded with zero tiles.
    """
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim not in (3, 4):
        raise ValueError(f"images must be uint8 (N, H, W[, C]), got {images.dtype} {images.shape}")
    n = len(images)
    if columns is None:
        rows = max(d for d in range(1, math.isqrt(n) + 1) if n % d == 0)
        columns = n // rows
        if columns > 2 * rows:
            columns = math.ceil(math.sqrt(n))
    rows = -(-n // columns)
    padded = np.zeros((rows * columns,) + images.shape[1:], np.uint8)
    padded[:n] = images
    tiles = padded.reshape((rows, columns) + images.shape[1:])
    tiles = np.moveaxis(tiles, 2, 1)  # (rows, H, columns, W[, C])
    return tiles.reshape((rows * images.shape[1], columns * images.shape[2]) + images.shape[3:])


if __name__ == "__main__":
    from spn_tf import data

    photos, _ = data.embedded_arrays("test", 32)
    tiled = mosaic(photos)
    columns = tiled.shape[1] // 32
    assert np.array_equal(tiled[32:64, 64:96], photos[columns + 2])  # tile (row 1, column 2)
    subpixels = photos.size
    per_image = {}
    for photo in photos:
        for name, size in sizes(photo).items():
            per_image[name] = per_image.get(name, 0) + size
    together = sizes(tiled)
    distinct = len(np.unique(photos.reshape(len(photos), -1), axis=0))
    print(f"{len(photos)} test crops {photos.shape[1:]} ({distinct} distinct; they overlap, "
          f"which a mosaic exploits), mosaic {tiled.shape}; bits per sub-pixel "
          "(file bytes * 8 / sub-pixels)")
    for name, version in available().items():
        print(f"{name:18s} per image {per_image[name] * 8 / subpixels:.4f}   "
              f"mosaic {together[name] * 8 / subpixels:.4f}   ({version})")
