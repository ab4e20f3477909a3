"""Images of any size as tiles of a model's size: where the codec cuts them (pure functions).

Along each axis of length `L`, tiles of the model's size `s` start at `0, s, 2s, ...`; where
`s` does not divide `L`, one more tile starts at `L - s`, overlapping the one before it. So a
model never sees padding: every tile holds only the image's own pixels. The price is that the
overlap (fewer than `s` rows or columns) is coded twice, and that a tile is coded without its
neighbours' pixels as context (`benchmarks/codec.py` measures both). An image shorter or
narrower than `s` has no tile: the codec stores its values raw (`spn_tf.codec.container`).

A fully convolutional kind (raster) is not cut: it codes each image whole, at its own size
(`whole_batches`: consecutive images of one size share a coding batch), so no context is
lost at tile edges and nothing is coded twice.
"""

import numpy as np


def origins(length, size):
    """Tile starts along an axis of `length` for tiles of `size` (module doc); `()` when the
    axis is shorter than a tile."""
    if length < size:
        return ()
    starts = list(range(0, length - size + 1, size))
    if starts[-1] + size < length:
        starts.append(length - size)
    return tuple(starts)


def count(height, width, size):
    """The number of tiles of a `height x width` image (arithmetic: no list of them)."""
    return (0 if height < size or width < size
            else -(-height // size) * -(-width // size))


def positions(height, width, size):
    """`(top, left)` of each tile of a `height x width` image, in raster order of tiles."""
    return [(top, left) for top in origins(height, size) for left in origins(width, size)]


def cut(image, size):
    """`(T, size, size, C)` tiles of an `(H, W, C)` image (`positions` order)."""
    tiles = [image[top:top + size, left:left + size]
             for top, left in positions(image.shape[0], image.shape[1], size)]
    return np.stack(tiles) if tiles else np.zeros((0, size, size, image.shape[2]), image.dtype)


def paste(tiles, height, width, size):
    """The `(H, W, C)` image of `cut(image, size)` (overlapping tiles hold equal values)."""
    image = np.zeros((height, width, tiles.shape[-1]), tiles.dtype)
    for tile, (top, left) in zip(tiles, positions(height, width, size)):
        image[top:top + size, left:left + size] = tile
    return image


def whole_batches(geometry, batch):
    """`(begin, end)` image ranges of the coding batches of whole images: runs of
    consecutive images of one `(height, width)` in `geometry`, at most `batch` each."""
    ranges, begin = [], 0
    for end in range(1, len(geometry) + 1):
        if end == len(geometry) or geometry[end] != geometry[begin] or end - begin == batch:
            ranges.append((begin, end))
            begin = end
    return ranges
