"""`python -m spn_tf.evaluate --model_dir=runs/quickstart`: exact held-out bits/dim of a run.

Reads the run's `config.json` (dataset, image space, batch) and `model.keras` (the EMA
weights when the run kept an average), evaluates exactly on the test split, prints the value
and writes it to `<model_dir>/evaluation.json`. `--heatmap=map.png` also writes the first
held-out images beside the bits each pixel costs (`model.log_prob_map`): where the model is
surprised, e.g. to find outliers.
"""

import json
import os
import sys

from absl import app, flags

from spn_tf import cli, grid
from spn_tf.run_data import held_out_batch, held_out_dataset
from spn_tf.run_folder import TrainConfig, load_checkpoint, run_config
from spn_tf.training.evaluation import mean_bits_per_dim

FLAGS = flags.FLAGS


def define_flags():
    cli.model_dir_flag()
    # The run's own options, re-set for this evaluation (unset --data_dir: the run's).
    cli.config_flags(TrainConfig, ["data_dir", "eval_batches", "eval_slices_per_call"],
                     data_dir=None)
    flags.DEFINE_string("heatmap", None, "Write held-out images beside their per-pixel bits "
                        "(PNG) to this path.")
    flags.DEFINE_integer("heatmap_images", 8, "Images in the --heatmap grid.", lower_bound=1)


def write_heatmap_of(model, config, path, num_images):
    """Writes the first `num_images` held-out images and their per-pixel bits to `path`."""
    batch = held_out_batch(config, num_images)
    images, cond = batch["images"], {key: batch[key] for key in model.cond_spec}
    log_prob_map = model.log_prob_map(images, cond or None).numpy()
    images = images.numpy()
    if images.ndim == 5:  # video clips: every frame beside its map (the given first: 0 bits)
        images, log_prob_map = (x.reshape((-1,) + x.shape[2:]) for x in (images, log_prob_map))
    top = grid.write_heatmap(images, log_prob_map, model.bits, path)
    print(f"wrote {path}: images beside their bits per pixel (white = {top:.2f} bits)")


def evaluate_run(model_dir, eval_batches=0, eval_slices_per_call=0, data_dir=None):
    """Exact held-out bits/dim of the run in `model_dir` (its `config.json` names the data,
    its `model.keras` the model), also written to `<model_dir>/evaluation.json`.

    Returns:
      `(bits/dim, model, config)`.

    Raises:
      ValueError: a missing or unreadable run, or missing data (the message says what to do).
    """
    overrides = dict(eval_batches=eval_batches, eval_slices_per_call=eval_slices_per_call)
    if data_dir is not None:
        overrides["data_dir"] = data_dir
    config = run_config(model_dir, **overrides)
    model = load_checkpoint(os.path.join(model_dir, "model.keras"))
    bits = mean_bits_per_dim(model, held_out_dataset(config),
                             config.eval_slices_per_call or config.batch_size)
    with open(os.path.join(model_dir, "evaluation.json"), "w") as f:
        json.dump({"held_out_bits_per_dim": bits, "eval_batches": config.eval_batches}, f,
                  indent=2)
    return bits, model, config


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}; all options are --flags.")
    if FLAGS.heatmap and not FLAGS.heatmap.lower().endswith(".png"):
        raise app.UsageError(f"--heatmap={FLAGS.heatmap!r} must name a .png file.")
    try:
        bits, model, config = evaluate_run(FLAGS.model_dir, FLAGS.eval_batches,
                                           FLAGS.eval_slices_per_call, FLAGS.data_dir)
    except ValueError as error:
        sys.exit(f"spn_tf.evaluate: error: {error}")
    if FLAGS.heatmap:
        write_heatmap_of(model, config, FLAGS.heatmap, FLAGS.heatmap_images)
    print(f"held-out bits/dim: {bits:.4f}")


if __name__ == "__main__":
    cli.run(main, define_flags)
