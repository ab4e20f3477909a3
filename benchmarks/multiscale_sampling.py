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
  python benchmarks/multiscale_sampling.py --sizes=16,32,64 --raster=false  # type A vs B

One run on 2 CPU cores (AMD EPYC, no GPU), 8 bits, base 4x4, batch 1:

| size | raster evals | multiscale evals | ratio | raster s/image | multiscale s/image | ratio |
|---|---|---|---|---|---|---|
| 16x16 | 768 | 66 | 12x | 15.8 | 1.04 | 15x |
| 32x32 | 3072 | 75 | 41x | 126.2 (extrapolated) | 0.79 | 161x |
| 64x64 | 12288 | 84 | 146x | 961.6 (extrapolated) | 1.73 | 556x |
| 128x128 | 49152 | 93 | 529x | 18727.6 (extrapolated) | 2.32 | 8088x |

The time ratio grows faster than the evaluation ratio: every raster evaluation runs the network
over the whole N x N image, while most multiscale evaluations run at lower resolutions.

Type B groups (`group_pixelcnn_patch=M`, Reed et al. 2017 §3: a shallow PixelCNN over M x M
patches of each group, here 2 gated layers of 48 features) cost `M**2` times type A's
evaluations per group: `base_size**2*C + 3*C*M**2*log2(N/base_size)`. Their table (also printed
with `--raster=false`, which skips the slow raster model), same machine, batch 1, M = 4, the
`small` preset otherwise (type A 947,616 parameters, type B 1,411,872); "compiled" is
`sample(compiled=True)` (one XLA program, cached raster loops) after its compilation:

| size | evals A | evals B | B/A | s/image ref A | ref B | B/A | compiled A | compiled B | B/A |
|---|---|---|---|---|---|---|---|---|---|
| 16x16 | 66 | 336 | 5.1x | 0.84 | 3.13 | 3.7x | 0.016 | 0.029 | 1.8x |
| 32x32 | 75 | 480 | 6.4x | 0.88 | 5.25 | 5.9x | 0.021 | 0.069 | 3.3x |
| 64x64 | 84 | 624 | 7.4x | 1.27 | 9.24 | 7.3x | 0.052 | 0.214 | 4.1x |

Type B is still O(log N) (144 more evaluations per doubling for RGB); against the raster
model's 3072 / 12288 evaluations at 32x32 / 64x64 it keeps a 6x / 20x lead in evaluations.
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
flags.DEFINE_integer("group_pixelcnn_patch", 4,
                     "Patch side M of the type-B multiscale model timed beside type A (0: none).")
flags.DEFINE_bool("raster", True, "Time the raster PixelCNN (slow); off: type A vs B only.")


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


def multiscale_seconds_per_image(model, compiled=False):
    model.sample(1, seed=0, compiled=compiled)  # traces (and, compiled, XLA-compiles)
    start = time.perf_counter()
    model.sample(1, seed=1, compiled=compiled)
    return time.perf_counter() - start


def multiscale_evals(model):
    """Sequential network evaluations of the reference sampler (`MultiscalePixelCNN` doc):
    per group `C` (type A) or `min(M, r)**2 * C` (type B), plus the base's."""
    c, m = model.channels, model.group_pixelcnn_patch
    per_group = [min(m, model.resolution(s)) ** 2 if m else 1 for s in range(model.num_scales)]
    return model.base_size ** 2 * c + 3 * c * sum(per_group)


def type_b_table(rows):
    """Type B's cost over type A: evaluations, reference and compiled time per image."""
    print(f"\nType B (patch PixelCNN, M={FLAGS.group_pixelcnn_patch}) vs type A, batch 1; "
          f"params: type A {rows[0]['params_a']:,}, type B {rows[0]['params_b']:,}.")
    print("| size | evals A | evals B | B/A | s/image ref A | ref B | B/A | compiled A | "
          "compiled B | B/A |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['size']}x{r['size']} | {r['evals_a']} | {r['evals_b']} | "
              f"{r['evals_b'] / r['evals_a']:.1f}x | {r['ref_a']:.2f} | {r['ref_b']:.2f} | "
              f"{r['ref_b'] / r['ref_a']:.1f}x | {r['xla_a']:.3f} | {r['xla_b']:.3f} | "
              f"{r['xla_b'] / r['xla_a']:.1f}x |")


def main(argv):
    del argv
    c, b = FLAGS.channels, FLAGS.base_size
    rows, b_rows = [], []
    for size in [int(s) for s in FLAGS.sizes]:
        multiscale = build("multiscale", size, channels=c, bits=FLAGS.bits, preset="small",
                           base_size=b)
        multiscale.build()
        ms_seconds = multiscale_seconds_per_image(multiscale)
        if FLAGS.group_pixelcnn_patch:
            type_b = build("multiscale", size, channels=c, bits=FLAGS.bits, preset="small",
                           base_size=b, group_pixelcnn_patch=FLAGS.group_pixelcnn_patch)
            type_b.build()
            b_rows.append(dict(
                size=size, evals_a=multiscale_evals(multiscale), evals_b=multiscale_evals(type_b),
                ref_a=ms_seconds, ref_b=multiscale_seconds_per_image(type_b),
                xla_a=multiscale_seconds_per_image(multiscale, compiled=True),
                xla_b=multiscale_seconds_per_image(type_b, compiled=True),
                params_a=multiscale.count_params(), params_b=type_b.count_params()))
        if FLAGS.raster:
            raster = build("raster", size, channels=c, bits=FLAGS.bits, preset="small",
                           num_layers=12)
            raster.build()
            steps = None if size <= FLAGS.raster_full_max else FLAGS.raster_steps
            raster_seconds, extrapolated = raster_seconds_per_image(raster, steps)
            rows.append((size, size * size * c, multiscale_evals(multiscale), raster_seconds,
                         extrapolated, ms_seconds, multiscale.count_params(),
                         raster.count_params()))
        print(f"done {size}x{size}", flush=True)
    if rows:
        print(f"\nReference samplers, batch 1, {c} channels, {FLAGS.bits} bits, multiscale base "
              f"{b}x{b}; params: multiscale {rows[0][6]:,}, raster {rows[0][7]:,}.")
        print("| size | raster evals | multiscale evals | eval ratio | raster s/image | "
              "multiscale s/image | time ratio |")
        print("|---|---|---|---|---|---|---|")
        for size, r_evals, m_evals, r_sec, extra, m_sec, _, _ in rows:
            mark = " (extrapolated)" if extra else ""
            print(f"| {size}x{size} | {r_evals} | {m_evals} | {r_evals / m_evals:.0f}x | "
                  f"{r_sec:.1f}{mark} | {m_sec:.2f} | {r_sec / m_sec:.0f}x |")
    if b_rows:
        type_b_table(b_rows)


if __name__ == "__main__":
    app.run(main)
