"""The gRPC stand-in under concurrent load, at its limits, and past client deadlines.

One stand-in server process (`python -m spn_tf.serving.server`, default limits, 127.0.0.1)
serves the default export of one model (default: multiscale `small`, 32x32x3 at 8 bits,
untrained: time does not depend on the weights). After one untimed pass of every call:

  1. Load: for each of `--clients` (1, 8, 32) concurrent client threads (one `Client`, so one
     channel, each), `--seconds` of calls back to back: `log_prob` of `--log_prob_rows` images
     and `sample` of `--sample_rows` rows (`--sample_share` of the good calls), and
     `--malformed_share` of malformed calls (wrong shape, out-of-range pixels, unknown
     signature, wrong dtype), drawn at random per call. Reported: good rows answered per second,
     p50/p99 latency per signature, errors on good calls (goal 0), good answers unlike the same
     call in process (`tf.saved_model.load` of the export: sample images identical, log_prob
     within float32 rounding; goal 0), malformed calls refused with their code (goal all),
     and the server's RSS (`/proc/<pid>/status` VmRSS) before and after (goal: flat within
     10% over the whole run).
  2. Limits and deadlines, once the load has run: a `sample` of `--max_batch_rows` + 1 rows
     (INVALID_ARGUMENT naming the flag), a `log_prob` just larger than
     `--grpc_max_message_bytes` (gRPC's RESOURCE_EXHAUSTED before the server reads it), a
     `sample` whose client deadline is a quarter of its measured time (DEADLINE_EXCEEDED, not
     retried), then a good call answered; the server log must hold no traceback.

Usage:
  python benchmarks/serving_load.py --out=runs/benchmarks/serving_load
  python benchmarks/serving_load.py --smoke   # tiny model, 2 s per level: seconds, for tests
"""

import contextlib
import os
import sys
import tempfile
import threading
import time

import grpc
import numpy as np
from absl import app, flags

from spn_tf.startup import quiet_import

with quiet_import():  # TensorFlow's start-up lines stay hidden
    import tensorflow as tf

from spn_tf import models, startup  # noqa: E402
from spn_tf.export import export_model
from spn_tf.serving.client import Client, ServingError, row_seeds
from spn_tf.serving.server import MAX_MESSAGE_BYTES
from spn_tf.serving.servables import MAX_BATCH_ROWS

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from stand_in import serve  # noqa: E402  (benchmarks/stand_in.py)

FLAGS = flags.FLAGS
flags.DEFINE_string("model", "multiscale", "Model family served.")
flags.DEFINE_string("preset", "small", "Model preset.")
flags.DEFINE_integer("image_size", 32, "Height = width.")
flags.DEFINE_integer("channels", 3, "Image channels.")
flags.DEFINE_integer("bits", 8, "Bits per sub-pixel.")
flags.DEFINE_list("clients", ["1", "8", "32"], "Concurrent client threads, one level each.")
flags.DEFINE_float("seconds", 20.0, "Seconds of calls per level.")
flags.DEFINE_integer("log_prob_rows", 4, "Images per log_prob call.")
flags.DEFINE_integer("sample_rows", 2, "Rows per sample call.")
flags.DEFINE_float("sample_share", 0.5, "Share of the good calls that are sample calls.")
flags.DEFINE_float("malformed_share", 0.1, "Share of all calls that are malformed.")
flags.DEFINE_bool("smoke", False, "A run of seconds (tiny 8x8x3 raster at 3 bits, 2 s at 1 and "
                  "8 clients): checks the benchmark runs and meets its goals, for tests.")
flags.DEFINE_string("out", "runs/benchmarks/serving_load", "Prefix of the .md tables.")

INVALID, PRECONDITION = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION


def _smoke_settings():
    FLAGS.model, FLAGS.preset, FLAGS.image_size, FLAGS.bits = "raster", "tiny", 8, 3
    FLAGS.clients, FLAGS.seconds = ["1", "8"], 2.0


