"""`python -m spn_tf.sample --model_dir=runs/quickstart --num_samples=16 --out=samples.png`.

Loads `model_dir/model.keras` (from `python -m spn_tf.train`), draws `--num_samples` images with
the sampler `--sampler` names (`auto`: see `pick_sampler`; `xla`: the XLA-compiled loops, compiled
once per batch size; `reference`: one network call per step, no compile; the same images)
and writes them as one grid image (`--out`: `.png`, `.jpg` or `.jpeg`). `--given=image.png`
starts from a known 8-bit image (PNG, JPEG, GIF, BMP), reduced to the model's bits and not
resized (a resize would change the pixels the model is asked to keep): its side must be one
of those below, and the error lists them:
  * raster: the top half is kept, the bottom half completed;
  * SPN / upscaling: an `H/S`-sized image is the first slice (size upscaling by `S`); a full
    size image keeps its first `S*S // 2` slices (completion); an upscaling model with depth
    upscaling does this approximately (`given["approximate"]`, `MultidimensionalUpscaling`);
  * multiscale: an image at a lower resolution `r` is super-resolved; a full size image is
    sub-sampled to `N/2` first.
A class-conditional model takes `--labels`, a text-conditional one `--captions` (one flag per
caption, cycled over the images). A video model (`multiscale_video`) predicts `--num_samples`
held-out clips of its run's dataset (`config.json`) from their first frames and actions: each
clip's row of frames, then the predicted row.

The compiled loops are kept in TensorFlow's persistent XLA cache (`--xla_cache`, default
`~/.cache/spn_tf/xla`; `spn_tf.compile_cache`): a later run of the same command loads them
instead of compiling (measured: the first batch of 8 of multiscale `small` at 32x32x3,
6.3 s -> 3.7 s).

Progress is logged per batch of `--batch_size` images (a compiled batch is one XLA call: the
first one's line includes the compile, announced before it starts), and inside a batch per
SPN slice and per video frame (every few seconds).
"""

import os
import sys
import time

import numpy as np
from absl import app, flags, logging

from spn_tf import cli, compile_cache
from spn_tf.grid import check_image_path, read_image, write_grid
from spn_tf.orderings import reduce_bits
from spn_tf.run_data import predict_held_out_clips
from spn_tf.run_folder import load_checkpoint, run_config

FLAGS = flags.FLAGS
_cache = []  # the XLA cache directory in use: set by `enable_cache`, before `main`


def define_flags():
    cli.model_dir_flag()
    cli.sampling_flags(num_samples=16)
    cli.batch_size_flag(16)
    cli.cond_flags()
    flags.DEFINE_string("given", None, "Image to complete / upscale, at a size the model "
                        "takes (not resized; see the module doc).")
    flags.DEFINE_enum("sampler", "auto", ["auto", "xla", "reference"],
                      "auto: the faster for this run (see the module doc); xla: the "
                      "XLA-compiled loops; reference: no compile, one network call per step.")
    flags.DEFINE_string("out", "samples.png", "Output grid image; .png, .jpg or .jpeg.")
    flags.DEFINE_string("xla_cache", None, "Directory of the persistent XLA compilation cache "
                        "(a later run of the same command loads the compiled loops instead of "
                        "compiling them; spn_tf.compile_cache); default $SPN_TF_XLA_CACHE or "
                        "~/.cache/spn_tf/xla; 'off' for none.")


def given_for(model, image, num):
    """`(given, cond)` for `model.sample` from one uint8 `(h, w, c)` 8-bit image: what the
    image means is the model's to say (`model.export_module.given_from_image`)."""
    if image.shape[-1] != model.channels:
        raise ValueError(f"--given has {image.shape[-1]} channels; the model takes "
                         f"{model.channels}.")
    if image.shape[0] != image.shape[1]:
        raise ValueError(f"--given must be square, got {image.shape[:2]}.")
    images = np.repeat(reduce_bits(image, model.bits).numpy()[None], num, axis=0)
    return model.export_module.given_from_image(images)


