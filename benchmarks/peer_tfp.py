"""Likelihood and training throughput against a peer: tfp.distributions.PixelCNN (PixelCNN++).

The peer is TensorFlow Probability's PixelCNN++ (discretized logistic mixture) with the
arguments of its own docstring example, `num_resnet=1, num_hierarchies=2, num_filters=32,
num_logistic_mix=5, dropout_p=0.3` (other arguments default: 3x3 receptive field, concat_elu,
weight norm with data-dependent init), at 32x32x3 and 8 bits (`low=0, high=255`): 628,328
parameters, the "32 filters" figure of the issue. tfp's defaults (`num_resnet=5,
num_hierarchies=3`) would give 3.79M at 32 filters.

Ours are spn_tf models, `--ours=kind:preset[:key=value,...]` (values are Python literals,
bare words are strings, e.g. `--ours=raster:small:filters=72,head=logistic_mixture`), built
with `spn_tf.models.build(kind, 32, channels=3, bits=8, preset, **overrides)`.

Protocol, the same code for both sides: per step a fresh batch of `--batch` uniform random
8-bit images drawn inside the step, which is one `tf.function` (XLA only with `--xla`);
`log_prob` is the step returning the log-likelihoods, `train` a `tf.GradientTape` step of
Adam(1e-3) on each side's training objective: the peer's mean negative `dist.log_prob`
(inference mode: its dropout is off), ours what `fit` minimizes, `model.compute_loss` of
`model(x, training=True)` (bits/dim; the same sum of terms as `log_prob` for raster, one
random slice per image for an SPN, as its training runs). Each is called twice untimed
(tracing, weight-norm data init), then `--steps` times, each call ended by `.numpy()` (a
sync); images/s = batch / median step time. Both processes set TF's inter/intra-op thread pools from the same flags
(default 0: TF's own choice from the core count, what a user gets).

tfp needs tf-keras (Keras 2), which spn_tf (Keras 3) does not take as a dependency, so the
peer runs in its own venv (`--peer_venv`, made once with `python3.11 -m venv` and reused), as
a child process of this file with `--peer_child` and `TF_USE_LEGACY_KERAS=1`; it prints one
JSON line. Versions there: tensorflow 2.21, tf-keras 2.21, tensorflow-probability 0.25, the
main env's TensorFlow: tfp 0.25 (made for TF 2.18) imports, builds and trains on it, so no
older TensorFlow is needed. tfp's images must be floats: the peer casts them in its step.

With `--xla`, the peer's train step recompiles at every call (XLA cache miss each step, ~13 s
here; tfp's `WeightNorm` layers, a `tf.function` with a variable-driven branch: with
`use_weight_norm=False` it compiles once), so its XLA train figure is compile time, and the
train ratio under `--xla` means nothing; its XLA `log_prob` is fine.

`benchmarks/quality_per_time.py` trains the same peer for held-out bits/dim per second with
this file's `batch_order`, `curve` and `Average` (its child mode: `--curve_data`).

Order: peer, ours (each spec, in this process), peer again. Read the ratios (× peer: ours /
peer, the range over the two peer runs), not the absolute images/s: the machine may be
shared, and the two peer runs bracket ours and show how much the load moved meanwhile.

Usage:
  python benchmarks/peer_tfp.py [--ours=raster:small:filters=72 --ours=spn:small] [--steps 10]
      [--batch 16] [--xla] [--skip_train] [--peer_venv ~/.cache/spn_tf/peer_tfp_venv]
"""

import argparse
import ast
import json
import os
import re
import statistics
import subprocess
import time

IMAGE_SHAPE = (32, 32, 3)
WARMUP = 2
PEER_ARGS = dict(image_shape=IMAGE_SHAPE, num_resnet=1, num_hierarchies=2, num_filters=32,
                 num_logistic_mix=5, dropout_p=0.3, high=255, low=0)
PEER_REQUIREMENTS = ("tensorflow==2.21.*", "tf-keras==2.21.*", "tensorflow-probability==0.25.*")
DEFAULT_OURS = ("raster:small:filters=72", "spn:small")


def throughput(log_prob, loss, variables, optimizer, args):
    """`{"log_prob": images/s[, "train": images/s]}` of `log_prob(int32 images)` and of Adam
    steps on `loss(int32 images)`."""
    import tensorflow as tf

    def images():
        return tf.random.uniform([args.batch, *IMAGE_SHAPE], 0, 256, tf.int32)

    @tf.function(jit_compile=args.xla)
    def score():
        return log_prob(images())

    @tf.function(jit_compile=args.xla)
    def train():
        with tf.GradientTape() as tape:
            value = loss(images())
        optimizer.apply_gradients(zip(tape.gradient(value, variables), variables))
        return value

    steps = {"log_prob": score} if args.skip_train else {"log_prob": score, "train": train}
    return {name: _rate(step, args) for name, step in steps.items()}


