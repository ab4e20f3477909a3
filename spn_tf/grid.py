"""PNG grids of image batches (TF's PNG codec; no home-made image I/O).

`image_grid` tiles a batch, `write_png_grid` writes it, `write_heatmap` writes images beside
their per-pixel bits (from `model.log_prob_map`), `read_png` reads a PNG or JPEG back.
"""

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


def write_heatmap(images, log_prob_map, bits, path, scale=4):
    """Writes each image beside the bits its pixels cost: one grid, two columns per image.

    Args:
      images: int `(N, H, W, C)` in `[0, 2**bits)`.
      log_prob_map: float `(N, H, W, C)`, `model.log_prob_map(images)` (natural log).
      bits: the images' bit depth.
      path: the PNG to write.
      scale: each pixel enlarged this many times.

    Returns:
      The largest per-pixel cost in bits: white in the heat map (black is 0 bits).
    """
    images = np.asarray(images)
    cost = -np.asarray(log_prob_map, np.float64).sum(axis=-1) / math.log(2)  # (N, H, W)
    top = max(float(cost.max()), 1e-9)
    levels = 2 ** bits - 1
    heat = np.round(cost / top * levels).astype(np.int64)[..., None]
    heat = np.repeat(heat, images.shape[-1], axis=-1)
    pairs = np.stack([images, heat], axis=1).reshape((-1,) + images.shape[1:])
    grid = image_grid(pairs, bits, columns=2 * min(len(images), 4))
    grid = np.repeat(np.repeat(grid, scale, axis=0), scale, axis=1)
    tf.io.write_file(path, tf.io.encode_png(grid))
    return top


def read_png(path):
    """uint8 `(H, W, C)` from a PNG/JPEG file, with a clear error if it is missing."""
    if not tf.io.gfile.exists(path):
        raise ValueError(f"image file {path!r} does not exist.")
    return tf.io.decode_image(tf.io.read_file(path), expand_animations=False).numpy()