class StageLog:
    """A `sample(progress=...)` callback that logs host-side stages (SPN slices, video
    frames) at most every `every` seconds, and each stage's last step, with the time left.

    A stage's clock starts at its first report, so the rate counts the steps after it (the
    first step also carries the XLA compile)."""

    def __init__(self, every=5.0):
        self.every, self.stage, self.start, self.first, self.last = every, None, 0.0, 0, 0.0

    def __call__(self, stage, done, total):
        now = time.time()
        if stage != self.stage:
            self.stage, self.start, self.first, self.last = stage, now, done, now
        if done < total and now - self.last < self.every:
            return
        self.last = now
        elapsed, timed = now - self.start, done - self.first
        left = f", about {elapsed / timed * (total - done):.0f} s left" if timed else ""
        logging.info("  %s: %d/%d (%.1f s%s)", stage, done, total, elapsed, left)


def pick_sampler(model, calls, sampler="auto"):
    """`"xla"` or `"reference"` for `calls` sampler calls: `auto` compiles unless the
    run is shorter than the model's `export_module.reference_sampler_calls` (multiscale: O(log N) steps,
    so its reference sampler beats an XLA compile for a few calls)."""
    if sampler != "auto":
        return sampler
    return "reference" if calls < model.export_module.reference_sampler_calls else "xla"


def predict_clips(model_dir, model, num, seed, temperature, sampler, out):
    """A video model: `num` held-out clips and their predictions into the image `out`."""
    start = time.time()
    frames, columns = predict_held_out_clips(run_config(model_dir), model, num, seed,
                                             temperature, sampler, StageLog())
    write_grid(frames, model.bits, out, columns=columns)
    logging.info("predicted %d clips (%.1f s); wrote %s: each clip's row, then its prediction",
                 num, time.time() - start, out)
    return frames


def run(model_dir, num, batch_size, seed, temperature, labels, given_path, sampler, out,
        captions=None):
    """Draws `num` images from `model_dir/model.keras` into the image `out`; returns them."""
    check_image_path(out)
    model = load_checkpoint(os.path.join(model_dir, "model.keras"))
    video = model.export_module.produces_clips
    if video and (labels or captions or given_path):
        raise ValueError("a video model predicts held-out clips from their first frames "
                         "and actions: --labels, --captions and --given do not apply.")
    if not video:  # every input is checked before the sampler is announced
        cond = {**cli.labels_cond(model, num, labels),
                **cli.captions_cond(model, num, captions)}
        given, given_cond = (None, {}) if given_path is None else given_for(
            model, read_image(given_path, "--given"), num)
        cond.update(given_cond)
    sampler = pick_sampler(model, -(-num // batch_size), sampler)
    logging.info("sampler: %s%s", sampler, " (the first batch includes a one-time XLA "
                 "compile, seconds on a CPU)" if sampler == "xla" else "")
    if video:
        return predict_clips(model_dir, model, num, seed, temperature, sampler, out)
    chunks, start, first = [], time.time(), 0.0
    for begin in range(0, num, batch_size):
        end = min(num, begin + batch_size)
        cut = lambda tree: None if tree is None else {k: v[begin:end] if k != "num_slices"
                                                     else v for k, v in tree.items()}
        # One seed per batch, derived from --seed, so that every batch differs.
        chunks.append(model.sample(end - begin, [seed, begin], temperature, cut(cond) or None,
                                   cut(given), mode=sampler,
                                   progress=StageLog()).numpy())
        elapsed = time.time() - start
        # From the batches after the first when there are some (the first one compiles).
        rate = (elapsed - first) / (end - batch_size) if end > batch_size else elapsed / end
        first = first or elapsed
        logging.info("sampled %d/%d images (%.1f s, about %.0f s left)", end, num, elapsed,
                     rate * (num - end))
    images = np.concatenate(chunks)
    write_grid(images, model.bits, out)
    logging.info("wrote %s", out)
    return images


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}; all options are --flags.")
    if _cache:
        logging.info("XLA compilation cache: %s", _cache[0])
    try:
        run(FLAGS.model_dir, FLAGS.num_samples, FLAGS.batch_size, FLAGS.seed,
            FLAGS.temperature, FLAGS.labels, FLAGS.given, FLAGS.sampler, FLAGS.out, FLAGS.captions)
    except ValueError as error:
        sys.exit(f"spn_tf.sample: error: {error}")


def enable_cache():
    """Turns on the persistent XLA cache (`--xla_cache`) before `app.run` (see `cli.run`)."""
    directory = compile_cache.enable(FLAGS.xla_cache)
    if directory:
        _cache.append(directory)


if __name__ == "__main__":
    cli.run(main, define_flags, before_main=enable_cache)
