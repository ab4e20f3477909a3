"""Reference-sampler time per image: Multiscale PixelCNN vs a raster Gated PixelCNN.

Both models have about the same number of parameters (multiscale `small` preset: ~0.95M;
raster `small` with 12 gated layers: ~0.85M) and both use the reference samplers, so the
ratio measures the ordering: `N*N*C` sequential network evaluations for raster order against
`base_size**2*C + 3*C*log2(N/base_size)` for the multiscale one (Reed et al. 2017).

Raster sampling at 64x64 and above takes hours on a CPU: above `--raster_full_max` the raster
sampler runs `--raster_steps` steps and the time is extrapolated to `N*N*C` steps (marked in
the table). Untrained weights: the time does not depend on them.

Usage:
  python benchmarks/multiscale_sampling.py --sizes=16,32,64,128

One run on 2 CPU cores (AMD EPYC, no GPU), 8 bits, base 4x4, batch 1:

| size | raster evals | multiscale evals | ratio | raster s/image | multiscale s/image | ratio |
|---|---|---|---|---|---|---|
| 16x16 | 768 | 66 | 12x | 15.8 | 1.04 | 15x |
| 32x32 | 3072 | 75 | 41x | 126.2 (extrapolated) | 0.79 | 161x |
| 64x64 | 12288 | 84 | 146x | 961.6 (extrapolated) | 1.73 | 556x |
| 128x128 | 49152 | 93 | 529x | 18727.6 (extrapolated) | 2.32 | 8088x |

The time ratio grows faster than the evaluation ratio: every raster evaluation runs the network
over the whole N x N image, while most multiscale evaluations run at lower resolutions.
"""

import time

from absl import app, flags

from spn_tf import sampling
from spn_tf.models import build

FLAGS = flags.FLAGS
flags.DEFINE_list("sizes", ["16", "32", "64", "128"], "Image sizes (height = width).")
flags.DEFINE_integer("channels", 3, "Image channels.")
flags.DEFINE_integer("bits", 8, "Bits per sub-pixel.")
flags.DEFINE_integer("base_size", 4, "Multiscale base resolution.")
flags.DEFINE_integer("raster_full_max", 16, "Largest size sampled in full by the raster model.")
flags.DEFINE_integer("raster_steps", 96, "Raster steps timed above --raster_full_max.")


class _Enough(Exception):
    """Stops the raster sampler after the timed steps."""


def raster_seconds_per_image(model, steps=None):
    """Seconds for one image; `steps` times only that many steps and extrapolates.

    Returns:
      `(seconds, extrapolated)`.
    """
    total = model.num_dims
    if steps is None or steps >= total:
        model.sample(1, seed=0, compiled=False)  # traces the network
        start = time.perf_counter()
        model.sample(1, seed=1, compiled=False)
        return time.perf_counter() - start, False

    def stop(step, _):
        if step == steps:
            raise _Enough

    original = sampling.raster_sample

    def truncated(*args, **kwargs):
        return original(*args, on_step=stop, **kwargs)

    sampling.raster_sample = truncated
    try:
        timings = []
        for seed in (0, 1):  # the first run traces
            start = time.perf_counter()
            try:
                model.sample(1, seed=seed, compiled=False)
            except _Enough:
                timings.append(time.perf_counter() - start)
    finally:
        sampling.raster_sample = original
    return timings[-1] / steps * total, True


def multiscale_seconds_per_image(model):
    model.sample(1, seed=0, compiled=False)
    start = time.perf_counter()
    model.sample(1, seed=1, compiled=False)
    return time.perf_counter() - start


def main(argv):
    del argv
    c, b = FLAGS.channels, FLAGS.base_size
    rows = []
    for size in [int(s) for s in FLAGS.sizes]:
        multiscale = build("multiscale", size, channels=c, bits=FLAGS.bits, preset="small",
                           base_size=b)
        raster = build("raster", size, channels=c, bits=FLAGS.bits, preset="small",
                       num_layers=12)
        multiscale.build()
        raster.build()
        ms_seconds = multiscale_seconds_per_image(multiscale)
        steps = None if size <= FLAGS.raster_full_max else FLAGS.raster_steps
        raster_seconds, extrapolated = raster_seconds_per_image(raster, steps)
        levels = multiscale.num_scales
        rows.append((size, size * size * c, b * b * c + 3 * c * levels, raster_seconds,
                     extrapolated, ms_seconds, multiscale.count_params(),
                     raster.count_params()))
        print(f"done {size}x{size}", flush=True)
    print(f"\nReference samplers, batch 1, {c} channels, {FLAGS.bits} bits, multiscale base "
          f"{b}x{b}; params: multiscale {rows[0][6]:,}, raster {rows[0][7]:,}.")
    print("| size | raster evals | multiscale evals | eval ratio | raster s/image | "
          "multiscale s/image | time ratio |")
    print("|---|---|---|---|---|---|---|")
    for size, r_evals, m_evals, r_sec, extra, m_sec, _, _ in rows:
        mark = " (extrapolated)" if extra else ""
        print(f"| {size}x{size} | {r_evals} | {m_evals} | {r_evals / m_evals:.0f}x | "
              f"{r_sec:.1f}{mark} | {m_sec:.2f} | {r_sec / m_sec:.0f}x |")


if __name__ == "__main__":
    app.run(main)
