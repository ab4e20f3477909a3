"""Held-out bits/dim per second of training: every kind, both heads, and the tfp PixelCNN peer.

What a user picks a model for is the held-out likelihood the compute buys. Each model here
trains from scratch for the same wall-clock seconds, on the same batches in the same order
(`peer_tfp.batch_order`: a seeded permutation per epoch, batches of `--batch`), with Adam at
a constant learning rate (`--learning_rate`, `--peer_learning_rate`: 1e-3 both by default).
No schedule by default: the curve's point at 150 s is what a 150 s run gives, so one run of
the longest budget measures every shorter one; `--decay linear` decays both sides' rates
over the clock to 0 at the one budget it takes. `--mixed_precision` computes ours in
bfloat16 (Keras's `mixed_bfloat16`; the peer stays float32). At each checkpoint the clock
stops and the held-out set is scored exactly (ours: `mean_bits_per_dim`, every slice or
group of every image; the peer: `dist.log_prob` in inference mode). Single checkpoints of
the raw weights are noisy (up to ~1 bit/dim between neighbours at batch 16): `--ema DECAY`
scores an exponential moving average of the weights instead, on both sides
(`peer_tfp.Average`; 0.995 in docs/benchmarks.md).

Models:
  * ours — `--ours=kind:preset[:key=value,...]` (as in `peer_tfp.py`), default every kind
    (raster, spn, multiscale, upscaling: depth upscaling, 3 most significant bits first) at
    `small`, each with both heads (categorical, and the discretized logistic mixture of 5);
    the training step is what `fit` takes (`model.compute_loss` of `model(x, training=True)`:
    one random slice per image for the SPN, as it trains);
  * the peer — TensorFlow Probability 0.25's `PixelCNN` (PixelCNN++) with its docstring's
    arguments (`peer_tfp.PEER_ARGS`, dropout 0.3 unless `--peer_dropout`), in its own venv (as
    `peer_tfp.py` runs it), trained on its own objective (mean `-log_prob`, dropout on).

Datasets (real images that ship here, no download), 32x32 at 8 bits, held out from a strip
of each photo that training never sees (`spn_tf.data.photo_columns`):
  * photos — the embedded photos (RGB): 256 training and 32 held-out crops per photo;
  * gray — seven grayscale photos from scikit-image's package (`GRAY_PHOTOS`), cropped the
    same way (needs `pip install -e .[bench]`).

Both sides run one after the other in this one run, each using the whole machine (TF's own
thread choice): run it on a quiet machine. CPU seconds (all threads) are printed beside the
wall-clock, so that a run disturbed by other load shows it.

Prints per dataset the curve (bits/dim at each checkpoint) and, at each `--budgets` second,
each model's lead over the peer (peer - ours, bits/dim; the goal is >= 0.05); writes the plot
(`--plot`) and, with `--json`, every figure.

Usage: python benchmarks/quality_per_time.py [--budgets 150 600] [--datasets photos gray]
  [--ours=spn:small:head=logistic_mixture ...] [--ema 0.995] [--learning_rate 1e-3]
  [--decay linear --budgets 150] [--mixed_precision] [--peer_venv ...] [--no_peer]
  [--plot out.png] [--json out.json]
  python benchmarks/quality_per_time.py --smoke   (seconds: every kind once at tiny, 8x8,
  a 1 s budget, no peer)
"""

import argparse
import functools
import json
import os
import subprocess
import tempfile

import spn_tf  # noqa: F401  (first: it silences TensorFlow's start-up lines)
import keras
import numpy as np
import tensorflow as tf

import peer_tfp
from heads import train_step
from spn_tf import data, models
from spn_tf.training.evaluation import mean_bits_per_dim

KINDS = ("raster", "spn", "multiscale", "upscaling")
HEADS = ("categorical", "logistic_mixture")
GRAY_PHOTOS = ("camera", "coins", "moon", "page", "text", "cell", "clock")
CROP, BITS, SEED = 32, 8, 0


def gray_photos():
    from skimage import data as skdata

    return [np.asarray(getattr(skdata, name)())[..., None] for name in GRAY_PHOTOS]


def dataset(name, split, size):
    """uint8 `(N, size, size, C)`: 32x32 crops, area-resized to `size` if smaller."""
    if name == "photos":
        return data.embedded_arrays(split, size)[0]
    images, _ = data.photo_crops(gray_photos(), split, CROP, SEED,
                                 256 if split == "train" else 32)
    if size < CROP:
        images = tf.image.resize(images.astype(np.float32), (size, size), "area").numpy()
        images = np.clip(np.round(images), 0, 255).astype(np.uint8)
    return images


