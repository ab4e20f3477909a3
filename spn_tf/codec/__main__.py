"""`python -m spn_tf.codec compress|decompress`: lossless image files with a trained model.

    python -m spn_tf.codec compress --model_dir=runs/quickstart a.png b.png --out=ab.spnc
    python -m spn_tf.codec decompress --model_dir=runs/quickstart ab.spnc --out=decoded/

`compress` reads PNG (or any lossless image Pillow reads: grayscale or RGB, palette images
expanded) at the model's size and channels, codes them into one file (`spn_tf.codec`), and
prints each image's coded bits per sub-pixel beside the model's `-log2 p(x)` per sub-pixel
and the file's total. Values must lie below `2**bits` of the model: the codec is lossless and
drops no bits unless `--reduce_bits` says so (then the coded image is the reduced one).
`decompress` writes the images as 8-bit PNGs holding the coded values: into `--out` when it
ends in `.png` (one image), else into the directory `--out` as `image_000.png`, ...
A class-conditional model takes `--labels`, a text-conditional one `--captions` (as
`spn_tf.sample`; decompress needs the same). Progress is logged every few seconds.
"""

import os
import sys
import time

import numpy as np
from absl import app, flags, logging
from PIL import Image

from spn_tf import cli, codec
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
    side = model.image_size
    if pixels.shape != (side, side, model.channels):
        raise ValueError(f"{path} is {pixels.shape[1]}x{pixels.shape[0]} with "
                         f"{pixels.shape[2]} channels; this model codes {side}x{side} with "
                         f"{model.channels} (the codec does not resize).")
    if pixels.max() >= model.num_values:
        if not reduce:
            raise ValueError(
                f"{path} has values up to {pixels.max()}; this model codes {model.bits}-bit "
                f"values (below {model.num_values}). The codec is lossless: pass --reduce_bits "
                f"to code its top {model.bits} bits instead, or use a model of more bits.")
        pixels = reduce_bits(pixels, model.bits).numpy()
    return pixels.astype(np.int32)


class Progress:
    """Logs the values coded so far, every few seconds."""

    def __init__(self):
        self.start = time.time()

    def __call__(self, coded):
        logging.info("  coded %d sub-pixel values of this batch (%.0f s)", coded,
                     time.time() - self.start)


def load(model_dir):
    model = load_checkpoint(os.path.join(model_dir, "model.keras"))
    if model.export_module.produces_clips:
        raise ValueError("a video model codes clips: use spn_tf.codec.encode(model, clips, "
                         "{'action': ...}) from Python; this tool codes images.")
    return model


def compress(model_dir, paths, out, batch_size, reduce, labels, captions):
    if not paths:
        raise ValueError("compress takes the image files to code: ... compress a.png b.png.")
    model = load(model_dir)
    images = np.stack([read_lossless(p, model, reduce) for p in paths])
    cond = {**cli.labels_cond(model, len(paths), labels),
            **cli.captions_cond(model, len(paths), captions)} or None
    start = time.time()
    data = codec.encode(model, images, cond, batch_size, Progress())
    elapsed = time.time() - start
    with open(out + ".partial", "wb") as f:  # a failed write leaves no half file at `out`
        f.write(data)
    os.replace(out + ".partial", out)
    bits = -model.log_prob(images, cond).numpy() / np.log(2)
    dims = model.num_dims
    for path, info in zip(paths, bits):
        logging.info("%s: model -log2 p(x) %.4f bits/sub-pixel", path, info / dims)
    logging.info("wrote %s: %d bytes, %.4f bits/sub-pixel coded over %d images (header and "
                 "table included: %.2f%% over -log2 p(x)); model -log2 p(x) %.4f; %.1f s", out,
                 len(data), 8 * len(data) / (dims * len(paths)), len(paths),
                 100 * (8 * len(data) / bits.sum() - 1), bits.sum() / (dims * len(paths)),
                 elapsed)
    return data


def decompress(model_dir, paths, out, labels, captions):
    if len(paths) != 1:
        raise ValueError(f"decompress takes one coded file, got {len(paths)}.")
    model = load(model_dir)
    with open(paths[0], "rb") as f:
        data = f.read()
    count = codec.count(data, model)
    cond = {**cli.labels_cond(model, count, labels),
            **cli.captions_cond(model, count, captions)} or None
    start = time.time()
    images = codec.decode(model, data, cond, Progress())
    if out.lower().endswith(".png"):
        if count != 1:
            raise ValueError(f"{paths[0]} holds {count} images: give --out a directory.")
        targets = [out]
    else:
        os.makedirs(out, exist_ok=True)
        targets = [os.path.join(out, f"image_{i:03d}.png") for i in range(count)]
    for image, target in zip(images, targets):
        Image.fromarray(image.astype(np.uint8).squeeze(-1) if model.channels == 1
                        else image.astype(np.uint8)).save(target)
    logging.info("decoded %d images (%.1f s) into %s", count, time.time() - start,
                 out if len(targets) > 1 else targets[0])
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
