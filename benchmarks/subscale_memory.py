"""Training memory and time per example: SPN with a fixed 32x32 slice vs a raster PixelCNN.

Claim (Menick & Kalchbrenner 2019, §3): training an SPN on one slice per example makes
activation memory per example depend on the slice size, not the image size. At image sizes
32, 64, 128, 256 with S = 1, 2, 4, 8 (32x32 slices) the SPN's training memory per example
should stay flat (goal: <= 1.5x from 32 to 256), while a raster Gated PixelCNN of the same
width grows with H*W.

Memory per example is the slope of peak memory over batch sizes (`--batch_sizes`, least
squares), so fixed costs (weights, optimizer slots, TF's own buffers) fall in the intercept,
not in the per-example figure. Each (model, image size) runs in a fresh subprocess: it builds
the model and, per batch size, runs one warm-up train step (tracing), resets TF's memory
statistics and runs `--steps` timed steps. Peak memory is TF's allocator peak over those steps
(`tf.config.experimental.get_memory_info`, which works on CPU too and can be reset between
batch sizes, unlike the process's peak RSS; it does not see memory allocated outside TF's
allocator, such as oneDNN scratch). Time per example is the median step time at the largest
batch size, divided by it.

The SPN decoder has causal self-attention over its slice (`--attention_layer`, as in the
paper); the raster model is the Gated PixelCNN baseline without attention (attention over the
whole 256x256 image would take 65536**2 scores per head and example). Widths are small so
that the table runs in minutes on CPU.

Usage: python benchmarks/subscale_memory.py [--batch_sizes 1,2,4,8] [--steps 3] [--filters 18]
"""

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

SIZES = (32, 64, 128, 256)
SLICE = 32


def worker(args):
    """One model and image size: prints, per batch size, TF's peak MiB and ms per step."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import tensorflow as tf

    from spn_tf import models

    size = args.image_size
    device = "GPU:0" if tf.config.list_physical_devices("GPU") else "CPU:0"
    width = dict(filters=args.filters, num_layers=args.num_layers, kernel_size=3,
                 first_kernel_size=3)
    if args.model == "spn":
        model = models.build("spn", size, bits=args.bits, preset="tiny",
                             subscale_factor=size // SLICE, embedder_filters=args.filters,
                             embedder_layers=1, attention_layers=(args.attention_layer,)
                             if args.attention_layer >= 0 else (), **width)
    else:
        model = models.build("raster", size, bits=args.bits, preset="tiny",
                             attention_layers=(), **width)
    model.build()
    optimizer = keras.optimizers.Adam(1e-3)

    @tf.function
    def train_step(x):
        with tf.GradientTape() as tape:
            loss = model.compute_loss(x, y_pred=model(x, training=True))
        grads = tape.gradient(loss, model.trainable_weights)
        optimizer.apply(grads, model.trainable_weights)
        return loss

    runs = []
    for batch_size in _batch_sizes(args):
        images = tf.constant(np.random.default_rng(0).integers(
            0, 2 ** args.bits, (batch_size, size, size, 3)), tf.int32)
        train_step(images).numpy()  # traces this batch size
        tf.config.experimental.reset_memory_stats(device)
        times = []
        for _ in range(args.steps):
            start = time.perf_counter()
            train_step(images).numpy()
            times.append(time.perf_counter() - start)
        runs.append({"peak_mib": tf.config.experimental.get_memory_info(device)["peak"] / 2 ** 20,
                     "ms_per_step": 1000 * float(np.median(times))})
    print(json.dumps({"runs": runs, "params": model.count_params(), "device": device}))


def _batch_sizes(args):
    return [int(b) for b in args.batch_sizes.split(",")]


def per_example(model, size, args):
    """A fresh subprocess for `model` at `size`: MiB per example (slope of TF's peak over batch
    sizes), ms per example at the largest batch, parameters, device."""
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--model", model,
           "--image_size", str(size), "--batch_sizes", args.batch_sizes, "--steps",
           str(args.steps), "--filters", str(args.filters), "--num_layers",
           str(args.num_layers), "--attention_layer", str(args.attention_layer), "--bits",
           str(args.bits)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"{model} at {size}x{size} failed:\n{out.stderr[-2000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    batches, runs = _batch_sizes(args), result["runs"]
    peaks = [r["peak_mib"] for r in runs]
    return {"mib": float(np.polyfit(batches, peaks, 1)[0]), "peaks": peaks,
            "ms": runs[-1]["ms_per_step"] / batches[-1], "params": result["params"],
            "device": result["device"]}


def main(args):
    rows = {}
    for size in SIZES:
        for model in ("spn", "raster"):
            rows[model, size] = per_example(model, size, args)
        print(f"done {size}x{size}", file=sys.stderr, flush=True)
    first = {m: rows[m, SIZES[0]] for m in ("spn", "raster")}
    attention = (f"self-attention after block {args.attention_layer}"
                 if args.attention_layer >= 0 else "no attention")
    print(f"Training step, {args.filters} filters x {args.num_layers} gated blocks, RGB at "
          f"{args.bits} bits, {rows['spn', SIZES[0]]['device']}; SPN: {SLICE}x{SLICE} slices, "
          f"{attention}; raster: no attention. MiB/ex = slope of peak memory over batch sizes "
          f"{args.batch_sizes} (TF allocator peak); ms/ex at batch "
          f"{args.batch_sizes.split(',')[-1]}; xN = ratio to the 32x32 row of the same model. "
          f"Parameters at 32 / 256: SPN {first['spn']['params']:,} / "
          f"{rows['spn', SIZES[-1]]['params']:,}, raster {first['raster']['params']:,}.")
    print("| image | S | SPN MiB/ex | SPN x32 | raster MiB/ex | raster x32 | SPN ms/ex | "
          "raster ms/ex |")
    print("|---|---|---|---|---|---|---|---|")
    for size in SIZES:
        spn, raster = rows["spn", size], rows["raster", size]
        print(f"| {size} | {size // SLICE} | {spn['mib']:.2f} "
              f"| {spn['mib'] / first['spn']['mib']:.2f}x | {raster['mib']:.2f} "
              f"| {raster['mib'] / first['raster']['mib']:.2f}x "
              f"| {spn['ms']:.1f} | {raster['ms']:.1f} |")
    print(f"\nPeak MiB (TF allocator) at batch sizes {args.batch_sizes}, the points of the fits:")
    print("| image | SPN | raster |")
    print("|---|---|---|")
    for size in SIZES:
        print(f"| {size} | " + " | ".join(", ".join(f"{p:.0f}" for p in rows[m, size]["peaks"])
                                         for m in ("spn", "raster")) + " |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", default="spn", choices=("spn", "raster"))
    parser.add_argument("--image_size", type=int, default=32)
    parser.add_argument("--batch_sizes", default="1,2,4,8",
                        help="Batch sizes the per-example slope is fitted over.")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--filters", type=int, default=18)
    parser.add_argument("--num_layers", type=int, default=2)
    parser.add_argument("--attention_layer", type=int, default=1,
                        help="SPN decoder block followed by self-attention (-1: none).")
    parser.add_argument("--bits", type=int, default=5)
    parsed = parser.parse_args()
    worker(parsed) if parsed.worker else main(parsed)
