"""Do trained video models use the action? Held-out bits/dim with the true, permuted and zero
actions.

A model that predicts the next frame through the action scores worse when the actions are
shuffled between clips or zeroed; one that ignores the action scores the same. Reads trained
`multiscale_video` runs on the camera clips (e.g. two runs of
`python -m spn_tf.train --config=video_quickstart`, one with
`--hparams=encoder_aligned_layers=0`), scores every held-out clip of `video_data.camera_clips`
at the run's size, bit depth and clip length.

Usage:
  python benchmarks/video_actions.py --model_dirs=runs/video_quickstart,runs/video_global
"""

import os

import numpy as np
from absl import app, flags

from spn_tf import run_folder, video_data
from spn_tf.orderings import reduce_bits

FLAGS = flags.FLAGS
flags.DEFINE_list("model_dirs", [], "Trained multiscale_video runs on the camera clips.")
flags.DEFINE_integer("batch_size", 64, "Clips per log_prob call.")


def bits_per_dim(model, clips, actions):
    """Mean bits/dim of the predicted frames of `clips` given `actions`."""
    log_prob = np.concatenate([
        model.log_prob(clips[i:i + FLAGS.batch_size],
                       {"action": actions[i:i + FLAGS.batch_size]}).numpy()
        for i in range(0, len(clips), FLAGS.batch_size)])
    return -log_prob.mean() / model.num_dims / np.log(2)


def main(argv):
    del argv
    print("| run | aligned layers | true actions | permuted | zero |")
    print("|---|---|---|---|---|")
    for model_dir in FLAGS.model_dirs:
        model = run_folder.load_checkpoint(os.path.join(model_dir, "model.keras"))
        clips, actions, _ = video_data.camera_clips("test", model.image_size, model.num_frames)
        clips = np.asarray(reduce_bits(clips, model.bits))
        permuted = actions[np.random.default_rng(0).permutation(len(actions))]
        scores = [bits_per_dim(model, clips, a) for a in (actions, permuted, 0 * actions)]
        print(f"| {model_dir} | {model.encoder_aligned_layers} | " +
              " | ".join(f"{s:.3f}" for s in scores) + " |", flush=True)


if __name__ == "__main__":
    app.run(main)
