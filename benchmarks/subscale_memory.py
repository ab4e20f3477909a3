"""Training memory and time per example: SPN with a fixed 32x32 slice vs a raster PixelCNN.

Claim (Menick & Kalchbrenner 2019, §3): training an SPN on one slice per example makes
activation memory per example depend on the slice size, not the image size. At image sizes
32, 64, 128, 256 with S = 1, 2, 4, 8 (32x32 slices) the SPN's peak training memory per
example should stay flat (<= 1.5x from 32 to 256), while a raster Gated PixelCNN of the same
width grows with H*W.

Each configuration runs in a fresh subprocess (so peaks do not mix): it builds the model, runs
one warm-up train step (tracing), then `--steps` timed steps. Memory is the peak during the
training steps above the level after building: on GPU `tf.config.experimental.
get_memory_info` (peak device bytes, reset after the warm-up), on CPU the growth of the
process's peak RSS (`resource.getrusage(...).ru_maxrss`) over the steps, warm-up included
(RSS cannot be reset). Widths are small so that the whole table runs in a few minutes on CPU.

Usage: python benchmarks/subscale_memory.py [--batch_size 4] [--steps 3] [--filters 18]
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time

SIZES = (32, 64, 128, 256)
SLICE = 32


def _rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def worker(args):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import numpy as np
    import tensorflow as tf

    from spn_tf import models

    size, gpu = args.image_size, bool(tf.config.list_physical_devices("GPU"))
    width = dict(filters=args.filters, num_layers=args.num_layers, kernel_size=3,
                 first_kernel_size=3, attention_layers=())
    if args.model == "spn":
        model = models.build("spn", size, bits=args.bits, preset="tiny",
                             subscale_factor=size // SLICE, embedder_filters=args.filters,
                             embedder_layers=1, **width)
    else:
        model = models.build("raster", size, bits=args.bits, preset="tiny", **width)
    model.build()
    optimizer = keras.optimizers.Adam(1e-3)
    images = tf.constant(np.random.default_rng(0).integers(
        0, 2 ** args.bits, (args.batch_size, size, size, 3)), tf.int32)

    @tf.function
    def train_step(x):
        with tf.GradientTape() as tape:
            loss = model.compute_loss(x, y_pred=model(x, training=True))
        grads = tape.gradient(loss, model.trainable_weights)
        optimizer.apply(grads, model.trainable_weights)
        return loss

    base_rss = _rss_mib()
    train_step(images).numpy()
    if gpu:
        tf.config.experimental.reset_memory_stats("GPU:0")
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        train_step(images).numpy()
        times.append(time.perf_counter() - start)
    peak = (tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2 ** 20 if gpu
            else _rss_mib() - base_rss)
    print(json.dumps({"mib_per_example": peak / args.batch_size,
                      "ms_per_example": 1000 * float(np.median(times)) / args.batch_size,
                      "params": model.count_params(), "device": "GPU" if gpu else "CPU"}))


def run_config(model, size, args):
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--model", model,
           "--image_size", str(size), "--batch_size", str(args.batch_size), "--steps",
           str(args.steps), "--filters", str(args.filters), "--num_layers",
           str(args.num_layers), "--bits", str(args.bits)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"{model} at {size}x{size} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(args):
    rows = {(m, s): run_config(m, s, args) for m in ("spn", "raster") for s in SIZES}
    device = rows["spn", SIZES[0]]["device"]
    print(f"Training step, batch {args.batch_size}, {args.filters} filters x {args.num_layers} "
          f"gated blocks, RGB at {args.bits} bits, {device}; SPN slices {SLICE}x{SLICE}; "
          f"ratios are to the 32x32 row of the same model.")
    print("| image | S | SPN MiB/ex | SPN ms/ex | raster MiB/ex | raster ms/ex "
          "| SPN mem ratio | raster mem ratio | SPN time ratio | raster time ratio |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    first = {m: rows[m, SIZES[0]] for m in ("spn", "raster")}
    for size in SIZES:
        spn, raster = rows["spn", size], rows["raster", size]
        print(f"| {size} | {size // SLICE} | {spn['mib_per_example']:.1f} "
              f"| {spn['ms_per_example']:.1f} | {raster['mib_per_example']:.1f} "
              f"| {raster['ms_per_example']:.1f} "
              f"| {spn['mib_per_example'] / first['spn']['mib_per_example']:.2f}x "
              f"| {raster['mib_per_example'] / first['raster']['mib_per_example']:.2f}x "
              f"| {spn['ms_per_example'] / first['spn']['ms_per_example']:.2f}x "
              f"| {raster['ms_per_example'] / first['raster']['ms_per_example']:.2f}x |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", default="spn", choices=("spn", "raster"))
    parser.add_argument("--image_size", type=int, default=32)
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--filters", type=int, default=18)
    parser.add_argument("--num_layers", type=int, default=2)
    parser.add_argument("--bits", type=int, default=5)
    parsed = parser.parse_args()
    worker(parsed) if parsed.worker else main(parsed)