def default_specs(smoke):
    """Every kind with each head at `small`; for `--smoke`, every kind once at `tiny`, the
    heads taken in turn (both heads run, in half the time)."""
    pairs = [(kind, head) for kind in KINDS for head in HEADS]
    if smoke:
        pairs = [(kind, HEADS[i % 2]) for i, kind in enumerate(KINDS)]
    # Depth upscaling splits 3 most significant bits off at every preset (`tiny`'s 1 bit
    # would leave its first network no room for a logistic mixture).
    return [f"{kind}:{'tiny' if smoke else 'small'}:head={head}"
            + (",msb_bits=3" if kind == "upscaling" else "") for kind, head in pairs]


def our_curve(spec, train, test, args):
    """`{"params", "curve"}` of one spec trained on `train`, scored on `test`."""
    kind, preset, overrides = peer_tfp.parse_spec(spec)
    keras.utils.set_random_seed(SEED)
    keras.mixed_precision.set_global_policy(
        "mixed_bfloat16" if args.mixed_precision else "float32")
    try:
        model = models.build(kind, train.shape[1], channels=train.shape[3], bits=BITS,
                             preset=preset, **overrides)
        model.build()
    finally:
        keras.mixed_precision.set_global_policy("float32")
    optimizer = keras.optimizers.Adam(args.learning_rate)
    optimizer.build(model.trainable_variables)
    step = train_step(model, optimizer)
    held_out = tf.data.Dataset.from_tensor_slices(test.astype(np.int32)).batch(64)
    evaluate = lambda: mean_bits_per_dim(model, held_out)  # noqa: E731
    if args.ema:
        average = peer_tfp.Average(model.trainable_variables, args.ema)
        plain_step = step

        @tf.function(autograph=False)
        def step(images):
            loss = plain_step(images)
            average.update()
            return loss

        evaluate = functools.partial(average.evaluate, evaluate)
    batches = (tf.constant(train[index], tf.int32)
               for index in peer_tfp.batch_order(len(train), args.batch, SEED))
    progress = peer_tfp.linear_decay(optimizer.learning_rate, args.learning_rate) if (
        args.decay == "linear") else None
    return {"params": model.count_params(),
            "curve": peer_tfp.curve(step, evaluate, batches, checkpoints(args), progress)}


def peer_curve(python, train, test, args):
    """The peer's `{"params", "tf", "tfp", "curve"}`, trained in its venv on the same data."""
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "curve_data.npz")
        np.savez(path, train=train, test=test, checkpoints=np.asarray(checkpoints(args)),
                 batch=args.batch, seed=SEED, learning_rate=args.peer_learning_rate,
                 dropout=args.peer_dropout, ema=args.ema, decay=args.decay)
        env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
        result = subprocess.run([python, peer_tfp.__file__, "--curve_data", path],
                                capture_output=True, text=True, env=env)
    if result.returncode:
        raise RuntimeError(f"the peer failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def checkpoints(args):
    """The budgets, and halvings of the longest down to an eighth: the curve's points."""
    longest = max(args.budgets)
    return sorted(set(args.budgets) | {longest / 8, longest / 4, longest / 2})


def report(name, rows, args):
    """Prints one dataset's curve table and the leads over the peer at each budget."""
    print(f"\n{name}: held-out bits/dim after t seconds of training (wall-clock; CPU seconds "
          f"of all threads at the end in brackets), batch {args.batch}, Adam at "
          f"{args.learning_rate:g} (peer {args.peer_learning_rate:g}), "
          + ("decayed linearly to 0 at the budget on both sides" if args.decay == "linear"
             else "constant")
          + (", ours in mixed bfloat16 (the peer float32)" if args.mixed_precision else "")
          + (f", weights averaged (EMA {args.ema:g}) on both sides" if args.ema else ""))
    points = checkpoints(args)
    print("| model | params | " + " | ".join(f"{t:g} s" for t in points) + " | steps |")
    print("|---|---:|" + "---:|" * (len(points) + 1))
    for label, row in rows.items():
        last = row["curve"][-1]
        print(f"| {label} | {row['params']:,} | "
              + " | ".join(f"{p['bits_per_dim']:.3f}" for p in row["curve"])
              + f" | {last['steps']} ({last['cpu_seconds']:.0f} CPU s) |")
    if "peer" not in rows:
        return
    for budget in args.budgets:
        point = points.index(budget)
        peer = rows["peer"]["curve"][point]["bits_per_dim"]
        leads = {label: peer - row["curve"][point]["bits_per_dim"]
                 for label, row in rows.items() if label != "peer"}
        print(f"  lead over the peer at {budget:g} s (goal >= 0.05 bits/dim): " + ", ".join(
            f"{label} {lead:+.3f}{'' if lead >= 0.05 else ' (short)'}"
            for label, lead in leads.items()))


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(1, len(results), figsize=(6 * len(results), 4.5),
                                   squeeze=False)
    for axis, (name, rows) in zip(axes[0], results.items()):
        for label, row in rows.items():
            curve = row["curve"]
            axis.plot([p["seconds"] for p in curve], [p["bits_per_dim"] for p in curve],
                      "k--o" if label == "peer" else "-o", label=label, markersize=3)
        axis.set(title=name, xlabel="training seconds (wall-clock)",
                 ylabel="held-out bits/dim", xscale="log")
        axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main(args):
    size = 8 if args.smoke else CROP
    specs = args.ours or default_specs(args.smoke)
    python = None if args.no_peer else peer_tfp.peer_python(os.path.expanduser(args.peer_venv))
    results = {}
    for name in args.datasets:
        train, test = dataset(name, "train", size), dataset(name, "test", size)
        if args.smoke:
            test = test[:16]
        rows = {}
        if python:
            print(f"{name}: peer ...", flush=True)
            rows["peer"] = peer_curve(python, train, test, args)
        for spec in specs:
            print(f"{name}: {spec} ...", flush=True)
            rows[spec] = our_curve(spec, train, test, args)
        results[name] = rows
        report(name, rows, args)
    plot(results, args.plot)
    print(f"\nplot: {args.plot}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"benchmark": "quality_per_time", "batch": args.batch,
                       "learning_rate": args.learning_rate,
                       "peer_learning_rate": args.peer_learning_rate, "budgets": args.budgets,
                       "peer_dropout": args.peer_dropout, "ema": args.ema, "decay": args.decay,
                       "mixed_precision": args.mixed_precision, "image_size": size,
                       "results": results}, f)
        print(f"figures: {args.json}")


def parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", type=float, nargs="+", default=[150, 600],
                        help="Seconds of training at which leads over the peer are read.")
    parser.add_argument("--datasets", nargs="+", default=["photos", "gray"],
                        choices=["photos", "gray"])
    parser.add_argument("--ours", action="append",
                        help="kind:preset[:key=value,...], repeatable (default: every kind "
                             "at small with each head).")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--learning_rate", type=float, default=1e-3, help="Ours (Adam).")
    parser.add_argument("--peer_learning_rate", type=float, default=1e-3,
                        help="The peer's (Adam; 1e-3 is its docstring's).")
    parser.add_argument("--ema", type=float, default=0.0,
                        help="Both sides: evaluate an exponential moving average of the "
                             "weights with this decay (peer_tfp.Average; 0: the weights).")
    parser.add_argument("--decay", choices=["constant", "linear"], default="constant",
                        help="Both sides: keep the learning rate, or decay it linearly over "
                             "the clock to 0 at the budget (one --budgets value only).")
    parser.add_argument("--mixed_precision", action="store_true",
                        help="Ours: compute in bfloat16 (mixed_bfloat16; variables, the "
                             "loss and the heads' arithmetic stay float32).")
    parser.add_argument("--peer_dropout", type=float, default=peer_tfp.PEER_ARGS["dropout_p"])
    parser.add_argument("--peer_venv", default="~/.cache/spn_tf/peer_tfp_venv")
    parser.add_argument("--no_peer", action="store_true", help="Ours only.")
    parser.add_argument("--plot", default="quality_per_time.png")
    parser.add_argument("--json", help="Write every figure here.")
    parser.add_argument("--smoke", action="store_true",
                        help="Seconds: every kind once at tiny, 8x8, a 1 s budget, no peer.")
    args = parser.parse_args(argv)
    if args.smoke:
        args.budgets, args.no_peer = [1.0], True
    if min(args.budgets) <= 0:
        parser.error(f"--budgets must be positive seconds, got {args.budgets}.")
    if args.decay == "linear" and len(args.budgets) > 1:
        parser.error(f"--decay linear ends at the budget, so it takes one --budgets value; "
                     f"got {args.budgets}: run once per budget.")
    if not 0 <= args.ema < 1:
        parser.error(f"--ema is a decay in [0, 1) (0: no average), got {args.ema}.")
    return args


if __name__ == "__main__":
    main(parse())