def rss_mb(pid):
    """Resident memory of process `pid` in MB (VmRSS of `/proc/<pid>/status`)."""
    with open(f"/proc/{pid}/status") as f:
        kb = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    return kb / 1024


@contextlib.contextmanager
def stand_in(base_path, log_path):
    """`(process, "127.0.0.1:port")` of a stand-in serving `base_path` as model `m`, once the
    version is AVAILABLE."""
    with serve(base_path, "m", log_path, poll=0.2) as (process, port):
        yield process, f"127.0.0.1:{port}"


class Calls:
    """The calls of the load: a pool of good calls with their in-process answers, and the
    malformed kinds with the code each must be refused with.

    Args:
      loaded: the export, `tf.saved_model.load`ed in this process.
      shape: `(H, W, C)` of its images; bits: bits per sub-pixel.
    """

    def __init__(self, loaded, shape, bits, pool=4):
        rng = np.random.default_rng(0)
        self.good = []  # (signature, inputs, expected outputs)
        for k in range(pool):
            images = rng.integers(0, 2 ** bits, (FLAGS.log_prob_rows, *shape)).astype(np.int32)
            self.good.append(("log_prob", {"images": images}, None))
            self.good.append(("sample", {
                "seed": row_seeds(FLAGS.sample_rows, [k, 0]),
                "temperature": np.ones(FLAGS.sample_rows, np.float32)}, None))
        self.good = [(s, x, {k: v.numpy() for k, v in loaded.signatures[s](
            **{k: tf.constant(v) for k, v in x.items()}).items()}) for s, x, _ in self.good]
        images = self.good[0][1]["images"]
        self.malformed = [  # (name, signature, inputs, code)
            ("wrong shape", "log_prob", {"images": images[:, 1:]}, INVALID),
            ("pixel out of range", "log_prob", {"images": images * 0 + 2 ** bits}, INVALID),
            ("unknown signature", "nope", {"images": images}, PRECONDITION),
            ("wrong dtype", "log_prob", {"images": images.astype(np.float32)}, INVALID),
        ]

    def check(self, signature, got, want):
        """Whether a good call's answer equals the in-process answer."""
        if signature == "sample":
            return np.array_equal(got["images"], want["images"])
        return np.allclose(got["log_prob"], want["log_prob"], rtol=1e-6, atol=0)


def drive(address, calls, clients, seconds):
    """`clients` threads calling for `seconds`; returns the level's records, one per call:
    `(kind, latency s, rows, outcome)` with kind a signature or "malformed" and outcome "ok",
    "wrong" (answer unlike in process), "error" (a good call refused), "refused" (malformed,
    with its code) or "misrefused"."""
    records, lock = [], threading.Lock()
    end = time.monotonic() + seconds

    def client_thread(worker):
        rng = np.random.default_rng(worker)
        own = []
        with Client(address, "m", timeout=600) as client:
            while time.monotonic() < end:
                if rng.random() < FLAGS.malformed_share:
                    _, signature, inputs, code = calls.malformed[rng.integers(
                        len(calls.malformed))]
                    start = time.perf_counter()
                    try:
                        client.predict(inputs, signature)
                        outcome = "misrefused"
                    except ServingError as error:
                        outcome = "refused" if error.code == code else "misrefused"
                    own.append(("malformed", time.perf_counter() - start, 0, outcome))
                    continue
                kind = "sample" if rng.random() < FLAGS.sample_share else "log_prob"
                pool = [c for c in calls.good if c[0] == kind]
                signature, inputs, want = pool[rng.integers(len(pool))]
                start = time.perf_counter()
                try:
                    got = client.predict(inputs, signature)
                    outcome = "ok" if calls.check(signature, got, want) else "wrong"
                except ServingError:
                    outcome = "error"
                own.append((kind, time.perf_counter() - start, len(next(iter(
                    inputs.values()))), outcome))
        with lock:
            records.extend(own)

    threads = [threading.Thread(target=client_thread, args=(w,)) for w in range(clients)]
    start = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return records, time.monotonic() - start


