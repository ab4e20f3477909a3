"""Where `log_prob` and a training step spend their time: raster and SPN, 32x32x3, 8 bits.

Each stage of the network runs alone as a `tf.function` (a plain graph, as `log_prob` runs
unless XLA is asked for) on inputs computed beforehand, so its time is its own:

  raster: input checks; scaling; the decoder's vertical stack (mask-B vertical convolutions,
    gates, 1x1 mixes); its horizontal stack (one-row masked convolutions, gates, attention
    where the preset has it); the head's layers (two channel-masked 1x1 convolutions, the
    last one `3 * num_params` wide); the head's distribution (categorical: log-softmax and
    gather of 256 values; mixture: log-sum-exp over the logistics' bins).
  spn: the same, plus the subscale split and the slice embedder (every slice of every image
    is one row of the decoder's batch: 4 slices of 16x16 per 32x32 image), and the causal
    self-attention layer alone.

Besides: the whole `log_prob` and the whole training step (tape, gradients, Adam) as one
`tf.function` each, so the table shows what the stages miss (fusion across stages,
per-call overheads) and how a step splits into forward and backward; and for both, the CPU
time by TensorFlow op type from a `tf.profiler` trace (which kernels run: oneDNN's
`_MklNative*` convolutions or Eigen's, the gates' `Split`, ...). Every figure is the
median of `--steps` calls after 2 warm-up calls, batch `--batch` of fixed random images; the
machine may be shared, so read shares of the total, not milliseconds across runs.

Usage: python benchmarks/likelihood_profile.py [--models raster spn] [--heads categorical
logistic_mixture] [--batch 16] [--steps 10]
"""

import argparse
import collections
import glob
import os
import shutil
import statistics
import tempfile
import time

import spn_tf  # noqa: F401  (first: it silences TensorFlow's start-up lines)
import keras
import numpy as np
import tensorflow as tf

from tensorflow.tsl.profiler.protobuf import xplane_pb2

from spn_tf import models, orderings
from spn_tf.inputs import scale_images

from heads import train_step

SIZE, CHANNELS, BITS = 32, 3, 8


def median_ms(fn, steps):
    """Median milliseconds of `fn()` (a scalar tensor) over `steps` calls after 2 warm-up
    calls (tracing)."""
    for _ in range(2):
        fn().numpy()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        fn().numpy()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def op_times(fn, calls=5):
    """`Counter` of milliseconds per call by TensorFlow op type (e.g. `_MklNativeConv2D`,
    `Split`), summed over the threads that ran them (CPU time: ops of the two inter-op threads
    overlap in wall-clock), from a `tf.profiler` trace of `calls` calls of `fn`."""
    fn().numpy()
    logdir = tempfile.mkdtemp()
    try:
        tf.profiler.experimental.start(logdir)
        for _ in range(calls):
            fn().numpy()
        tf.profiler.experimental.stop()
        space = xplane_pb2.XSpace()
        path = glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)[0]
        with open(path, "rb") as f:
            space.ParseFromString(f.read())
    finally:
        shutil.rmtree(logdir, ignore_errors=True)
    host = next(plane for plane in space.planes if plane.name == "/host:CPU")
    names = {key: meta.name for key, meta in host.event_metadata.items()}
    times = collections.Counter()
    for line in host.lines:
        if line.name.startswith("tf_Compute"):
            for event in line.events:
                op_type = names[event.metadata_id].split(":")[-1]
                if op_type != "Process":  # the whole function's span
                    times[op_type] += event.duration_ps / 1e9 / calls
    return times


def print_op_times(title, times, top=12):
    total = sum(times.values())
    print(f"  {title}: op CPU time by type, {total:.0f} ms per call in all")
    for op_type, ms in times.most_common(top):
        print(f"    {op_type:36s} {ms:8.1f} {ms / total:7.1%}")


def graph(fn):
    """`fn` as a plain-graph `tf.function` returning one scalar (the sum of its outputs): a
    stage's time is then its own, not that of copying its activations to numpy."""
    return tf.function(lambda: tf.add_n([tf.reduce_sum(tf.cast(t, tf.float32))
                                         for t in tf.nest.flatten(fn())]), autograph=False)


