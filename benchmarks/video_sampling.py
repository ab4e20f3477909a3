"""Seconds per predicted frame of `MultiscaleVideoPixelCNN.sample_video` on this machine.

One clip of `--num_frames` frames (the first given) per call, `small` preset, untrained
weights (time does not depend on them), compiled (each frame by the multiscale model's XLA
loops) and reference. Cold = the first call, including tracing and the XLA compile; warm =
the fastest of `--repeats` later calls.

Usage:
  python benchmarks/video_sampling.py --sizes=16,64
"""

import time

import numpy as np
from absl import app, flags

from spn_tf import models

FLAGS = flags.FLAGS
flags.DEFINE_list("sizes", ["16", "64"], "Frame sizes (height = width).")
flags.DEFINE_integer("num_frames", 4, "Frames per clip (the first given).")
flags.DEFINE_integer("repeats", 3, "Warm calls (the fastest is reported).")


def main(argv):
    del argv
    print("| frame | sampler | cold s/frame (incl. compile) | warm s/frame | parameters |")
    print("|---|---|---|---|---|")
    for size in map(int, FLAGS.sizes):
        model = models.build("multiscale_video", size, channels=3, bits=5, preset="small",
                             cond={"action": 2}, num_frames=FLAGS.num_frames)
        model.build()
        first = np.zeros((1, size, size, 3), np.int32)
        actions = np.zeros((1, FLAGS.num_frames - 1, 2), np.float32)
        for compiled in (True, False):
            times = []
            for seed in range(1 + FLAGS.repeats):
                start = time.perf_counter()
                model.sample_video(first, actions, seed, compiled=compiled).numpy()
                times.append((time.perf_counter() - start) / (FLAGS.num_frames - 1))
            print(f"| {size}x{size}x3 | {'compiled' if compiled else 'reference'} | "
                  f"{times[0]:.3f} | {min(times[1:]):.3f} | {model.count_params():,} |",
                  flush=True)


if __name__ == "__main__":
    app.run(main)
