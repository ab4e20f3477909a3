"""Time per image: Multiscale PixelCNN vs a raster Gated PixelCNN, reference vs reference and
compiled vs compiled.

Both models have about the same number of parameters (multiscale `small` preset: ~0.95M;
raster `small` with 12 gated layers: ~0.85M). The ratios are cross-kind (two different models):
they measure the ordering, `N*N*C` sequential network evaluations for raster order against
`base_size**2*C + 3*C*log2(N/base_size)` for the multiscale one (Reed et al. 2017), each model
with its reference sampler (one network call per step, `sample(mode="reference")`) and with its
compiled one (one XLA program; the raster one recomputes only a receptive-field window per
step, `sampling.cached_raster_sample`).

Raster reference sampling at 64x64 and above takes hours on a CPU: above `--raster_full_max`
it runs `--raster_steps` steps and the time is extrapolated to `N*N*C` steps (marked `*`); the
compiled raster sampler runs in full up to `--compiled_raster_max` (n/a above). Every variant
is called once cold ("compile" columns: first call minus fastest warm call), then `--repeats`
times warm, interleaved; the fastest warm call is reported (`timing.py`). Untrained weights:
the time does not depend on them.

Type B groups (`group_pixelcnn_patch=M`, Reed et al. 2017 §3: a shallow PixelCNN over M x M
patches of each group, here 2 gated layers of 48 features) cost `M**2` times type A's
evaluations per group: `base_size**2*C + 3*C*M**2*log2(N/base_size)`; their table compares
them with type A (same kind, different group networks).

Usage:
  python benchmarks/multiscale_sampling.py --sizes=16,32,64,128
  python benchmarks/multiscale_sampling.py --sizes=16,32,64 --raster=false  # type A vs B
"""

import functools

import tensorflow as tf
from absl import app, flags

import timing
from spn_tf import sampling
from spn_tf.inputs import scale_images
from spn_tf.models import build

FLAGS = flags.FLAGS
flags.DEFINE_list("sizes", ["16", "32", "64", "128"], "Image sizes (height = width).")
flags.DEFINE_integer("channels", 3, "Image channels.")
flags.DEFINE_integer("bits", 8, "Bits per sub-pixel.")
flags.DEFINE_integer("base_size", 4, "Multiscale base resolution.")
flags.DEFINE_integer("raster_full_max", 16, "Largest size the raster reference runs in full.")
flags.DEFINE_integer("raster_steps", 96, "Raster reference steps timed above --raster_full_max.")
flags.DEFINE_integer("compiled_raster_max", 64, "Largest size the compiled raster is timed at.")
flags.DEFINE_integer("repeats", 3, "Warm calls per variant (the fastest is reported).")
flags.DEFINE_integer("group_pixelcnn_patch", 4,
                     "Patch side M of the type-B multiscale model timed beside type A (0: none).")
flags.DEFINE_bool("raster", True, "Time the raster PixelCNN (slow); off: type A vs B only.")


def raster_reference_timer(model, steps):
    """Timer of the raster reference sampler, batch 1 (`sample(mode="reference")`'s loop)."""
    shape = [1, model.image_size, model.image_size, model.channels]
    zeros, unknown = tf.zeros(shape, tf.int32), tf.zeros(shape, tf.bool)
    uniform, temperature = sampling.draw_uniform([0, 1], shape), tf.ones([1])
    draws = sampling.Draws(sampling.Mode.REFERENCE, sampling.Loops())
    network = draws.loops.reference(model.decoder,
                                      functools.partial(scale_images, bits=model.bits))
    return timing.truncated(
        lambda on_step: sampling.raster_sample(network, zeros, unknown, uniform, temperature,
                                               on_step=on_step, head=model.distribution,
                                               draws=draws),
        steps, model.num_dims)


def sample_timer(model, compiled):
    """Timer of `model.sample(1, ...)` with its compiled or reference sampler."""
    return timing.whole(lambda: model.sample(1, seed=1, mode="xla" if compiled else "reference"))


def multiscale_evals(model):
    """Sequential network evaluations of the reference sampler (`MultiscalePixelCNN` doc):
    per group `C` (type A) or `min(M, r)**2 * C` (type B), plus the base's."""
    c, m = model.channels, model.group_pixelcnn_patch
    per_group = [min(m, model.resolution(s)) ** 2 if m else 1 for s in range(model.num_scales)]
    return model.base_size ** 2 * c + 3 * c * sum(per_group)


