"""Seconds per image of every sampler, compiled and not, on this machine's CPU.

Rows (all `small` presets, untrained weights: time does not depend on them; 8 bits):
  * raster naive, reference — `sampling.raster_sample`: the full decoder once per sub-pixel,
    each call one graph function traced once (`model.sample(..., mode="reference")`);
  * raster naive, compiled — the same loop as one XLA `tf.while_loop`
    (`sampling.compiled_raster_sample`);
  * raster cached, uncompiled / compiled — `sampling.cached_raster_sample` as a `tf.function`
    without / with XLA (the compiled one is `model.sample()`);
  * SPN reference / compiled — `model.sample(mode="reference" / "xla")`;
  * multiscale reference / compiled — likewise (`MultiscalePixelCNN`, O(log N) calls).
"evals" counts sequential network evaluations per image. Every variant is called once cold
(its "compile" column: first call minus fastest warm call: tracing and XLA compilation), then
`--repeats` times warm, interleaved; "s/image" is the fastest warm call (the median beside
it), so load from other jobs on a shared machine inflates it least (`timing.py`). The naive
reference loop above `--naive_full_max` is timed for `--steps` sub-pixels and extrapolated
(marked `*`). Ratios: like for like first (the same model and the same images, or the same
kind of sampler), then cross-kind ratios between different models, labelled so. Writes the
tables (stdout, and `--out`.md) and a plot (`--out`.png, needs matplotlib:
`pip install -e .[bench]`).

Large multiscale rows (`--multiscale_sizes=256,512`): one image of N x N x 3 from the
`small` preset with the paper's 8x8 base (`configs/multiscale_celebahq512.cfg`), compiled;
each size in a fresh process, which reports its cold call (incl. the XLA compile), its warm
call, the sequential network calls (`8*8*3 + 3*3*log2(N/8)`) and the process's peak resident
memory (`resource.getrusage`: on a CPU TF's allocator stats are not available).

Video rows (`--video_sizes=16,64`): seconds per predicted frame of
`MultiscaleVideoPixelCNN.sample_video`, `small` preset, one clip of `--video_frames` frames
(the first given), compiled (each frame by the multiscale model's XLA loops) and reference;
cold = the first call (incl. tracing and the XLA compile), warm = the fastest later call.

Usage:
  python benchmarks/sampling.py --sizes=8,16,32 --batch_size=4 --out=runs/benchmarks/sampling
  python benchmarks/sampling.py --sizes= --multiscale_sizes=256,512 --video_sizes=16,64
"""

import functools
import json
import math
import os
import resource
import subprocess
import sys
import time

import tensorflow as tf
from absl import app, flags

import timing
from spn_tf import models, sampling
from spn_tf.inputs import scale_images

FLAGS = flags.FLAGS
flags.DEFINE_list("sizes", ["8", "16", "32"], "Image sizes (height = width).")
flags.DEFINE_integer("channels", 3, "Image channels.")
flags.DEFINE_integer("bits", 8, "Bits per sub-pixel.")
flags.DEFINE_integer("batch_size", 4, "Images per sampler call.")
flags.DEFINE_integer("steps", 96, "Sub-pixels timed when the naive reference is extrapolated.")
flags.DEFINE_integer("naive_full_max", 8, "Largest size the naive reference runs in full.")
flags.DEFINE_integer("repeats", 3, "Warm calls per variant (the fastest is reported).")
flags.DEFINE_list("models", ["raster", "spn", "multiscale"], "Model families to time.")
flags.DEFINE_string("out", "runs/benchmarks/sampling", "Prefix of the .md table and .png plot.")
flags.DEFINE_list("multiscale_sizes", [], "Large multiscale rows (e.g. 256,512), 8x8 base.")
flags.DEFINE_integer("one_multiscale", 0, "Internal: time one large multiscale size, print JSON.")
flags.DEFINE_list("video_sizes", [], "Video rows: frame sizes (height = width), e.g. 16,64.")
flags.DEFINE_integer("video_frames", 4, "Frames per timed clip (the first given).")


