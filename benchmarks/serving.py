"""Serving latency: in-process Keras call vs loaded SavedModel vs gRPC through the stand-in.

For each model (`raster`, `spn`, `multiscale`; quickstart sizes: 16x16x3 at 5 bits, `small`
presets, untrained weights: time does not depend on them), times p50/p99 latency and
throughput of
  * `log_prob` at batch 1 and 32, and
  * `sample` at batch 1 and 8 (seeds per row, temperature 1),
three ways:
  * Keras — `model.log_prob(images)` / `model.sample(B, seed)` in this process (the compiled
    XLA sampler, the default of `model.sample`);
  * SavedModel — the exported signature, loaded with `tf.saved_model.load` in this process;
  * gRPC — `spn_tf.serving.client.Client` → the local stand-in server
    (`python -m spn_tf.serving.server`, a separate process on 127.0.0.1) → the same SavedModel.
The like-for-like ratio is gRPC / SavedModel (same graph; what the network and the server
add); SavedModel / Keras compares two different programs (labelled so). `--xla` exports the
`sample` loops XLA-compiled (`python -m spn_tf.export --xla`).

Usage:
  python benchmarks/serving.py --out=runs/benchmarks/serving
"""

import os
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np
import tensorflow as tf
from absl import app, flags

from spn_tf import models
from spn_tf.export import export_model
from spn_tf.serving.client import Client, row_seeds

FLAGS = flags.FLAGS
flags.DEFINE_list("models", ["raster", "spn", "multiscale"], "Model families to time.")
flags.DEFINE_integer("image_size", 16, "Height = width.")
flags.DEFINE_integer("channels", 3, "Image channels.")
flags.DEFINE_integer("bits", 5, "Bits per sub-pixel.")
flags.DEFINE_string("preset", "small", "Model preset.")
flags.DEFINE_integer("log_prob_calls", 40, "Timed calls per log_prob row.")
flags.DEFINE_integer("sample_calls", 8, "Timed calls per sample row.")
flags.DEFINE_bool("xla", False, "Export XLA-compiled sample loops.")
flags.DEFINE_string("out", "runs/benchmarks/serving", "Prefix of the .md table.")

# (signature, batch) rows of the table.
ROWS = [("log_prob", 1), ("log_prob", 32), ("sample", 1), ("sample", 8)]


def latencies(fn, calls, warmup=2):
    """Seconds of `calls` calls of `fn` after `warmup` untimed ones (traces, compiles)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return np.array(times)


def _callables(model, loaded, client, signature, batch, rng):
    """`{way: fn}` doing the same work three ways."""
    shape = (batch, model.image_size, model.image_size, model.channels)
    if signature == "log_prob":
        images = rng.integers(0, 2 ** model.bits, shape).astype(np.int32)
        return {
            "Keras": lambda: model.log_prob(images).numpy(),
            "SavedModel": lambda: loaded.signatures["log_prob"](
                images=tf.constant(images))["log_prob"].numpy(),
            "gRPC": lambda: client.log_prob(images)["log_prob"],
        }
    seeds = row_seeds(batch, 0)
    temperature = np.ones(batch, np.float32)
    return {
        "Keras": lambda: model.sample(batch, seed=[0, 0]).numpy(),
        "SavedModel": lambda: loaded.signatures["sample"](
            seed=tf.constant(seeds), temperature=tf.constant(temperature))["images"].numpy(),
        "gRPC": lambda: client.sample(batch, seed=0),
    }


def _start_server(export_base, log):
    """The stand-in server on a free port, serving every model folder under `export_base`."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = os.path.join(export_base, "models.config")
    with open(config, "w") as f:
        f.write("model_config_list {\n" + "".join(
            f'  config {{ name: "{name}" base_path: "{os.path.join(export_base, name)}" '
            f'model_platform: "tensorflow" }}\n' for name in FLAGS.models) + "}\n")
    process = subprocess.Popen(
        [sys.executable, "-m", "spn_tf.serving.server", f"--port={port}",
         f"--model_config_file={config}", "--file_system_poll_wait_seconds=0"],
        stdout=log, stderr=subprocess.STDOUT)
    return process, port


def _ms(times, q):
    return f"{1000 * np.percentile(times, q):.1f}"


def main(argv):
    del argv
    rng = np.random.default_rng(0)
    export_base = tempfile.mkdtemp(prefix="spn_tf_serving_bench_")
    built = {}
    for name in FLAGS.models:
        built[name] = models.build(name, FLAGS.image_size, channels=FLAGS.channels,
                                   bits=FLAGS.bits, preset=FLAGS.preset)
        start = time.perf_counter()
        export_model(built[name], os.path.join(export_base, name, "1"), xla=FLAGS.xla)
        print(f"exported {name} ({built[name].count_params()} parameters) in "
              f"{time.perf_counter() - start:.1f} s", flush=True)
    log = open(os.path.join(export_base, "server.log"), "w")  # noqa: SIM115
    process, port = _start_server(export_base, log)
    lines = [
        f"{FLAGS.image_size}x{FLAGS.image_size}x{FLAGS.channels}, {FLAGS.bits} bits, "
        f"`{FLAGS.preset}` presets, untrained; export xla={FLAGS.xla}; latency p50 / p99 in ms; "
        "throughput = batch / p50 (images/s).", "",
        "| model | signature | batch | Keras p50/p99 | SavedModel p50/p99 | gRPC p50/p99 | "
        "gRPC/SavedModel (p50) | gRPC img/s | SavedModel/Keras (p50, different programs) |",
        "|---|---|---|---|---|---|---|---|---|"]
    try:
        for name, model in built.items():
            loaded = tf.saved_model.load(os.path.join(export_base, name, "1"))
            with Client(f"127.0.0.1:{port}", name, timeout=600, max_attempts=12) as client:
                client.status()  # waits (retries) until the server listens
                for signature, batch in ROWS:
                    calls = FLAGS.log_prob_calls if signature == "log_prob" else \
                        FLAGS.sample_calls
                    times = {way: latencies(fn, calls) for way, fn in _callables(
                        model, loaded, client, signature, batch, rng).items()}
                    p50 = {way: np.percentile(t, 50) for way, t in times.items()}
                    lines.append(
                        f"| {name} | {signature} | {batch} | "
                        + " | ".join(f"{_ms(times[w], 50)} / {_ms(times[w], 99)}"
                                     for w in ("Keras", "SavedModel", "gRPC"))
                        + f" | {p50['gRPC'] / p50['SavedModel']:.2f}x | "
                        f"{batch / p50['gRPC']:.1f} | {p50['SavedModel'] / p50['Keras']:.2f}x |")
                    print(lines[-1], flush=True)
    finally:
        process.terminate()
        process.wait(60)
        log.close()
    table = "\n".join(lines) + "\n"
    print("\n" + table)
    os.makedirs(os.path.dirname(FLAGS.out) or ".", exist_ok=True)
    with open(FLAGS.out + ".md", "w") as f:
        f.write(table)


if __name__ == "__main__":
    app.run(main)
