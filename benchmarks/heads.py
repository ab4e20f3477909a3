"""The two likelihood heads side by side: categorical (256 logits per sub-pixel) against the
discretized logistic mixture (`3 * num_mixtures` outputs), at equal parameter count.

Per model kind (default: raster), two models of about the same size: the categorical one at
its preset's width, the mixture one at the width (a multiple of 3) whose parameter count is
closest (the mixture's head is ~17x narrower, so it gets wider blocks). For each, in this one
run and interleaved so that a busy spell slows both:

  * `log_prob` images/s — batch 16 of fresh random 8-bit images, a plain-graph
    `tf.function`, median of `--steps` calls;
  * training images/s — one Adam step as `fit` takes it (`model(x, training=True)` and
    `compute_loss` under a tape), median of `--steps` steps;
  (both heads in turn, twice, the better round kept;)
  * sampling seconds — `model.sample(batch, seed)` (compiled, XLA), the second of two calls;
  * held-out bits/dim after the same training time: each model trains on the embedded photos
    (32x32x3 at 8 bits, batches of 16, Adam 1e-3) for `--train_seconds` of wall-clock in
    turns of `--turn_seconds` (A, B, A, B, ...), then both are evaluated exactly on the
    held-out crops. Equal wall-clock on the same machine in alternation stands in for equal
    CPU time.

Usage: python benchmarks/heads.py [--kinds raster] [--train_seconds 600] [--turn_seconds 30]
  [--num_mixtures 5] [--steps 10]
"""

import argparse
import json
import statistics
import time

import spn_tf  # noqa: F401  (first: it silences TensorFlow's start-up lines)
import keras
import numpy as np
import tensorflow as tf

from spn_tf import data, models
from spn_tf.training.evaluation import mean_bits_per_dim

SIZE, CHANNELS, BITS, BATCH = 32, 3, 8, 16


def build(kind, head, num_mixtures, filters=None):
    overrides = {} if filters is None else {"filters": filters}
    if head == "logistic_mixture":
        overrides["num_mixtures"] = num_mixtures
    model = models.build(kind, SIZE, channels=CHANNELS, bits=BITS, preset="small", head=head,
                         **overrides)
    model.build()
    return model


def equal_size_pair(kind, num_mixtures):
    """The categorical `small` model and the mixture model of the closest parameter count."""
    categorical = build(kind, "categorical", num_mixtures)
    target = categorical.count_params()
    best = None
    for filters in range(categorical.filters, 3 * categorical.filters, 3):
        params = build(kind, "logistic_mixture", num_mixtures, filters).count_params()
        if best is None or abs(params - target) < abs(best[1] - target):
            best = (filters, params)
        if params > target:
            break
    return categorical, build(kind, "logistic_mixture", num_mixtures, best[0])


