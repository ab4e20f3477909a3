"""Orderings: in which steps an image is generated and what each step may see.

Every function here is pure index arithmetic on TensorFlow tensors: vectorised, free of
Python-side data-dependent control flow and so compilable with XLA. Each split has its exact
inverse (`*_merge`); `tests/test_orderings.py` proves the round trips.

Images are `(batch, height, width, channels)` tensors of integers in `[0, 2**bits)`.

Orderings:
  * raster — pixels row by row, channels R, G, B inside a pixel (van den Oord et al. 2016).
  * subscale(S) — the image as S*S slices `x[:, i::S, j::S, :]`; slice `k` sits at offset
    `(k // S, k % S)`; slices come in raster order of their offsets, pixels in raster order
    inside a slice (Menick & Kalchbrenner 2019, §3). Slice 0 is the sub-sampled low resolution
    image, which is what makes size upscaling a continuation of the same ordering.
  * multiscale — a base image at low resolution, then for every doubling the three new pixels
    of each 2x2 block as three groups (Reed et al. 2017, §3). Group order: upper-right (1, 2
    in the paper's numbering after the known upper-left), lower-left, lower-right. We keep the
    paper's order: it alternates a horizontal then a vertical upscaling, so every group has an
    already known neighbour on each side it needs.
  * depth — most significant bits first, then the rest (Menick & Kalchbrenner 2019, §4).

`Ordering` is what a model states about its own ordering (`DensityModel.ordering`), the one
value `spn_tf.check` and the test harness read: no tool asks a model class anything else.
"""

import dataclasses
from typing import Any, Callable, Optional

import numpy as np
import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class Ordering:
    """A model's ordering, as the exactness checks need it.

    Attributes:
      description: one line with the ordering's key numbers (steps, S and slice size, base
        size, top bits), as the model's `repr` shows it.
      order: int `example_shape`: the step at which sampling draws each sub-pixel (-1: given
        to the model rather than drawn by it); None for a composite whose sub-pixels are
        drawn in several steps (its `units` state theirs).
      modelled: bool `example_shape`: the sub-pixels whose terms the model computes (None
        where `order` is).
      units: `((name, model), ...)`: the networks whose orderings are checked one by one (a
        model itself; a composite's networks).
      tiny_config: the config of the same kind on 2x2 images at the fewest bits its head takes
        (fresh weights): the space `spn_tf.check` enumerates for exact normalization.
      reach_probe: `(flat index, what it is)` of a sub-pixel whose reach the receptive-field
        report states besides the average, or None.
      conditioning: `(batch, rng) -> (cond, given)`: random conditioning of `batch` rows of
        what the model takes (numpy) and the `given` content it needs to sample (the same for
        every row; None when it generates from scratch).
    """

    description: str
    order: Optional[np.ndarray]
    modelled: Optional[np.ndarray]
    units: tuple
    tiny_config: dict
    conditioning: Callable[[int, Any], tuple]
    reach_probe: Optional[tuple] = None


def _static_dim(tensor, axis):
    dim = tensor.shape[axis]
    return dim if dim is not None else tf.shape(tensor)[axis]


def raster_flatten(images):
    """Raster order: `(B, H, W, C)` -> `(B, H*W*C)`, row by row, channels inside a pixel."""
    return tf.reshape(images, [_static_dim(images, 0), -1])


def raster_unflatten(sequence, height, width, channels):
    """Inverse of `raster_flatten`: `(B, H*W*C)` -> `(B, H, W, C)`."""
    return tf.reshape(sequence, [_static_dim(sequence, 0), height, width, channels])


def check_subscale_factor(height, width, subscale_factor):
    """Raises `ValueError` unless `subscale_factor` divides both image sides."""
    if subscale_factor < 1 or height % subscale_factor or width % subscale_factor:
        raise ValueError(
            f"subscale_factor={subscale_factor} must be a positive divisor of the image height "
            f"{height} and width {width}; choose S so that H/S and W/S are whole (e.g. a "
            f"32x32 slice: S = H/32).")