def _ms(latencies, q):
    return f"{1000 * np.percentile(latencies, q):.0f}" if latencies else "-"


def level_row(clients, records, wall, rss_before, rss_after):
    """A markdown row of table 1, and whether the level met its goals."""
    by_kind = {k: [r for r in records if r[0] == k] for k in ("log_prob", "sample", "malformed")}
    good = by_kind["log_prob"] + by_kind["sample"]
    rows = sum(r[2] for r in good if r[3] == "ok")
    errors = sum(r[3] == "error" for r in good)
    wrong = sum(r[3] == "wrong" for r in good)
    refused = sum(r[3] == "refused" for r in by_kind["malformed"])
    cells = [str(clients), str(len(good)), f"{rows / wall:.1f}"]
    for kind in ("log_prob", "sample"):
        latencies = [r[1] for r in by_kind[kind] if r[3] == "ok"]
        cells.append(f"{_ms(latencies, 50)} / {_ms(latencies, 99)}")
    cells += [str(errors), str(wrong), f"{refused} / {len(by_kind['malformed'])}",
              f"{rss_before:.0f} → {rss_after:.0f}"]
    return "| " + " | ".join(cells) + " |", not errors and not wrong and \
        refused == len(by_kind["malformed"])


def _refusal(call):
    """`(code name, ms, the client's message)` of a call expected to be refused."""
    start = time.perf_counter()
    try:
        call()
    except ServingError as error:
        return error.code.name, 1000 * (time.perf_counter() - start), str(error)
    return "answered", 1000 * (time.perf_counter() - start), ""


