"""`python -m spn_tf.codec compress|decompress`: lossless image files with a trained model.

    python -m spn_tf.codec compress --model_dir=runs/quickstart photos/ a.png --out=all.spnc
    python -m spn_tf.codec decompress --model_dir=runs/quickstart all.spnc --out=decoded/

`compress` reads PNG files, and every PNG of a folder (or any lossless image Pillow reads:
grayscale or RGB, palette images expanded), of any size, with the model's channels; codes them
into one file (`spn_tf.codec.encode_images`: tiles of the model's size), and prints each
image's `-log2 p(x)` per sub-pixel under the model and the file's coded bits per sub-pixel.
Values must lie below `2**bits` of the model: the codec is lossless and drops no bits unless
`--reduce_bits` says so (then the coded image is the reduced one).
`decompress` writes the images as 8-bit PNGs holding the coded values, under the file names
they had: into `--out` when it ends in `.png` (one image), else into the directory `--out`.
A class-conditional model takes `--labels`, a text-conditional one `--captions` (as
`spn_tf.sample`; decompress needs the same). Progress (done, elapsed, time left) is logged
every few seconds.
"""

import os
import sys
import time

import numpy as np
from absl import app, flags, logging
from PIL import Image

from spn_tf import cli, codec
from spn_tf.codec import tiling
from spn_tf.orderings import reduce_bits
from spn_tf.run_folder import load_checkpoint

FLAGS = flags.FLAGS
COMMANDS = ("compress", "decompress")


def define_flags():
    cli.model_dir_flag()  # the model that encodes, and must decode
    flags.DEFINE_string("out", None, "compress: the file to write; decompress: a .png (one "
                        "image) or a directory.")
    cli.batch_size_flag(codec.DEFAULT_BATCH, upper_bound=2 ** 16 - 1)
    flags.DEFINE_bool("reduce_bits", False, "compress: keep the top bits of 8-bit images that "
                      "the model's bits cannot hold (lossy; otherwise refused).")
    cli.cond_flags()
    flags.mark_flags_as_required(["out"])


def read_lossless(path, model, reduce):
    """int32 `(H, W, C)` of the image file `path`, checked against `model`."""
    try:
        with Image.open(path) as image:
            mode = image.mode
            if mode == "P":
                image = image.convert("RGB" if model.channels == 3 else "L")
                mode = image.mode
            if mode not in ("L", "RGB"):
                raise ValueError(f"{path}: mode {mode!r}; the codec reads 8-bit grayscale or "
                                 f"RGB images (convert it first, e.g. drop the alpha channel).")
            pixels = np.asarray(image)
    except (OSError, Image.DecompressionBombError) as error:
        raise ValueError(f"{path} could not be read as an image ({error}).") from None
    pixels = pixels[..., None] if pixels.ndim == 2 else pixels
    if pixels.shape[2] != model.channels:
        raise ValueError(f"{path} has {pixels.shape[2]} channels; this model codes "
                         f"{model.channels} ({'grayscale' if model.channels == 1 else 'RGB'}).")
    if pixels.max() >= model.num_values:
        if not reduce:
            raise ValueError(
                f"{path} has values up to {pixels.max()}; this model codes {model.bits}-bit "
                f"values (below {model.num_values}). The codec is lossless: pass --reduce_bits "
                f"to code its top {model.bits} bits instead, or use a model of more bits.")
        pixels = reduce_bits(pixels, model.bits).numpy()
    return pixels.astype(np.int32)


class Progress:
    """Logs the sub-pixels coded so far, the time spent and the time left, every few
    seconds."""

    def __init__(self):
        self.start = time.time()

    def __call__(self, done, total):
        elapsed = time.time() - self.start
        left = elapsed * (total - done) / done if done else float("nan")
        logging.info("  coded %d of %d sub-pixels (%.0f%%), %.0f s, about %.0f s left", done,
                     total, 100 * done / max(total, 1), elapsed, left)


def image_paths(paths):
    """The files of `paths`, each folder replaced by its PNG files (sorted)."""
    files = []
    for path in paths:
        if os.path.isdir(path):
            found = sorted(os.path.join(path, name) for name in os.listdir(path)
                           if name.lower().endswith(".png"))
            if not found:
                raise ValueError(f"the folder {path} holds no PNG files.")
            files += found
        elif os.path.isfile(path):
            files.append(path)
        else:
            raise ValueError(f"{path}: no such file or folder.")
    return files


def load(model_dir):
    model = load_checkpoint(os.path.join(model_dir, "model.keras"))
    if model.export_module.produces_clips:
        raise ValueError("a video model codes clips: use spn_tf.codec.encode(model, clips, "
                         "{'action': ...}) from Python; this tool codes images.")
    return model