def subscale_split(images, subscale_factor):
    """Cuts images into subscale slices.

    Args:
      images: `(B, H, W, C)`, H and W divisible by `subscale_factor` (S).

    Returns:
      `(B, S*S, H/S, W/S, C)`; slice `k` is `images[:, k // S::S, k % S::S, :]`.
    """
    s = subscale_factor
    batch = _static_dim(images, 0)
    height, width, channels = images.shape[1], images.shape[2], images.shape[3]
    check_subscale_factor(height, width, s)
    x = tf.reshape(images, [batch, height // s, s, width // s, s, channels])
    x = tf.transpose(x, [0, 2, 4, 1, 3, 5])
    return tf.reshape(x, [batch, s * s, height // s, width // s, channels])


def subscale_merge(slices, subscale_factor):
    """Inverse of `subscale_split`: `(B, S*S, h, w, C)` -> `(B, h*S, w*S, C)`."""
    s = subscale_factor
    batch = _static_dim(slices, 0)
    h, w, channels = slices.shape[2], slices.shape[3], slices.shape[4]
    x = tf.reshape(slices, [batch, s, s, h, w, channels])
    x = tf.transpose(x, [0, 3, 1, 4, 2, 5])
    return tf.reshape(x, [batch, h * s, w * s, channels])


def meta_position(slice_index, subscale_factor):
    """The meta-position of a slice: its offset `(row, col)` inside the S x S block.

    Args:
      slice_index: int32 tensor of any shape, values in `[0, S*S)`.

    Returns:
      int32 tensor `slice_index.shape + (2,)` holding `(k // S, k % S)`.
    """
    k = tf.convert_to_tensor(slice_index, tf.int32)
    return tf.stack([k // subscale_factor, k % subscale_factor], axis=-1)


def multiscale_num_scales(image_size, base_size):
    """Number of resolution doublings from `base_size` to `image_size` (both powers of 2 apart)."""
    if base_size < 1 or image_size < base_size:
        raise ValueError(f"base_size={base_size} must be in [1, image_size={image_size}].")
    scales, size = 0, base_size
    while size < image_size:
        size *= 2
        scales += 1
    if size != image_size:
        raise ValueError(
            f"image_size={image_size} must be base_size={base_size} times a power of 2 for the "
            f"multiscale ordering (e.g. base 4 or 8 for 32, 64, 128).")
    return scales


def multiscale_split(images, base_size):
    """Cuts images into a base image and three groups per resolution doubling.

    At a scale of resolution `2r`, with `x` the image at that resolution, the lower resolution
    image is `x[:, 0::2, 0::2]` (the upper-left of each 2x2 block) and the groups are
    1: `x[:, 0::2, 1::2]` (upper-right), 2: `x[:, 1::2, 0::2]` (lower-left),
    3: `x[:, 1::2, 1::2]` (lower-right).

    Args:
      images: `(B, N, N, C)` with N = base_size * 2**L.

    Returns:
      `(base, groups)`: base `(B, base_size, base_size, C)`; `groups` a list of L tensors,
      coarse to fine, the one at resolution `2r` of shape `(B, 3, r, r, C)`.
    """
    num_scales = multiscale_num_scales(images.shape[1], base_size)
    groups = []
    x = images
    for _ in range(num_scales):
        groups.append(tf.stack([x[:, 0::2, 1::2], x[:, 1::2, 0::2], x[:, 1::2, 1::2]], axis=1))
        x = x[:, 0::2, 0::2]
    return x, groups[::-1]


def upscale_with_groups(low_res, groups):
    """One doubling of the multiscale ordering.

    Args:
      low_res: `(B, r, r, C)`, the upper-left pixels of each 2x2 block.
      groups: `(B, 3, r, r, C)`: upper-right, lower-left, lower-right.

    Returns:
      `(B, 2r, 2r, C)`.
    """
    top = tf.stack([low_res, groups[:, 0]], axis=3)      # (B, r, r, 2, C): columns 0, 1
    bottom = tf.stack([groups[:, 1], groups[:, 2]], axis=3)
    blocks = tf.stack([top, bottom], axis=2)             # (B, r, 2, r, 2, C)
    batch = _static_dim(low_res, 0)
    r, channels = low_res.shape[1], low_res.shape[3]
    return tf.reshape(blocks, [batch, 2 * r, 2 * r, channels])


def multiscale_merge(base, groups):
    """Inverse of `multiscale_split`."""
    x = base
    for scale_groups in groups:
        x = upscale_with_groups(x, scale_groups)
    return x


def check_depth_split(bits, msb_bits, name="msb_bits"):
    """Refuses a split that leaves no high or no low bits; `name` is the caller's argument."""
    if not 0 < msb_bits < bits:
        raise ValueError(
            f"depth split {name}={msb_bits} must be in [1, bits-1] for bits={bits} "
            f"(the paper uses 3 of 8; pass {name}=None for no depth upscaling).")


def depth_split(images, bits=8, msb_bits=3):
    """Depth ordering: most significant bits first.

    Args:
      images: integers in `[0, 2**bits)`.

    Returns:
      `(msb, lsb)`: `images >> (bits - msb_bits)` in `[0, 2**msb_bits)` and the remaining
      `bits - msb_bits` low bits in `[0, 2**(bits - msb_bits))`.
    """
    check_depth_split(bits, msb_bits)
    lsb_bits = bits - msb_bits
    images = tf.convert_to_tensor(images)
    return images // (2 ** lsb_bits), images % (2 ** lsb_bits)


def depth_merge(msb, lsb, bits=8, msb_bits=3):
    """Inverse of `depth_split`."""
    check_depth_split(bits, msb_bits)
    return msb * (2 ** (bits - msb_bits)) + lsb


def reduce_bits(images, bits, from_bits=8):
    """Keeps the `bits` most significant bits: `[0, 2**from_bits)` -> `[0, 2**bits)`.

    The 5-bit CelebA-HQ setting of Kingma & Dhariwal 2018 and Menick & Kalchbrenner 2019.
    """
    if not 1 <= bits <= from_bits:
        raise ValueError(f"bits={bits} must be in [1, {from_bits}].")
    images = tf.convert_to_tensor(images)
    return images // (2 ** (from_bits - bits))
