"""PNG grids of image batches (TF's PNG codec; no home-made image I/O).

`image_grid` tiles a batch, `write_grid` writes it (PNG or JPEG by the file's extension),
`write_heatmap` writes images beside their per-pixel bits (from `model.log_prob_map`),
`read_image` reads a PNG, JPEG, GIF or BMP back. The CLIs write their samples with these;
in your own code, e.g. `spn_tf.grid.write_grid(model.sample(16, 0), model.bits, "s.png")`.
"""

import os

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


ENCODERS = {".png": tf.io.encode_png, ".jpg": tf.io.encode_jpeg, ".jpeg": tf.io.encode_jpeg}


def check_image_path(path, name="--out"):
    """Refuses a path whose extension names no format we write (before any work is done)."""
    extension = os.path.splitext(path)[1].lower()
    if extension not in ENCODERS:
        raise ValueError(f"{name}={path!r}: the extension picks the format; use one of "
                         f"{sorted(ENCODERS)}.")
    return extension


def _write(grid, path, scale):
    grid = np.repeat(np.repeat(grid, scale, axis=0), scale, axis=1)
    tf.io.write_file(path, ENCODERS[check_image_path(path)](grid))


def write_grid(images, bits, path, scale=4, columns=None):
    """Writes `images` as one grid image (`columns` per row, default about square), each
    pixel enlarged `scale` times (nearest); the format (PNG, or JPEG at its default quality)
    follows the extension of `path`."""
    _write(image_grid(images, bits, columns), path, scale)
    return path


def write_heatmap(images, log_prob_map, bits, path, scale=4):
    """Writes each image beside the bits its pixels cost: one grid, two columns per image.

    Args:
      images: int `(N, H, W, C)` in `[0, 2**bits)`.
      log_prob_map: float `(N, H, W, C)`, `model.log_prob_map(images)` (natural log).
      bits: the images' bit depth.
      path: the PNG (or JPEG) to write.
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
    _write(image_grid(pairs, bits, columns=2 * min(len(images), 4)), path, scale)
    return top


def read_image(path, name="image file"):
    """uint8 `(H, W, C)` from a PNG, JPEG, GIF (first frame) or BMP file.

    Raises:
      ValueError: the file is missing, unreadable or not an image, saying which.
    """
    if not tf.io.gfile.exists(path) or tf.io.gfile.isdir(path):
        raise ValueError(f"{name} {path!r} does not exist (or is a directory).")
    try:
        return tf.io.decode_image(tf.io.read_file(path), expand_animations=False).numpy()
    except (tf.errors.InvalidArgumentError, tf.errors.OpError) as error:
        reason = error.message.strip().splitlines()[0].split("}} ")[-1].split(" [Op:")[0]
        raise ValueError(f"{name} {path!r} could not be read as a PNG, JPEG, GIF or BMP image "
                         f"({reason}).") from None