def decoder_stages(model, decoder, x, context, targets):
    """`[(stage, fn)]` of a `MaskedDecoder` on scaled input `x` and its targets."""
    terms = decoder.vertical_stack(x, context)
    h, _ = decoder.horizontal_features(x, terms, context)
    params = decoder.head(h)
    stages = [
        ("vertical stack", graph(lambda: decoder.vertical_stack(x, context))),
        ("horizontal stack", graph(lambda: decoder.horizontal_features(x, terms, context)[0])),
        ("head layers (1x1)", graph(lambda: decoder.head(h))),
        (f"distribution ({model.head})",
         graph(lambda: model.distribution.image_log_prob(params, targets))),
    ]
    if decoder.attentions:
        stages.insert(2, ("  of which attention", graph(lambda: decoder.attentions[0](h))))
    return stages


def stages_of(model, images):
    """`[(stage, fn)]` whose times add up to (about) `log_prob`'s."""
    checks = [("input checks", graph(lambda: model.check_inputs(images, None)[0]))]
    if model.kind == "raster":
        x = scale_images(images, model.bits)
        return checks + [("scale", graph(lambda: scale_images(images, model.bits)))] + decoder_stages(
            model, model.decoder, x, None, images)
    s, (start, stop) = model.subscale_factor, model.slice_range
    batch = images.shape[0]
    slices = orderings.subscale_split(scale_images(images, model.bits), s)
    index = tf.tile(tf.range(start, stop)[None], [batch, 1])
    m, flat = stop - start, tf.reshape(index, [-1])
    repeated = tf.repeat(slices, m, axis=0)
    embedding = model.embedder(repeated, flat)
    targets = tf.reshape(tf.gather(slices, index, axis=1, batch_dims=1),
                         [-1, model.slice_size, model.slice_size, CHANNELS])
    integer_targets = tf.reshape(tf.gather(orderings.subscale_split(images, s), index, axis=1,
                                           batch_dims=1), targets.shape)
    return checks + [
        ("subscale split + scale",
         graph(lambda: orderings.subscale_split(scale_images(images, model.bits), s))),
        ("slice embedder", graph(lambda: model.embedder(repeated, flat))),
    ] + decoder_stages(model, model.decoder, targets, embedding, integer_targets)


def profile(kind, head, batch, steps):
    keras.utils.set_random_seed(0)
    model = models.build(kind, SIZE, channels=CHANNELS, bits=BITS, preset="small", head=head)
    model.build()
    images = tf.constant(np.random.default_rng(0).integers(0, 2 ** BITS, (
        batch, SIZE, SIZE, CHANNELS)), tf.int32)
    log_prob = graph(lambda: model.log_prob(images))
    rows = [(name, median_ms(fn, steps)) for name, fn in stages_of(model, images)]
    total = median_ms(log_prob, steps)
    # As `fit` trains (`heads.train_step`): an SPN's training call draws one slice per image.
    optimizer = keras.optimizers.Adam(1e-3)
    optimizer.build(model.trainable_variables)
    step = train_step(model, optimizer)
    train = median_ms(lambda: step(images), steps)
    print(f"\n{kind} small, head={head}: {model.count_params():,} parameters, batch {batch}, "
          f"{SIZE}x{SIZE}x{CHANNELS} at {BITS} bits")
    print(f"  {'stage':34s} {'ms':>8s} {'of log_prob':>12s}")
    for name, ms in rows:
        print(f"  {name:34s} {ms:8.1f} {ms / total:11.0%}")
    parts = sum(ms for name, ms in rows if not name.startswith("  "))
    print(f"  {'sum of the stages':34s} {parts:8.1f} {parts / total:11.0%}")
    print(f"  {'log_prob (one graph)':34s} {total:8.1f} {1:11.0%}   "
          f"{batch / total * 1e3:.0f} img/s")
    print(f"  {'training step (forward+backward+Adam)':34s} {train:8.1f} "
          f"{train / total:10.1f}x   {batch / train * 1e3:.0f} img/s")
    print_op_times("log_prob", op_times(log_prob))
    print_op_times("training step", op_times(lambda: step(images)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["raster", "spn"],
                        choices=["raster", "spn"])
    parser.add_argument("--heads", nargs="+", default=["categorical", "logistic_mixture"])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    print(f"TensorFlow {tf.__version__}, {tf.config.threading.get_intra_op_parallelism_threads()}"
          f" intra-op threads (0 = all cores)")
    for kind in args.models:
        for head in args.heads:
            profile(kind, head, args.batch, args.steps)


if __name__ == "__main__":
    main()