def train_step(model, optimizer):
    """A `tf.function(images) -> loss`: one step of `optimizer` (built on the model's
    trainable variables) as `fit` takes it (`model.compute_loss` of `model(x,
    training=True)` under a tape)."""

    @tf.function(autograph=False)
    def step(images):
        with tf.GradientTape() as tape:
            loss = model.compute_loss(x=images, y_pred=model(images, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply(grads, model.trainable_variables)
        return loss
    return step


class Trainer:
    """One model's Adam steps as `fit` takes them, run in turns of a time budget."""

    def __init__(self, model, batches=None, learning_rate=1e-3):
        self.model = model
        self.optimizer = keras.optimizers.Adam(learning_rate)
        self.optimizer.build(model.trainable_variables)
        self.batches = batches or iter(data.load(
            "embedded", image_size=SIZE, bits=BITS, channels=CHANNELS, batch_size=BATCH,
            repeat=True))
        self.steps, self.seconds = 0, 0.0
        self.step = train_step(model, self.optimizer)

    def train_for(self, seconds, clock=time.perf_counter):
        """Steps until `seconds` of `clock` (wall by default; `time.process_time`: CPU)."""
        start = clock()
        while clock() - start < seconds:
            self.step(next(self.batches)["images"]).numpy()
            self.steps += 1
        self.seconds += clock() - start


def median_ms(fn, steps):
    for _ in range(2):
        fn()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def throughput(models_by_head, steps, rounds=2):
    """`{head: {"log_prob", "train"}}` images/s of fresh random batches: the heads measured in
    turn, `rounds` times (A, B, A, B), the best round kept (the least disturbed)."""
    rng = np.random.default_rng(0)
    images = lambda: tf.constant(rng.integers(0, 2 ** BITS, (  # noqa: E731
        BATCH, SIZE, SIZE, CHANNELS)), tf.int32)
    calls = {head: {"log_prob": tf.function(model.log_prob, autograph=False),
                    "train": Trainer(model).step} for head, model in models_by_head.items()}
    out = {head: {"log_prob": 0.0, "train": 0.0} for head in models_by_head}
    for _ in range(rounds):
        for head, fns in calls.items():
            for name, fn in fns.items():
                rate = BATCH / median_ms(lambda: fn(images()).numpy(), steps) * 1e3
                out[head][name] = max(out[head][name], rate)
    return out


def sampling_seconds(model, batch):
    model.sample(batch, 0)  # compiles
    start = time.perf_counter()
    model.sample(batch, 1).numpy()
    return time.perf_counter() - start


def run(kind, args):
    categorical, mixture = equal_size_pair(kind, args.num_mixtures)
    pair = {"categorical": categorical, "logistic_mixture": mixture}
    speed = throughput(pair, args.steps)
    trainers = {head: Trainer(model) for head, model in pair.items()}
    elapsed = 0.0
    while elapsed < args.train_seconds:
        for trainer in trainers.values():
            trainer.train_for(args.turn_seconds)
        elapsed += args.turn_seconds
    held_out = data.load("embedded", split="test", image_size=SIZE, bits=BITS,
                         channels=CHANNELS, batch_size=BATCH, shuffle=False)
    rows = {}
    for head, model in pair.items():
        rows[head] = dict(
            params=model.count_params(), filters=model.filters, **speed[head],
            sample_seconds=sampling_seconds(model, args.sample_batch),
            train_steps=trainers[head].steps, train_seconds=trainers[head].seconds,
            held_out_bits_per_dim=mean_bits_per_dim(model, held_out))
    print(f"\n{kind} (small preset widths), {SIZE}x{SIZE}x{CHANNELS} at {BITS} bits, batch "
          f"{BATCH}; mixture of {args.num_mixtures} logistics")
    print(f"  {'head':18s} {'params':>8s} {'filters':>7s} {'log_prob/s':>10s} {'train/s':>8s} "
          f"{'sample s':>9s} {'steps':>6s} {'held-out bits/dim':>18s}")
    for head, r in rows.items():
        print(f"  {head:18s} {r['params']:8,d} {r['filters']:7d} {r['log_prob']:10.0f} "
              f"{r['train']:8.0f} {r['sample_seconds']:9.1f} {r['train_steps']:6d} "
              f"{r['held_out_bits_per_dim']:18.4f}")
    ratio = {k: rows["logistic_mixture"][k] / rows["categorical"][k]
             for k in ("log_prob", "train", "train_steps")}
    ratio["sample_speed"] = rows["categorical"]["sample_seconds"] / rows["logistic_mixture"][
        "sample_seconds"]
    print("  mixture / categorical: " + ", ".join(f"{k} {v:.2f}x" for k, v in ratio.items()))
    print(json.dumps({"kind": kind, "rows": rows, "ratios": ratio}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kinds", nargs="+", default=["raster"],
                        choices=["raster", "spn", "multiscale"])
    parser.add_argument("--train_seconds", type=float, default=600)
    parser.add_argument("--turn_seconds", type=float, default=30)
    parser.add_argument("--num_mixtures", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--sample_batch", type=int, default=4)
    args = parser.parse_args()
    keras.utils.set_random_seed(0)
    for kind in args.kinds:
        run(kind, args)


if __name__ == "__main__":
    main()