def _rate(step, args):
    for _ in range(WARMUP):
        step().numpy()
    seconds = []
    for _ in range(args.steps):
        start = time.perf_counter()
        step().numpy()
        seconds.append(time.perf_counter() - start)
    return args.batch / statistics.median(seconds)


def _set_threads(tf, args):
    tf.config.threading.set_inter_op_parallelism_threads(args.inter_op_threads)
    tf.config.threading.set_intra_op_parallelism_threads(args.intra_op_threads)


def peer_child(args):
    """In the peer venv: prints `{"params", "tf", "tfp", "log_prob"[, "train"]}` as JSON."""
    import tensorflow as tf
    import tensorflow_probability as tfp
    import tf_keras

    _set_threads(tf, args)
    tf.random.set_seed(0)
    dist = tfp.distributions.PixelCNN(**PEER_ARGS)
    optimizer = tf_keras.optimizers.Adam(1e-3)
    optimizer.build(dist.trainable_variables)
    log_prob = lambda images: dist.log_prob(tf.cast(images, tf.float32))  # noqa: E731
    rates = throughput(log_prob, lambda images: -tf.reduce_mean(log_prob(images)),
                       dist.trainable_variables, optimizer, args)
    print(json.dumps({"params": dist.network.count_params(), "tf": tf.__version__,
                      "tfp": tfp.__version__, **rates}))


def batch_order(num_examples, batch, seed):
    """Endless example indices, `batch` at a time: a fresh permutation per epoch from
    `numpy.random.default_rng(seed)`. Both sides of `quality_per_time.py` train on this
    order, so every model sees the same batches."""
    import numpy as np

    rng = np.random.default_rng(seed)
    while True:
        order = rng.permutation(num_examples)
        for begin in range(0, num_examples - batch + 1, batch):
            yield order[begin:begin + batch]


class Average:
    """An exponential moving average of `variables` in shadow copies (Polyak averaging, as
    PixelCNN++ evaluates), its decay ramped as `min(decay, (1 + t) / (10 + t))` at update t
    (`tf.train.ExponentialMovingAverage`'s `num_updates` rule), so that early checkpoints
    are not pulled towards the initial weights. The same code on both sides."""

    def __init__(self, variables, decay):
        import tensorflow as tf

        self.variables, self.decay = list(variables), decay
        self.shadow = [tf.Variable(v, trainable=False) for v in self.variables]
        self.updates = tf.Variable(0.0, trainable=False)

    def update(self):
        """Moves the shadows towards the variables (call inside the training step, after the
        optimizer's update)."""
        import tensorflow as tf

        rate = tf.minimum(self.decay, (1.0 + self.updates) / (10.0 + self.updates))
        for shadow, variable in zip(self.shadow, self.variables):
            shadow.assign(rate * shadow + (1.0 - rate) * variable)
        self.updates.assign_add(1.0)

    def evaluate(self, evaluate):
        """`evaluate()` with the averaged weights in the variables, which are then restored."""
        kept = [variable.numpy() for variable in self.variables]
        for shadow, variable in zip(self.shadow, self.variables):
            variable.assign(shadow)
        try:
            return evaluate()
        finally:
            for value, variable in zip(kept, self.variables):
                variable.assign(value)


def curve(step, evaluate, batches, checkpoints, progress=None):
    """Trains with `step(batch)` (a `tf.function`; each call ended by `.numpy()`) until each
    of `checkpoints` seconds of wall-clock training, and calls `evaluate()` (held-out
    bits/dim) there, outside the clock. The first step (tracing) is taken untimed.
    `progress(fraction)`, if given, is called before each step with the fraction of the
    last checkpoint's seconds trained so far (a schedule over the clock: `linear_decay`).

    Returns:
      `[{"seconds", "cpu_seconds", "steps", "bits_per_dim"}]`, one per checkpoint: seconds
      of training, the process's CPU seconds in them (all threads), steps taken.
    """
    checkpoints = sorted(checkpoints)
    if progress:
        progress(0.0)
    step(next(batches)).numpy()
    steps, seconds, cpu_seconds, points = 1, 0.0, 0.0, []
    for checkpoint in checkpoints:
        start, cpu_start = time.perf_counter(), time.process_time()
        while (trained := seconds + time.perf_counter() - start) < checkpoint:
            if progress:  # the clock read once: the fraction stays below 1
                progress(trained / checkpoints[-1])
            step(next(batches)).numpy()
            steps += 1
        seconds += time.perf_counter() - start
        cpu_seconds += time.process_time() - cpu_start
        points.append({"seconds": seconds, "cpu_seconds": cpu_seconds, "steps": steps,
                       "bits_per_dim": float(evaluate())})
    return points