def one_large_multiscale(size):
    """Cold and warm seconds of one compiled N x N sample, its sequential calls, peak RSS."""
    model = models.build("multiscale", size, channels=3, bits=FLAGS.bits, preset="small",
                         base_size=8)
    model.build()
    times = []
    for seed in range(2):
        start = time.perf_counter()
        model.sample(1, seed).numpy()
        times.append(time.perf_counter() - start)
    calls = 8 * 8 * 3 + 3 * 3 * int(math.log2(size // 8))
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"size": size, "cold_s": times[0], "warm_s": times[1], "calls": calls,
            "peak_rss_mib": peak_mib, "parameters": model.count_params()}


def large_multiscale_table(sizes):
    """Markdown rows of `one_large_multiscale`, each size in its own process."""
    lines = ["| size | model | compiled, cold (incl. compile) s | warm s | sequential calls | "
             "peak RSS MiB |", "|---|---|---|---|---|---|"]
    for size in sizes:
        result = subprocess.run([sys.executable, __file__, "--sizes=", f"--bits={FLAGS.bits}",
                                 f"--one_multiscale={size}"], capture_output=True, text=True,
                                check=True)
        row = json.loads(result.stdout.strip().splitlines()[-1])
        lines.append(f"| {size}x{size} | multiscale small, base 8 ({row['parameters']:,} "
                     f"params) | {row['cold_s']:.1f} | {row['warm_s']:.1f} | {row['calls']} | "
                     f"{row['peak_rss_mib']:.0f} |")
    return lines


def video_table(sizes):
    """Markdown rows: seconds per predicted frame of `sample_video`, compiled and reference."""
    lines = ["| frame | sampler | cold s/frame (incl. compile) | warm s/frame | parameters |",
             "|---|---|---|---|---|"]
    predicted = FLAGS.video_frames - 1
    for size in sizes:
        model = models.build("multiscale_video", size, channels=3, bits=FLAGS.bits,
                             preset="small", cond={"action": 2}, num_frames=FLAGS.video_frames)
        model.build()
        first = tf.zeros([1, size, size, 3], tf.int32)
        actions = tf.zeros([1, predicted, 2])
        for compiled in (True, False):
            times = []
            for seed in range(1 + FLAGS.repeats):
                start = time.perf_counter()
                model.sample_video(first, actions, seed,
                                   mode="xla" if compiled else "reference").numpy()
                times.append((time.perf_counter() - start) / predicted)
            lines.append(f"| {size}x{size}x3 | {'compiled' if compiled else 'reference'} | "
                         f"{times[0]:.3f} | {min(times[1:]):.3f} | {model.count_params():,} |")
    return lines


def raster_timers(size, batch):
    """Timers of the four raster loops over one `small` model; also its evals and params."""
    model = models.build("raster", size, channels=FLAGS.channels, bits=FLAGS.bits,
                         preset="small")
    model.build()
    shape = [batch, size, size, FLAGS.channels]
    images, known = tf.zeros(shape, tf.int32), tf.zeros(shape, tf.bool)
    uniform, temperature = sampling.draw_uniform([0, 1], shape), tf.ones([batch])
    decoder = model.decoder
    scale = functools.partial(scale_images, bits=model.bits)
    total = size * size * FLAGS.channels
    loops = sampling.Loops()
    draws = {mode: sampling.Draws(mode, loops) for mode in sampling.Mode}
    network = loops.reference(decoder, scale)
    naive_compiled = tf.function(lambda: sampling.compiled_raster_sample(
        lambda x, context: decoder(scale(x), context=context), images, known, uniform,
        temperature, head=model.distribution, draws=draws[sampling.Mode.XLA]),
        jit_compile=True, autograph=False)
    cached = {jit: loops.traced(
        "cached", draws[sampling.Mode.XLA if jit else sampling.Mode.GRAPH],
        lambda draws: sampling.cached_raster_sample(decoder, scale, images, known, uniform,
                                                    temperature, head=model.distribution,
                                                    draws=draws), model.variables)
        for jit in (False, True)}
    timers = {
        ("raster naive", "reference"): timing.truncated(
            lambda on_step: sampling.raster_sample(network, images, known, uniform,
                                                   temperature, on_step=on_step,
                                                   head=model.distribution,
                                                   draws=draws[sampling.Mode.REFERENCE]),
            total if size <= FLAGS.naive_full_max else FLAGS.steps, total),
        ("raster naive", "compiled"): timing.whole(naive_compiled),
        ("raster cached", "uncompiled"): timing.whole(cached[False]),
        ("raster cached", "compiled"): timing.whole(cached[True]),
    }
    evals = {"raster naive": str(total), "raster cached": f"{total} + {size} strips"}
    return timers, evals, model.count_params()


def model_timers(name, size, batch):
    """Timers of a model's reference and compiled `sample`; also its evals and params."""
    model = models.build(name, size, channels=FLAGS.channels, bits=FLAGS.bits, preset="small")
    model.build()
    if name == "spn":
        evals = f"{model.num_slices} + {size * size * FLAGS.channels}"
    else:
        evals = str(model.base_size ** 2 * FLAGS.channels + 3 * FLAGS.channels * model.num_scales)
    timers = {(name, "compiled" if mode == "xla" else "reference"): timing.whole(
        lambda mode=mode: model.sample(batch, [0, 1], mode=mode))
        for mode in ("reference", "xla")}
    return timers, {name: evals}, model.count_params()


def _plot(table, path):
    import matplotlib  # the `bench` extra
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 5))
    for label in sorted({(r[1], r[2]) for r in table}, key=str):
        points = sorted((r[0], r[3]) for r in table if (r[1], r[2]) == label)
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o",
                label=" ".join(label))
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("image size (pixels square, 3 channels)")
    ax.set_ylabel("seconds per image (CPU)")
    ax.set_title("spn_tf sampling: seconds per image (lower is better)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def _ratio_tables(seconds, sizes):
    """Markdown lines: like-for-like ratios, then cross-kind ratios (different models)."""
    like = [("raster cached / naive, both compiled", ("raster naive", "compiled"),
             ("raster cached", "compiled")),
            ("raster naive compiled / reference", ("raster naive", "reference"),
             ("raster naive", "compiled")),
            ("raster cached compiled / uncompiled", ("raster cached", "uncompiled"),
             ("raster cached", "compiled")),
            ("SPN compiled / reference", ("spn", "reference"), ("spn", "compiled")),
            ("multiscale compiled / reference", ("multiscale", "reference"),
             ("multiscale", "compiled"))]
    cross = [("multiscale vs raster cached, both compiled", ("raster cached", "compiled"),
              ("multiscale", "compiled")),
             ("multiscale vs raster naive, both reference", ("raster naive", "reference"),
              ("multiscale", "reference")),
             ("SPN vs raster cached, both compiled", ("raster cached", "compiled"),
              ("spn", "compiled")),
             ("SPN vs raster naive, both reference", ("raster naive", "reference"),
              ("spn", "reference"))]
    lines = []
    for title, ratios in (("Like for like (same model and images, or same sampler kind): "
                           "speed-up, slower / faster", like),
                          ("Cross-kind (different models, see parameters): speed-up of the "
                           "second over the first", cross)):
        lines += ["", title, "", "| ratio | " + " | ".join(f"{s}x{s}" for s in sizes) + " |",
                  "|---|" + "---|" * len(sizes)]
        for label, slow, fast in ratios:
            cells = [seconds(s, *slow) / seconds(s, *fast) for s in sizes]
            lines.append(f"| {label} | " + " | ".join(
                "n/a" if math.isnan(c) else f"{c:.1f}x" for c in cells) + " |")
    return lines


def main(argv):
    del argv
    if FLAGS.one_multiscale:
        print(json.dumps(one_large_multiscale(FLAGS.one_multiscale)))
        return
    if FLAGS.multiscale_sizes:
        print("\n".join(large_multiscale_table([int(s) for s in FLAGS.multiscale_sizes])))
    if FLAGS.video_sizes:
        print("\n".join(video_table([int(s) for s in FLAGS.video_sizes])), flush=True)
    if not FLAGS.sizes:
        return
    table, params, sizes = [], {}, [int(s) for s in FLAGS.sizes]
    for size in sizes:
        timers, evals = {}, {}
        for name in FLAGS.models:
            make = raster_timers if name == "raster" else functools.partial(model_timers, name)
            more_timers, more_evals, params[name] = make(size, FLAGS.batch_size)
            timers.update(more_timers)
            evals.update(more_evals)
        for (model, mode), t in timing.measure(timers, FLAGS.repeats).items():
            table.append((size, model, mode, t, evals[model]))
        print(f"done {size}x{size}", flush=True)

    def seconds(size, model, mode):
        return next((r[3].warm for r in table if r[:3] == (size, model, mode)), math.nan)

    lines = [f"Batch {FLAGS.batch_size}, {FLAGS.channels} channels, {FLAGS.bits} bits, `small` "
             f"presets (parameters: {params}); s/image: fastest of {FLAGS.repeats} warm calls "
             f"(median beside it); compile: first call minus fastest warm call, seconds per "
             f"call of {FLAGS.batch_size} images; * = timed for {FLAGS.steps} sub-pixels and "
             f"extrapolated.", "",
             "| size | sampler | mode | s/image | median | compile s | sequential evals |",
             "|---|---|---|---|---|---|---|"]
    for size, model, mode, t, evals in table:
        mark = "*" if t.extrapolated else ""
        lines.append(f"| {size}x{size} | {model} | {mode} | "
                     f"{t.warm / FLAGS.batch_size:.4g}{mark} | "
                     f"{t.median / FLAGS.batch_size:.4g}{mark} | {t.compile:.2f} | {evals} |")
    lines += _ratio_tables(seconds, sizes)
    text = "\n".join(lines)
    print(text)
    os.makedirs(os.path.dirname(FLAGS.out) or ".", exist_ok=True)
    with open(FLAGS.out + ".md", "w") as f:
        f.write(text + "\n")
    _plot([(size, model, mode, t.warm / FLAGS.batch_size) for size, model, mode, t, _ in table],
          FLAGS.out + ".png")
    print(f"wrote {FLAGS.out}.md and {FLAGS.out}.png")


if __name__ == "__main__":
    app.run(main)
