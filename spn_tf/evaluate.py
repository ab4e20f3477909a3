"""`python -m spn_tf.evaluate --model_dir=runs/quickstart`: exact held-out bits/dim of a run.

Reads the run's `config.json` (dataset, image space, batch) and `model.keras` (the EMA
weights when the run kept an average), evaluates exactly on the test split, prints the value
and writes it to `<model_dir>/evaluation.json`. `--heatmap=map.png` also writes the first
held-out images beside the bits each pixel costs (`model.log_prob_map`): where the model is
surprised, e.g. to find outliers.
"""

import dataclasses
import json
import os
import sys

from absl import app, flags

from spn_tf import cli
from spn_tf import data, grid
from spn_tf.trainer import TrainConfig, data_args, held_out_dataset, load_checkpoint
from spn_tf.training.evaluation import mean_bits_per_dim

FLAGS = flags.FLAGS


def define_flags():
    flags.DEFINE_string("model_dir", None, "A finished run's directory (config.json, "
                        "model.keras).")
    flags.DEFINE_string("data_dir", None, "Prepared TFDS data (default: the run's).")
    flags.DEFINE_integer("eval_batches", 0, "Held-out batches (0: the whole test split).",
                         lower_bound=0)
    flags.DEFINE_integer("eval_slices_per_call", 0, "SPN slices per network call (0: the "
                         "run's batch size).", lower_bound=0)
    flags.DEFINE_string("heatmap", None, "Write held-out images beside their per-pixel bits "
                        "(PNG) to this path.")
    flags.DEFINE_integer("heatmap_images", 8, "Images in the --heatmap grid.", lower_bound=1)
    flags.mark_flag_as_required("model_dir")


def run_config(model_dir, **overrides):
    """The `TrainConfig` saved in `model_dir/config.json`, with `overrides` applied."""
    path = os.path.join(model_dir, "config.json")
    try:
        with open(path) as f:
            saved = json.load(f)
        config = TrainConfig(**saved)
    except (OSError, ValueError, TypeError) as error:
        raise ValueError(f"{path} is not the config of a spn_tf.train run ({error}).") from None
    return dataclasses.replace(config, **overrides)


def write_heatmap_of(model, config, path, num_images):
    """Writes the first `num_images` held-out images and their per-pixel bits to `path`."""
    if not path.lower().endswith(".png"):
        raise app.UsageError(f"--heatmap={path!r} must name a .png file.")
    batch = next(iter(data.load(config.dataset, "test", batch_size=num_images, shuffle=False,
                                **data_args(config))))
    cond = {"label": batch["label"]} if config.conditional else None
    top = grid.write_heatmap(batch["images"].numpy(), model.log_prob_map(batch["images"], cond),
                             model.bits, path)
    print(f"wrote {path}: images beside their bits per pixel (white = {top:.2f} bits)")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}; all options are --flags.")
    overrides = dict(eval_batches=FLAGS.eval_batches,
                     eval_slices_per_call=FLAGS.eval_slices_per_call)
    if FLAGS.data_dir is not None:
        overrides["data_dir"] = FLAGS.data_dir
    try:
        config = run_config(FLAGS.model_dir, **overrides)
        model = load_checkpoint(os.path.join(FLAGS.model_dir, "model.keras"))
        bits = mean_bits_per_dim(model, held_out_dataset(config),
                                 config.eval_slices_per_call or config.batch_size)
    except ValueError as error:
        sys.exit(f"spn_tf.evaluate: error: {error}")
    if FLAGS.heatmap:
        write_heatmap_of(model, config, FLAGS.heatmap, FLAGS.heatmap_images)
    with open(os.path.join(FLAGS.model_dir, "evaluation.json"), "w") as f:
        json.dump({"held_out_bits_per_dim": bits, "eval_batches": config.eval_batches}, f,
                  indent=2)
    print(f"held-out bits/dim: {bits:.4f}")


if __name__ == "__main__":
    cli.run(main, define_flags)
