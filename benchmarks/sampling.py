"""Seconds per image of every sampler, compiled and not, on this machine's CPU.

Rows (all `small` presets, untrained weights: time does not depend on them; 8 bits):
  * raster naive, reference — `sampling.raster_sample`: the full decoder once per sub-pixel
    (each call a TF graph, no XLA; `model.sample(..., compiled=False)`);
  * raster naive, compiled — the same loop as one XLA `tf.while_loop`
    (`sampling.compiled_raster_sample`);
  * raster cached, uncompiled / compiled — `sampling.cached_raster_sample` as a `tf.function`
    without / with XLA (the compiled one is `model.sample()`);
  * SPN reference / compiled — `model.sample(compiled=False / True)`;
  * multiscale reference / compiled — likewise (`MultiscalePixelCNN`, O(log N) calls).
"evals" counts sequential network evaluations per image. Loops too slow to run in full
(`--max_seconds`) are timed for `--steps` sub-pixels and extrapolated to the whole image
(marked `*`). Ratios come from one run. Writes a table (stdout, and `--out`.md) and a plot
(`--out`.png, needs matplotlib: `pip install -e .[bench]`).

Usage:
  python benchmarks/sampling.py --sizes=8,16,32 --batch_size=4 --out=runs/benchmarks/sampling
"""

import math
import os
import time

import numpy as np
import tensorflow as tf
from absl import app, flags

from spn_tf import models, sampling

FLAGS = flags.FLAGS
flags.DEFINE_list("sizes", ["8", "16", "32"], "Image sizes (height = width).")
flags.DEFINE_integer("channels", 3, "Image channels.")
flags.DEFINE_integer("bits", 8, "Bits per sub-pixel.")
flags.DEFINE_integer("batch_size", 4, "Images per sampler call.")
flags.DEFINE_integer("steps", 96, "Sub-pixels timed when a loop is extrapolated.")
flags.DEFINE_integer("naive_full_max", 8, "Largest size the eager naive loops run in full.")
flags.DEFINE_list("models", ["raster", "spn", "multiscale"], "Model families to time.")
flags.DEFINE_string("out", "runs/benchmarks/sampling", "Prefix of the .md table and .png plot.")


class _Enough(Exception):
    """Stops a reference loop after the timed steps."""


def _timed(fn):
    """Seconds of the second call (the first traces and compiles)."""
    fn()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _truncated_reference(run, steps, total):
    """Times `run(on_step)` for `steps` sub-pixels; returns `(seconds for total, extrapolated)`."""
    if steps >= total:
        return _timed(lambda: run(None)), False

    def stop(step, _):
        if step == steps:
            raise _Enough

    timings = []
    for _ in range(2):  # the first run traces
        start = time.perf_counter()
        try:
            run(stop)
        except _Enough:
            timings.append(time.perf_counter() - start)
    return timings[-1] / steps * total, True


def raster_rows(size, batch, steps, naive_full_max):
    model = models.build("raster", size, channels=FLAGS.channels, bits=FLAGS.bits,
                         preset="small")
    model.build()
    shape = [batch, size, size, FLAGS.channels]
    images, known = tf.zeros(shape, tf.int32), tf.zeros(shape, tf.bool)
    uniform, temperature = sampling.draw_uniform([0, 1], shape), tf.ones([batch])
    decoder, scale = model.decoder, model.scale
    total = size * size * FLAGS.channels
    full = lambda x: decoder(scale(x))
    seconds, extrapolated = _truncated_reference(
        lambda on_step: sampling.raster_sample(full, images, known, uniform, temperature,
                                               on_step=on_step),
        total if size <= naive_full_max else steps, total)
    naive_evals, cached_evals = total, f"{total} + {size} strips"
    rows = [("raster naive", "reference", seconds / batch, extrapolated, naive_evals)]
    naive_compiled = sampling.compile_loop(
        lambda: sampling.compiled_raster_sample(full, images, known, uniform, temperature))
    rows.append(("raster naive", "compiled", _timed(naive_compiled) / batch, False, naive_evals))
    for jit in (False, True):
        cached = sampling.compile_loop(lambda: sampling.cached_raster_sample(
            decoder, scale, images, known, uniform, temperature), jit_compile=jit)
        rows.append(("raster cached", "compiled" if jit else "uncompiled",
                     _timed(cached) / batch, False, cached_evals))
    return rows, model.count_params()


def model_rows(name, size, batch):
    model = models.build(name, size, channels=FLAGS.channels, bits=FLAGS.bits, preset="small")
    model.build()
    if name == "spn":
        evals = f"{model.num_slices} + {size * size * FLAGS.channels}"
    else:
        evals = str(model.base_size ** 2 * FLAGS.channels + 3 * FLAGS.channels * model.num_scales)
    rows = []
    for compiled in (False, True):
        seconds = _timed(lambda: model.sample(batch, [0, 1], compiled=compiled))
        rows.append((name, "compiled" if compiled else "reference", seconds / batch, False,
                     evals))
    return rows, model.count_params()


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


def main(argv):
    del argv
    table, params = [], {}
    for size in [int(s) for s in FLAGS.sizes]:
        if "raster" in FLAGS.models:
            rows, params["raster"] = raster_rows(size, FLAGS.batch_size, FLAGS.steps,
                                                 FLAGS.naive_full_max)
            table += [(size, *row) for row in rows]
        for name in ("spn", "multiscale"):
            if name in FLAGS.models:
                rows, params[name] = model_rows(name, size, FLAGS.batch_size)
                table += [(size, *row) for row in rows]
        print(f"done {size}x{size}", flush=True)

    def seconds(size, model, mode):
        return next((r[3] for r in table if r[:3] == (size, model, mode)), math.nan)

    lines = [f"Batch {FLAGS.batch_size}, {FLAGS.channels} channels, {FLAGS.bits} bits, `small` "
             f"presets (parameters: {params}); * = timed for {FLAGS.steps} sub-pixels and "
             f"extrapolated.", "",
             "| size | sampler | mode | s/image | sequential evals | vs raster naive ref |",
             "|---|---|---|---|---|---|"]
    for size, model, mode, sec, extrapolated, evals in table:
        ratio = seconds(size, "raster naive", "reference") / sec
        lines.append(f"| {size}x{size} | {model} | {mode} | {sec:.4g}{'*' if extrapolated else ''}"
                     f" | {evals} | {ratio:.1f}x |")
    lines += ["", "| size | cached/naive (both compiled) | cached compiled/naive ref | "
              "compiled/uncompiled cached | compiled/reference naive | multiscale/raster naive "
              "ref |", "|---|---|---|---|---|---|"]
    for size in sorted({r[0] for r in table}):
        naive_ref = seconds(size, "raster naive", "reference")
        cached = seconds(size, "raster cached", "compiled")
        lines.append(
            f"| {size}x{size} | {seconds(size, 'raster naive', 'compiled') / cached:.1f}x | "
            f"{naive_ref / cached:.1f}x | "
            f"{seconds(size, 'raster cached', 'uncompiled') / cached:.1f}x | "
            f"{naive_ref / seconds(size, 'raster naive', 'compiled'):.1f}x | "
            f"{naive_ref / seconds(size, 'multiscale', 'reference'):.1f}x |")
    text = "\n".join(lines)
    print(text)
    os.makedirs(os.path.dirname(FLAGS.out) or ".", exist_ok=True)
    with open(FLAGS.out + ".md", "w") as f:
        f.write(text + "\n")
    _plot(table, FLAGS.out + ".png")
    print(f"wrote {FLAGS.out}.md and {FLAGS.out}.png")


if __name__ == "__main__":
    app.run(main)