def linear_decay(learning_rate, peak):
    """`progress(fraction)` for `curve`: sets the variable `learning_rate` to `peak` times
    `1 - fraction`, a linear decay to 0 at the last checkpoint."""
    return lambda fraction: learning_rate.assign(peak * (1.0 - min(fraction, 1.0)))


def peer_curve_child(args):
    """In the peer venv: trains the peer on `--curve_data` (an `.npz` that
    `quality_per_time.py` writes: `train`, `test` uint8 images and the protocol) and prints
    `{"params", "tf", "tfp", "curve"}` as JSON."""
    import numpy as np
    import tensorflow as tf
    import tensorflow_probability as tfp
    import tf_keras

    _set_threads(tf, args)
    tf.random.set_seed(0)
    with np.load(args.curve_data) as loaded:
        spec = {key: loaded[key] for key in loaded.files}
    train, test = spec["train"], spec["test"]
    dist = tfp.distributions.PixelCNN(**{**PEER_ARGS, "image_shape": train.shape[1:],
                                         "dropout_p": float(spec["dropout"])})
    optimizer = tf_keras.optimizers.Adam(float(spec["learning_rate"]))
    dims = float(np.prod(train.shape[1:]))
    # (The weights exist from the constructor; the ramped decay forgets their values before
    # the first call's data-dependent initialization within a few steps.)
    average = Average(dist.trainable_variables, float(spec["ema"])) if spec["ema"] else None

    @tf.function
    def step(images):
        with tf.GradientTape() as tape:
            loss = -tf.reduce_mean(dist.log_prob(tf.cast(images, tf.float32), training=True))
        variables = dist.trainable_variables
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        if average:
            average.update()
        return loss

    @tf.function
    def held_out_bits(images):
        return -dist.log_prob(tf.cast(images, tf.float32), training=False) / (
            dims * np.log(2.0))

    def held_out():
        batches = [held_out_bits(test[i:i + 64]).numpy() for i in range(0, len(test), 64)]
        return np.concatenate(batches).mean()

    def evaluate():
        return average.evaluate(held_out) if average else held_out()

    batches = (train[index] for index in batch_order(len(train), int(spec["batch"]),
                                                      int(spec["seed"])))
    progress = linear_decay(optimizer.learning_rate, float(spec["learning_rate"])) if (
        str(spec["decay"]) == "linear") else None
    points = curve(step, evaluate, batches, spec["checkpoints"].tolist(), progress)
    print(json.dumps({"params": dist.network.count_params(), "tf": tf.__version__,
                      "tfp": tfp.__version__, "curve": points}))


def _check_output(cmd, **kwargs):
    result = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    if result.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{result.stdout[-3000:]}"
                           f"{result.stderr[-3000:]}")
    return result.stdout


def peer_python(venv):
    """The peer venv's python, the venv made (once) if it lacks `PEER_REQUIREMENTS`."""
    python = os.path.join(venv, "bin", "python")
    marker = os.path.join(venv, "peer_tfp_requirements.txt")
    wanted = "\n".join(PEER_REQUIREMENTS)
    if os.path.exists(marker) and open(marker).read() == wanted:
        return python
    print(f"Installing {', '.join(PEER_REQUIREMENTS)} into {venv} (once, a few minutes)",
          flush=True)
    _check_output(["python3.11", "-m", "venv", venv])
    _check_output([python, "-m", "pip", "install", "-q", *PEER_REQUIREMENTS])
    with open(marker, "w") as f:
        f.write(wanted)
    return python


def run_peer(python, args):
    cmd = [python, os.path.abspath(__file__), "--peer_child", "--steps", str(args.steps),
           "--batch", str(args.batch), "--inter_op_threads", str(args.inter_op_threads),
           "--intra_op_threads", str(args.intra_op_threads)]
    cmd += ["--xla"] * args.xla + ["--skip_train"] * args.skip_train
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    return json.loads(_check_output(cmd, env=env).strip().splitlines()[-1])


