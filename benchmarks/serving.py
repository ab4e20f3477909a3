"""Served sampling against in-process sampling: throughput by batch, gRPC, first requests.

For each model (`raster`, `spn`, `multiscale`; default 32x32x3 at 8 bits, `small` presets,
untrained weights: time does not depend on them), in one run:

  1. Throughput (rows/s) of the `sample` signature at batch 1, 8 and 32, for the default export
     (plain-graph loops: what TF Serving runs without flags) and the `--xla` export, loaded with
     `tf.saved_model.load` in this process, beside `model.sample(B)` (the XLA-compiled sampler)
     at the same batch. Warm figures: the fastest of `--repeats` calls after one untimed call,
     the variants interleaved (`timing.measure`) so that a busy spell slows them alike. The
     ratio column is export time / `model.sample` time at the same batch: both are whole
     sampling programs of the same model and rows; they differ in how the loops run.
  2. gRPC: `spn_tf.serving.client.Client` → the stand-in server (a separate process on
     127.0.0.1) → the default export, `sample` at batch 1 and 8 (rows/s), and `log_prob` at
     batch 1 and 32 (ms) beside the same SavedModel in process.
  3. First request through gRPC after a fresh server reports the version AVAILABLE, for the
     default export with its warm-up requests (replayed at load) and without them
     (`--warmup_batch_sizes=` empty): `sample` at batch 8. One server process per variant.

Usage:
  python benchmarks/serving.py --out=runs/benchmarks/serving
"""

import contextlib
import os
import sys
import tempfile
import time

import numpy as np
from absl import app, flags

from spn_tf import models  # imports TensorFlow quietly (spn_tf.startup)
from spn_tf.export import export_model
from spn_tf.serving.client import Client, row_seeds

import tensorflow as tf  # noqa: E402, I100  (already loaded by spn_tf)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import timing  # noqa: E402  (benchmarks/timing.py)
from stand_in import serve  # noqa: E402  (benchmarks/stand_in.py)

FLAGS = flags.FLAGS
flags.DEFINE_list("models", ["raster", "spn", "multiscale"], "Model families to time.")
flags.DEFINE_integer("image_size", 32, "Height = width.")
flags.DEFINE_integer("channels", 3, "Image channels.")
flags.DEFINE_integer("bits", 8, "Bits per sub-pixel.")
flags.DEFINE_string("preset", "small", "Model preset.")
flags.DEFINE_list("batch_sizes", ["1", "8", "32"], "Batch sizes of the throughput table.")
flags.DEFINE_integer("repeats", 3, "Warm calls per variant (the fastest is reported).")
flags.DEFINE_integer("log_prob_calls", 20, "Timed gRPC / SavedModel log_prob calls.")
flags.DEFINE_list("tables", ["1", "2", "3"], "Tables to measure (see the module doc).")
flags.DEFINE_string("out", "runs/benchmarks/serving", "Prefix of the .md table.")


def _seeds(batch):
    return tf.constant(row_seeds(batch, 0)), tf.ones([batch])


def _sampler(loaded, batch):
    seed, temperature = _seeds(batch)
    return lambda: loaded.signatures["sample"](seed=seed, temperature=temperature)[
        "images"].numpy()


def throughput_rows(name, model, exports):
    """Markdown rows of table 1 for one model."""
    rows = []
    for batch in (int(b) for b in FLAGS.batch_sizes):
        timers = {"keras": timing.whole(lambda b=batch: model.sample(b, seed=[0, 0]).numpy()),
                  **{way: timing.whole(_sampler(loaded, batch))
                     for way, loaded in exports.items()}}
        t = timing.measure(timers, FLAGS.repeats)
        rate = {way: batch / t[way].warm for way in timers}
        rows.append(
            f"| {name} | {batch} | {rate['keras']:.1f} | {rate['graph']:.1f} "
            f"({t['graph'].warm / t['keras'].warm:.2f}x) | {rate['xla']:.1f} "
            f"({t['xla'].warm / t['keras'].warm:.2f}x) |")
        print(rows[-1], flush=True)
    return rows


@contextlib.contextmanager
def stand_in(base_path, name, log_path):
    """A stand-in server for `name` at `base_path`; yields a connected, AVAILABLE client and
    the seconds from process start to AVAILABLE (loading and warm-up included)."""
    start = time.perf_counter()
    with serve(base_path, name, log_path) as (_, port):
        ready = time.perf_counter() - start
        with Client(f"127.0.0.1:{port}", name, timeout=600) as client:
            yield client, ready


