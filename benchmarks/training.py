"""Training throughput: raster, SPN and multiscale at 32x32x3, 8 bits, `small` presets.

Per model, five configurations, each in a fresh subprocess (logical CPU devices and the
precision policy must be set before TF initialises):

  * `one device` — the custom loop (`spn_tf.training.TrainStep`), float32, no XLA: the base;
  * `mirrored x2` — MirroredStrategy over 2 logical CPU devices (same global batch);
  * `bfloat16` — the `mixed_bfloat16` policy;
  * `xla` — the per-replica loss and gradients XLA-compiled;
  * `fit` — plain `model.fit` on the same model, optimizer and batches (one device, float32),
    timed in the same process as the custom loop, the two interleaved (loop, fit, loop, fit,
    ...) so that a busy spell on a shared machine slows both: the loop's step-time overhead is
    its fastest run over `fit`'s fastest run there.

Batches are random images held in memory (the input pipeline is not measured). Each
subprocess runs `--warmup` steps (tracing, compilation), then `--repeats` timed runs of
`--steps` steps; images/s are reported for the fastest run (the least disturbed on a shared
machine) and the median run. The custom loop's runs end by reading the loss (a device sync);
a `fit` run is one `fit(steps_per_epoch=steps)` call, its own per-call set-up included.

Usage: python benchmarks/training.py [--batch_size 16] [--steps 4] [--warmup 2] [--repeats 3]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

MODELS = ("raster", "spn", "multiscale")
# name: (strategy, logical CPU devices, mixed_bfloat16, xla, also time `fit`)
CONFIGS = {
    "one device": ("default", 0, False, False, False),
    "mirrored x2": ("mirrored", 2, False, False, False),
    "bfloat16": ("default", 0, True, False, False),
    "xla": ("default", 0, False, True, False),
    "fit": ("default", 0, False, False, True),
}


def worker(args):
    """One model and configuration: prints `{"loop"[, "fit"]: [seconds per run]}` as JSON."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import numpy as np
    import tensorflow as tf

    from spn_tf import models, strategies
    from spn_tf.training.step import TrainStep

    strategy_name, cpu_devices, bfloat16, xla, with_fit = CONFIGS[args.config]
    if cpu_devices:
        strategies.split_cpu(cpu_devices)
    if bfloat16:
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    keras.utils.set_random_seed(0)
    strategy = strategies.make_strategy(strategy_name)
    images = np.random.default_rng(0).integers(0, 256, (args.batch_size, 32, 32, 3), np.int32)
    batches = tf.data.Dataset.from_tensors({"images": images}).repeat()
    with strategy.scope():
        model = models.build(args.model, 32, channels=3, bits=8, preset="small")
        model.build()
        optimizer = keras.optimizers.Adam(1e-4)
        optimizer.build(model.trainable_variables)
    step = TrainStep(model, optimizer, strategy, xla)
    iterator = iter(strategy.experimental_distribute_dataset(batches))

    def loop(steps):
        for _ in range(steps):
            loss, _ = step(iterator)
        float(loss)  # waits for the device

    runs = {"loop": loop}
    if with_fit:
        model.compile(optimizer=optimizer, jit_compile=xla)
        runs["fit"] = lambda steps: model.fit(batches, steps_per_epoch=steps, epochs=1,
                                              verbose=0)
    for run in runs.values():
        run(args.warmup)
    seconds = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run(args.steps)
            seconds[name].append(time.perf_counter() - start)
    print(json.dumps(seconds))


def _run(args, model, config):
    cmd = [sys.executable, __file__, "--worker", "--model", model, "--config", config,
           "--batch_size", str(args.batch_size), "--steps", str(args.steps),
           "--warmup", str(args.warmup), "--repeats", str(args.repeats)]
    result = subprocess.run(cmd, capture_output=True, text=True,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    if result.returncode:
        raise RuntimeError(f"{model} / {config} failed:\n{result.stderr[-3000:]}")
    seconds = json.loads(result.stdout.strip().splitlines()[-1])
    images = args.batch_size * args.steps
    return {name: (images / min(runs), images / statistics.median(runs))
            for name, runs in seconds.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    header = "| model | " + " | ".join(CONFIGS) + " | loop / fit step time (same process) |"
    print(f"images/s, fastest (median) of {args.repeats} runs of {args.steps} steps, batch "
          f"{args.batch_size}, 32x32x3 at 8 bits, small presets, {args.warmup} warm-up steps\n")
    print(header)
    print("|" + "---|" * (len(CONFIGS) + 2))
    for model in args.models.split(","):
        runs = {config: _run(args, model, config) for config in CONFIGS}
        rates = {config: run["fit" if config == "fit" else "loop"] for config, run in runs.items()}
        cells = [f"{fast:.1f} ({median:.1f})" for fast, median in rates.values()]
        overhead = runs["fit"]["fit"][0] / runs["fit"]["loop"][0]
        print(f"| {model} | " + " | ".join(cells) + f" | {overhead:.3f} |", flush=True)


if __name__ == "__main__":
    main()
