"""PNG grids of image batches (TF's PNG codec; no home-made image I/O)."""

import math

import numpy as np
import tensorflow as tf


def image_grid(images, bits, columns=None, pad=1):
    """Tiles `(N, H, W, C)` images in `[0, 2**bits)` into one uint8 `(rows*H', cols*W', C)`."""
    images = np.asarray(images)
    n, h, w, c = images.shape
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    scaled = np.round(images.astype(np.float64) * 255.0 / (2 ** bits - 1)).astype(np.uint8)
    grid = np.full((rows * (h + pad) + pad, columns * (w + pad) + pad, c), 255, np.uint8)
    for k in range(n):
        r, col = divmod(k, columns)
        top, left = pad + r * (h + pad), pad + col * (w + pad)
        grid[top:top + h, left:left + w] = scaled[k]
    return grid


def write_png_grid(images, bits, path, scale=4):
    """Writes `images` as a PNG grid, each pixel enlarged `scale` times (nearest)."""
    grid = image_grid(images, bits)
    grid = np.repeat(np.repeat(grid, scale, axis=0), scale, axis=1)
    tf.io.write_file(path, tf.io.encode_png(grid))
    return path


def read_png(path):
    """uint8 `(H, W, C)` from a PNG/JPEG file, with a clear error if it is missing."""
    if not tf.io.gfile.exists(path):
        raise ValueError(f"image file {path!r} does not exist.")
    return tf.io.decode_image(tf.io.read_file(path), expand_animations=False).numpy()