def grpc_rows(name, model, base, loaded, workdir):
    """Markdown rows of table 2 for one model (default export)."""
    rows, rng = [], np.random.default_rng(0)
    with stand_in(os.path.join(base, name), name, os.path.join(workdir, f"{name}.log")) as (
            client, _):
        for batch in (1, 8):
            t = timing.measure({
                "grpc": timing.whole(lambda b=batch: client.sample(b, seed=0)),
                "saved_model": timing.whole(_sampler(loaded, batch))}, FLAGS.repeats)
            rows.append(f"| {name} | sample | {batch} | {batch / t['grpc'].warm:.1f} rows/s | "
                        f"{batch / t['saved_model'].warm:.1f} rows/s | "
                        f"{t['grpc'].warm / t['saved_model'].warm:.2f}x |")
            print(rows[-1], flush=True)
        for batch in (1, 32):
            shape = (batch, model.image_size, model.image_size, model.channels)
            images = rng.integers(0, 2 ** model.bits, shape).astype(np.int32)
            ms = {}
            for way, fn in (("grpc", lambda: client.log_prob(images)),
                            ("saved_model", lambda: loaded.signatures["log_prob"](
                                images=tf.constant(images))["log_prob"].numpy())):
                fn()
                calls = []
                for _ in range(FLAGS.log_prob_calls):
                    start = time.perf_counter()
                    fn()
                    calls.append(time.perf_counter() - start)
                ms[way] = 1000 * float(np.median(calls))
            rows.append(f"| {name} | log_prob | {batch} | {ms['grpc']:.1f} ms | "
                        f"{ms['saved_model']:.1f} ms | {ms['grpc'] / ms['saved_model']:.2f}x |")
            print(rows[-1], flush=True)
    return rows


def first_request_row(name, base, workdir):
    """A markdown row of table 3: first `sample` of 8 rows through gRPC, with and without
    warm-up requests."""
    cells = []
    for variant in ("warm", "cold"):
        folder = f"{name}_{variant}" if variant == "cold" else name
        with stand_in(os.path.join(base, folder), folder,
                      os.path.join(workdir, f"{folder}_first.log")) as (client, ready):
            start = time.perf_counter()
            client.sample(8, seed=0)
            first = time.perf_counter() - start
            start = time.perf_counter()
            client.sample(8, seed=1)
            second = time.perf_counter() - start
        cells.append(f"{ready:.1f} s | {first:.2f} s | {second:.2f} s")
    row = f"| {name} | " + " | ".join(cells) + " |"
    print(row, flush=True)
    return row


def main(argv):
    del argv
    workdir = tempfile.mkdtemp(prefix="spn_tf_serving_bench_")
    base = os.path.join(workdir, "exports")
    size = f"{FLAGS.image_size}x{FLAGS.image_size}x{FLAGS.channels}, {FLAGS.bits} bits"
    table1 = [f"1. `sample` throughput, {size}, `{FLAGS.preset}` presets, untrained; rows/s = "
              f"batch / fastest of {FLAGS.repeats} warm calls; (×) = export time / "
              "`model.sample` time at that batch.", "",
              "| model | batch | `model.sample` (XLA) | default export (graph) | "
              "`--xla` export |", "|---|---|---|---|---|"]
    table2 = ["2. gRPC (client → stand-in server process → default export) vs the same "
              "SavedModel in process; fastest warm call (sample), median (log_prob).", "",
              "| model | signature | batch | gRPC | SavedModel | gRPC / SavedModel |",
              "|---|---|---|---|---|---|"]
    table3 = ["3. First `sample` request (8 rows) through gRPC after a fresh stand-in reports "
              "AVAILABLE, default export, with and without warm-up requests.", "",
              "| model | with warm-up: load → AVAILABLE | first request | second | "
              "without: load → AVAILABLE | first request | second |",
              "|---|---|---|---|---|---|---|"]
    for name in FLAGS.models:
        model = models.build(name, FLAGS.image_size, channels=FLAGS.channels, bits=FLAGS.bits,
                             preset=FLAGS.preset)
        model.build()
        print(f"{name}: {model.count_params():,} parameters", flush=True)
        export_model(model, os.path.join(base, name, "1"))
        export_model(model, os.path.join(base, f"{name}_xla", "1"), xla=True)
        export_model(model, os.path.join(base, f"{name}_cold", "1"), warmup_batch_sizes=())
        exports = {way: tf.saved_model.load(os.path.join(base, folder, "1"))
                   for way, folder in (("graph", name), ("xla", f"{name}_xla"))}
        if "1" in FLAGS.tables:
            table1 += throughput_rows(name, model, exports)
        if "2" in FLAGS.tables:
            table2 += grpc_rows(name, model, base, exports["graph"], workdir)
        if "3" in FLAGS.tables:
            table3.append(first_request_row(name, base, workdir))
    tables = {"1": table1, "2": table2, "3": table3}
    text = "\n\n".join("\n".join(tables[t]) for t in sorted(FLAGS.tables)) + "\n"
    print("\n" + text)
    os.makedirs(os.path.dirname(FLAGS.out) or ".", exist_ok=True)
    with open(FLAGS.out + ".md", "w") as f:
        f.write(text)


if __name__ == "__main__":
    app.run(main)