def limit_rows(address, calls, shape, bits, pid):
    """Markdown rows of table 2 (the limits, the deadline), and whether they met their goals."""
    rows, met = [], True
    with Client(address, "m", timeout=600) as client:
        too_many = MAX_BATCH_ROWS + 1
        code, ms, details = _refusal(lambda: client.sample(too_many, seed=0))
        met &= code == "INVALID_ARGUMENT" and "--max_batch_rows" in details
        rows.append(f"| `sample` of {too_many} rows (limit {MAX_BATCH_ROWS}) | {code} | "
                    f"{ms:.0f} ms | {details} |")
        per_row = int(np.prod(shape)) * 4
        images = np.zeros((MAX_MESSAGE_BYTES // per_row + 1, *shape), np.int32)
        before = rss_mb(pid)
        code, ms, details = _refusal(lambda: client.log_prob(images))
        met &= code == "RESOURCE_EXHAUSTED" and rss_mb(pid) < before * 1.1
        rows.append(f"| `log_prob` of {len(images)} rows, {images.nbytes / 1e6:.1f} MB "
                    f"(limit {MAX_MESSAGE_BYTES / 2 ** 20:.0f} MiB) | {code} | {ms:.0f} ms | "
                    f"{details} (server RSS {before:.0f} → {rss_mb(pid):.0f} MB) |")
        inputs = {"seed": row_seeds(8, [9, 0]), "temperature": np.ones(8, np.float32)}
        start = time.perf_counter()
        client.predict(inputs, "sample")
        took = time.perf_counter() - start
    with Client(address, "m", timeout=took / 4, max_attempts=5) as hurried:
        code, ms, details = _refusal(lambda: hurried.predict(inputs, "sample"))
    with Client(address, "m", timeout=600) as client:
        signature, inputs, want = calls.good[0]
        start = time.perf_counter()
        answered = calls.check(signature, client.predict(inputs, signature), want)
        after = 1000 * (time.perf_counter() - start)
    met &= code == "DEADLINE_EXCEEDED" and ms < 1000 * took and answered
    rows.append(f"| `sample` of 8 rows ({1000 * took:.0f} ms) with a {250 * took:.0f} ms "
                f"deadline | {code} | {ms:.0f} ms | {details} Then a good call: answered "
                f"{'correctly' if answered else 'WRONGLY'} in {after:.0f} ms |")
    return rows, met


def main(argv):
    del argv
    startup.quiet_tensorflow_logs()
    if FLAGS.smoke:
        _smoke_settings()
    workdir = tempfile.mkdtemp(prefix="spn_tf_serving_load_")
    shape = (FLAGS.image_size, FLAGS.image_size, FLAGS.channels)
    model = models.build(FLAGS.model, FLAGS.image_size, channels=FLAGS.channels,
                         bits=FLAGS.bits, preset=FLAGS.preset)
    model.build()
    export_dir = export_model(model, os.path.join(workdir, "m", "1"), warmup_batch_sizes=(1,))
    calls = Calls(tf.saved_model.load(export_dir), shape, FLAGS.bits)
    what = (f"{FLAGS.model} `{FLAGS.preset}` ({model.count_params():,} parameters), "
            f"{'x'.join(map(str, shape))} at {FLAGS.bits} bits, default export")
    print(what, flush=True)
    log_path = os.path.join(workdir, "server.log")
    table1 = [f"1. Load: {what}; {FLAGS.seconds:g} s per level; good calls: log_prob of "
              f"{FLAGS.log_prob_rows} images, sample of {FLAGS.sample_rows} rows "
              f"({FLAGS.sample_share:.0%} of them); {FLAGS.malformed_share:.0%} malformed.", "",
              "| clients | good calls | rows/s | log_prob p50 / p99 ms | sample p50 / p99 ms | "
              "errors on good calls | wrong answers | malformed refused | server RSS MB |",
              "|---|---|---|---|---|---|---|---|---|"]
    table2 = ["2. Limits (server defaults) and a client deadline, after the load.", "",
              "| call | answer | time | the client's error |", "|---|---|---|---|"]
    met = True
    with stand_in(os.path.join(workdir, "m"), log_path) as (process, address):
        with Client(address, "m", timeout=600) as client:  # every good call once, untimed
            for signature, inputs, _ in calls.good:
                client.predict(inputs, signature)
        start_rss = rss_mb(process.pid)
        for clients in (int(c) for c in FLAGS.clients):
            before = rss_mb(process.pid)
            records, wall = drive(address, calls, clients, FLAGS.seconds)
            row, level_met = level_row(clients, records, wall, before, rss_mb(process.pid))
            met &= level_met
            table1.append(row)
            print(row, flush=True)
        end_rss = rss_mb(process.pid)
        rss_met = end_rss <= 1.1 * start_rss
        table1 += ["", f"Server RSS over the load: {start_rss:.0f} → {end_rss:.0f} MB "
                   f"({end_rss / start_rss - 1:+.1%}; goal within 10%)."]
        rows, limits_met = limit_rows(address, calls, shape, FLAGS.bits, process.pid)
        table2 += rows
        time.sleep(1.0)  # the dropped call ends and would log any error
    tracebacks = open(log_path).read().count("Traceback")
    table2 += ["", f"Tracebacks in the server log: {tracebacks}."]
    text = "\n".join(table1) + "\n\n" + "\n".join(table2) + "\n"
    print("\n" + text)
    missed = [name for name, ok in (("good calls answered, malformed refused", met),
                                    ("RSS flat", rss_met), ("limits and deadline", limits_met),
                                    ("no traceback", not tracebacks)) if not ok]
    print(f"goals missed: {', '.join(missed)}" if missed else "goals met")
    os.makedirs(os.path.dirname(FLAGS.out) or ".", exist_ok=True)
    with open(FLAGS.out + ".md", "w") as f:
        f.write(text)


if __name__ == "__main__":
    app.run(main)