def _cell(t):
    if t is None:
        return "n/a", "n/a"
    return f"{t.warm:.3g}{'*' if t.extrapolated else ''}", f"{t.compile:.1f}"


def _ratio(slow, fast):
    return "n/a" if slow is None or fast is None else f"{slow.warm / fast.warm:.0f}x"


def main(argv):
    del argv
    c, b = FLAGS.channels, FLAGS.base_size
    rows = []
    for size in [int(s) for s in FLAGS.sizes]:
        models = {"A": build("multiscale", size, channels=c, bits=FLAGS.bits, preset="small",
                             base_size=b)}
        if FLAGS.group_pixelcnn_patch:
            models["B"] = build("multiscale", size, channels=c, bits=FLAGS.bits,
                                preset="small", base_size=b,
                                group_pixelcnn_patch=FLAGS.group_pixelcnn_patch)
        if FLAGS.raster:
            models["raster"] = build("raster", size, channels=c, bits=FLAGS.bits,
                                     preset="small", num_layers=12)
        timers = {}
        for name, model in models.items():
            model.build()
            if name == "raster":
                timers["raster", "reference"] = raster_reference_timer(
                    model, model.num_dims if size <= FLAGS.raster_full_max
                    else FLAGS.raster_steps)
                if size <= FLAGS.compiled_raster_max:
                    timers["raster", "compiled"] = sample_timer(model, True)
            else:
                timers[name, "reference"] = sample_timer(model, False)
                timers[name, "compiled"] = sample_timer(model, True)
        rows.append(dict(size=size, t=timing.measure(timers, FLAGS.repeats),
                         evals={k: multiscale_evals(m) if k != "raster" else m.num_dims
                                for k, m in models.items()},
                         params={k: m.count_params() for k, m in models.items()}))
        print(f"done {size}x{size}", flush=True)
    params = ", ".join(f"{k} {v:,}" for k, v in rows[0]["params"].items())
    print(f"\nBatch 1, {c} channels, {FLAGS.bits} bits, multiscale base {b}x{b}; parameters: "
          f"{params}. Seconds per image: fastest of {FLAGS.repeats} warm calls; compile: first "
          f"call minus fastest warm call; * = extrapolated from {FLAGS.raster_steps} steps.")
    if FLAGS.raster:
        print("\nCross-kind (raster vs multiscale type A), like samplers on both sides:")
        print("| size | raster evals | multiscale evals | eval ratio | raster ref s | "
              "multiscale ref s | ref/ref | raster compiled s | multiscale compiled s | "
              "compiled/compiled | compile s raster, multiscale |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            t, e = r["t"], r["evals"]
            raster_ref, ms_ref = _cell(t["raster", "reference"]), _cell(t["A", "reference"])
            raster_xla = _cell(t.get(("raster", "compiled")))
            ms_xla = _cell(t["A", "compiled"])
            print(f"| {r['size']}x{r['size']} | {e['raster']} | {e['A']} | "
                  f"{e['raster'] / e['A']:.0f}x | {raster_ref[0]} | {ms_ref[0]} | "
                  f"{_ratio(t['raster', 'reference'], t['A', 'reference'])} | {raster_xla[0]} | "
                  f"{ms_xla[0]} | {_ratio(t.get(('raster', 'compiled')), t['A', 'compiled'])} "
                  f"| {raster_xla[1]}, {ms_xla[1]} |")
    if FLAGS.group_pixelcnn_patch:
        print(f"\nType B (patch PixelCNN, M={FLAGS.group_pixelcnn_patch}) vs type A:")
        print("| size | evals A | evals B | B/A | ref A s | ref B s | B/A | compiled A s | "
              "compiled B s | B/A | compile s A, B |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            t, e = r["t"], r["evals"]
            print(f"| {r['size']}x{r['size']} | {e['A']} | {e['B']} | {e['B'] / e['A']:.1f}x | "
                  f"{_cell(t['A', 'reference'])[0]} | {_cell(t['B', 'reference'])[0]} | "
                  f"{t['B', 'reference'].warm / t['A', 'reference'].warm:.1f}x | "
                  f"{_cell(t['A', 'compiled'])[0]} | {_cell(t['B', 'compiled'])[0]} | "
                  f"{t['B', 'compiled'].warm / t['A', 'compiled'].warm:.1f}x | "
                  f"{_cell(t['A', 'compiled'])[1]}, {_cell(t['B', 'compiled'])[1]} |")


if __name__ == "__main__":
    app.run(main)