def parse_spec(spec):
    """`kind:preset[:key=value,...]` → `(kind, preset, overrides)`; a value is a Python literal
    or, failing that, a string (`head=logistic_mixture`)."""
    if spec.count(":") < 1:
        raise ValueError(f"--ours={spec!r}: expected kind:preset[:key=value,...].")
    kind, preset, *rest = spec.split(":", 2)
    overrides = {}
    # Split at the commas that start a `key=`, so that tuple values keep theirs.
    for item in re.split(r",(?=\s*\w+\s*=)", rest[0]) if rest and rest[0] else ():
        key, value = (part.strip() for part in item.split("=", 1))
        try:
            overrides[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            overrides[key] = value
    return kind, preset, overrides


def run_ours(spec, args):
    """`{"params", "log_prob"[, "train"]}` of one spec, in this process."""
    import keras

    from spn_tf import models

    kind, preset, overrides = parse_spec(spec)
    keras.utils.set_random_seed(0)
    model = models.build(kind, IMAGE_SHAPE[0], channels=IMAGE_SHAPE[2], bits=8, preset=preset,
                         **overrides)
    model.build()
    optimizer = keras.optimizers.Adam(1e-3)
    optimizer.build(model.trainable_variables)
    # What `fit` minimizes: bits/dim of `model(x, training=True)` (an SPN's training call
    # draws one slice per image: an unbiased estimate of the whole image's log-likelihood).
    loss = lambda images: model.compute_loss(  # noqa: E731
        x=images, y_pred=model(images, training=True))
    return {"params": model.count_params(),
            **throughput(model.log_prob, loss, model.trainable_variables, optimizer, args)}


def _ratio(rate, peers):
    ratios = [rate / peer for peer in peers]
    return f"{min(ratios):.2f}–{max(ratios):.2f}"


def main(args):
    python = peer_python(os.path.expanduser(args.peer_venv))
    print("Peer run 1 ...", flush=True)
    peers = [run_peer(python, args)]
    import spn_tf  # noqa: F401  (first: TensorFlow's start-up lines stay quiet)
    import tensorflow as tf
    _set_threads(tf, args)
    ours = {}
    for spec in args.ours or DEFAULT_OURS:
        print(f"{spec} ...", flush=True)
        ours[spec] = run_ours(spec, args)
    print("Peer run 2 ...", flush=True)
    peers.append(run_peer(python, args))

    columns = ("log_prob", "train")[:1 if args.skip_train else 2]
    peer_args = ", ".join(f"{k}={v}" for k, v in PEER_ARGS.items())
    print(f"\nimages/s, median of {args.steps} steps after {WARMUP} warm-up, batch {args.batch}, "
          f"32x32x3 at 8 bits, fresh random images per step, tf.function"
          f"{' + XLA' if args.xla else ''}; × peer: ours / peer, range over the two peer runs. "
          f"Peer: tfp {peers[0]['tfp']} PixelCNN({peer_args}) on TF {peers[0]['tf']}; ours on "
          f"TF {tf.__version__}.\n")
    rows = [["model", "params", *(f"{c} {h}" for c in columns for h in ("img/s", "× peer"))],
            ["---", "---:", *["---:"] * 2 * len(columns)]]
    rows += [[f"tfp PixelCNN (run {i})", f"{peer['params']:,}",
              *(cell for c in columns for cell in (f"{peer[c]:.1f}", ""))]
             for i, peer in enumerate(peers, 1)]
    rows += [[spec, f"{result['params']:,}",
              *(cell for c in columns
                for cell in (f"{result[c]:.1f}", _ratio(result[c], [p[c] for p in peers])))]
             for spec, result in ours.items()]
    print("\n".join("| " + " | ".join(row) + " |" for row in rows))
    print("\n" + json.dumps({
        "benchmark": "peer_tfp", "batch": args.batch, "steps": args.steps, "xla": args.xla,
        "tf": tf.__version__, "peer": {"args": PEER_ARGS, "runs": peers},
        "ours": {spec: {**result, **{f"{c}_x_peer": [result[c] / p[c] for p in peers]
                                     for c in columns}}
                 for spec, result in ours.items()}}))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ours", action="append",
                        help=f"kind:preset[:key=value,...], repeatable (default: "
                             f"{' '.join(DEFAULT_OURS)}).")
    parser.add_argument("--steps", type=int, default=10, help="Timed steps (median).")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--xla", action="store_true", help="jit_compile the steps.")
    parser.add_argument("--skip_train", action="store_true", help="Time log_prob only.")
    parser.add_argument("--peer_venv", default="~/.cache/spn_tf/peer_tfp_venv",
                        help="Venv with tfp and tf-keras (made on first use).")
    parser.add_argument("--inter_op_threads", type=int, default=0,
                        help="TF inter-op threads, both sides (0: TF's choice).")
    parser.add_argument("--intra_op_threads", type=int, default=0,
                        help="TF intra-op threads, both sides (0: TF's choice).")
    parser.add_argument("--peer_child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--curve_data", help=argparse.SUPPRESS)
    parsed = parser.parse_args()
    if parsed.curve_data:
        peer_curve_child(parsed)
    else:
        peer_child(parsed) if parsed.peer_child else main(parsed)