def compress(model_dir, paths, out, batch_size, reduce, labels, captions):
    if not paths:
        raise ValueError("compress takes the image files or folders to code: ... compress "
                         "a.png photos/.")
    model = load(model_dir)
    paths = image_paths(paths)
    images = [read_lossless(p, model, reduce) for p in paths]
    cond = {**cli.labels_cond(model, len(paths), labels),
            **cli.captions_cond(model, len(paths), captions)} or None
    start = time.time()
    data = codec.encode_images(model, images, cond, batch_size, Progress(),
                               [os.path.basename(p) for p in paths])
    elapsed = time.time() - start
    with open(out + ".partial", "wb") as f:  # a failed write leaves no half file at `out`
        f.write(data)
    os.replace(out + ".partial", out)
    bits = []
    for i, (path, image) in enumerate(zip(paths, images)):
        row = {key: value[i:i + 1] for key, value in (cond or {}).items()}
        bits.append(codec.image_bits(model, image, row))
        raw = not model.fully_convolutional and not tiling.count(*image.shape[:2],
                                                                 model.image_size)
        logging.info("%s: %dx%d, model -log2 p(x) %.4f bits/sub-pixel%s", path, image.shape[1],
                     image.shape[0], bits[-1] / image.size,
                     " (stored raw: smaller than the model's tiles)" if raw else "")
    dims = sum(image.size for image in images)
    megapixels = sum(image.shape[0] * image.shape[1] for image in images) / 1e6
    logging.info("wrote %s: %d bytes, %.4f bits/sub-pixel over %d images (header and tables "
                 "included%s; model -log2 p(x) %.4f); %.1f s (%.1f s/megapixel)", out, len(data),
                 8 * len(data) / dims, len(paths),
                 "" if model.fully_convolutional else ", overlapping tiles coded twice",
                 sum(bits) / dims, elapsed, elapsed / megapixels)
    return data


def _target_names(names, out):
    """Where decompress writes each image: its stored name (a plain PNG file name), else
    `image_000.png`, ...; the same name twice gets a numbered suffix."""
    targets, seen = [], set()
    for i, name in enumerate(names):
        base = os.path.basename(name)
        if not base or base in (".", "..") or not base.lower().endswith(".png"):
            base = f"image_{i:03d}.png"
        if base in seen:
            base = f"{base[:-4]}_{i:03d}.png"
        seen.add(base)
        targets.append(os.path.join(out, base))
    return targets


def decompress(model_dir, paths, out, labels, captions):
    if len(paths) != 1:
        raise ValueError(f"decompress takes one coded file, got {len(paths)}.")
    model = load(model_dir)
    with open(paths[0], "rb") as f:
        data = f.read()
    count = codec.count(data, model)
    if out.lower().endswith(".png") and count != 1:
        raise ValueError(f"{paths[0]} holds {count} images: give --out a directory.")
    cond = {**cli.labels_cond(model, count, labels),
            **cli.captions_cond(model, count, captions)} or None
    start = time.time()
    images, names = codec.decode_images(model, data, cond, Progress())
    if out.lower().endswith(".png"):
        targets = [out]
    else:
        os.makedirs(out, exist_ok=True)
        targets = _target_names(names, out)
    for image, target in zip(images, targets):
        Image.fromarray(image.astype(np.uint8).squeeze(-1) if model.channels == 1
                        else image.astype(np.uint8)).save(target)
    elapsed = time.time() - start
    megapixels = sum(image.shape[0] * image.shape[1] for image in images) / 1e6
    logging.info("decoded %d images (%.1f s, %.1f s/megapixel) into %s", count, elapsed,
                 elapsed / megapixels, out if len(targets) > 1 else targets[0])
    return images


def main(argv):
    if len(argv) < 2 or argv[1] not in COMMANDS:
        raise app.UsageError("say what to do: python -m spn_tf.codec {compress|decompress} "
                             "--model_dir=... FILES --out=...")
    try:
        if argv[1] == "compress":
            compress(FLAGS.model_dir, argv[2:], FLAGS.out, FLAGS.batch_size, FLAGS.reduce_bits,
                     FLAGS.labels, FLAGS.captions)
        else:
            decompress(FLAGS.model_dir, argv[2:], FLAGS.out, FLAGS.labels, FLAGS.captions)
    except ValueError as error:
        sys.exit(f"spn_tf.codec: error: {error}")


if __name__ == "__main__":
    cli.run(main, define_flags)
