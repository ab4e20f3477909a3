"""The stand-in under load and at its limits: concurrent mixed calls, rows and message size,
client deadlines.

One server for the module (a tiny 16x16x3 raster export, `--max_batch_rows=64`,
`--grpc_max_message_bytes=131072`: 64 rows of log_prob images, 196 KB, are too large, 65 rows
of sample seeds too many); every expected value comes from the same export loaded in process
with `tf.saved_model.load`. The load benchmark's `--smoke` run must meet its goals.
"""

import os
import subprocess
import sys
import time

import grpc
import numpy as np
import pytest
import tensorflow as tf

from conftest import (export_version, run_in_threads, start_server, stop_server,
                      wait_until_available)
from spn_tf import models
from spn_tf.serving import server
from spn_tf.serving.client import Client, ServingError, row_seeds

SIZE, CHANNELS, BITS, CLASSES = 16, 3, 2, 3
MAX_ROWS, MAX_BYTES = 64, 128 * 1024
BENCHMARK = os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks",
                         "serving_load.py")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """`(loaded, port, log path)`: the export in process, and the server answering for it."""
    root = tmp_path_factory.mktemp("load")
    model = models.build("raster", SIZE, channels=CHANNELS, bits=BITS, preset="tiny",
                         cond={"label": CLASSES})
    export_dir = export_version(model, root / "m", 1)
    log = root / "server.log"
    process, port = start_server([
        "--model_name=m", f"--model_base_path={root / 'm'}", "--file_system_poll_wait_seconds=0",
        f"--max_batch_rows={MAX_ROWS}", f"--grpc_max_message_bytes={MAX_BYTES}"], log)
    try:
        wait_until_available(port, ["m"], process)
        yield tf.saved_model.load(str(export_dir)), port, log
    finally:
        assert stop_server(process) == 0


def _in_process(loaded, signature, inputs):
    return {k: v.numpy() for k, v in loaded.signatures[signature](
        **{k: tf.constant(v) for k, v in inputs.items()}).items()}


def _sample_inputs(rows, seed):
    return {"seed": row_seeds(rows, seed), "temperature": np.ones(rows, np.float32),
            "label": np.arange(rows, dtype=np.int32) % CLASSES}


def _log_prob_inputs(rng, rows):
    return {"images": rng.integers(0, 2 ** BITS, (rows, SIZE, SIZE, CHANNELS)).astype(np.int32),
            "label": rng.integers(0, CLASSES, rows).astype(np.int32)}


def _calls(loaded, rng):
    """`(signature, inputs, expected outputs or the refusal's (code, text))` of the load test:
    good log_prob and sample calls, and one of each kind of malformed call."""
    calls = []
    for k in range(4):
        inputs = _log_prob_inputs(rng, 1 + k)
        calls.append(("log_prob", inputs, _in_process(loaded, "log_prob", inputs)))
        inputs = _sample_inputs(1 + k % 2, [k, 10 * k])
        calls.append(("sample", inputs, _in_process(loaded, "sample", inputs)))
    good = _log_prob_inputs(rng, 2)
    calls += [
        ("log_prob", {**good, "images": good["images"][:, :8]},
         (grpc.StatusCode.INVALID_ARGUMENT, "'images' has shape [2, 8, 16, 3]")),
        ("log_prob", {**good, "images": good["images"] + 2 ** BITS},
         (grpc.StatusCode.INVALID_ARGUMENT, "images values must be in [0, 4) (bits=2)")),
        ("nope", good, (grpc.StatusCode.FAILED_PRECONDITION,
                        'Serving signature key "nope" not found.')),
        ("log_prob", {**good, "images": good["images"].astype(np.float32)},
         (grpc.StatusCode.INVALID_ARGUMENT, "('images') to be int32 but float32")),
    ]
    return calls


def test_eight_clients_mixed_and_malformed_calls_each_get_their_own_answer(served):
    loaded, port, _ = served
    calls = _calls(loaded, np.random.default_rng(0))
    failures, answered = [], []

    def client_thread(worker):
        with Client(f"127.0.0.1:{port}", "m", timeout=60) as client:
            for j in range(20):
                signature, inputs, want = calls[(worker * 5 + j * 3) % len(calls)]
                try:
                    got = client.predict(inputs, signature)
                    if isinstance(want, tuple):
                        failures.append(f"{worker}/{j} {signature}: answered, not {want[0]}")
                    elif signature == "sample":
                        np.testing.assert_array_equal(got["images"], want["images"])
                    else:
                        np.testing.assert_allclose(got["log_prob"], want["log_prob"], rtol=1e-6)
                except ServingError as error:
                    if not isinstance(want, tuple) or error.code != want[0] or \
                            want[1] not in error.details:
                        failures.append(f"{worker}/{j} {signature}: {error}")
                except AssertionError as error:
                    failures.append(f"{worker}/{j} {signature}: {error}")
                answered.append(1)

    run_in_threads(client_thread, 8, 120)
    assert not failures, failures[:3]
    assert len(answered) == 8 * 20
    with Client(f"127.0.0.1:{port}", "m", timeout=60) as client:
        signature, inputs, want = calls[0]
        np.testing.assert_allclose(client.predict(inputs, signature)["log_prob"],
                                   want["log_prob"], rtol=1e-6)


def test_too_many_rows_is_invalid_argument_naming_the_flag(served):
    loaded, port, _ = served
    with Client(f"127.0.0.1:{port}", "m", timeout=60) as client:
        with pytest.raises(ServingError) as error:
            client.sample(MAX_ROWS + 1, seed=0, cond={"label": np.zeros(MAX_ROWS + 1)})
        assert error.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert error.value.details == (
            f"input 'label' has {MAX_ROWS + 1} rows; this server takes at most {MAX_ROWS} rows "
            f"per request (--max_batch_rows={MAX_ROWS}): send at most {MAX_ROWS} rows per "
            f"request, or start the server with a larger --max_batch_rows.")
        inputs = _sample_inputs(MAX_ROWS, 0)
        np.testing.assert_array_equal(client.predict(inputs, "sample")["images"],
                                      _in_process(loaded, "sample", inputs)["images"])


def test_too_large_message_is_resource_exhausted_and_the_client_names_the_flag(served):
    loaded, port, _ = served
    inputs = _log_prob_inputs(np.random.default_rng(1), MAX_ROWS)  # 196 KB of int32 pixels
    with Client(f"127.0.0.1:{port}", "m", timeout=60) as client:
        with pytest.raises(ServingError) as error:
            client.log_prob(inputs["images"], {"label": inputs["label"]})
        assert error.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        # gRPC's own text, from the server (refused before it is read into memory).
        assert "Received message larger than max (" in error.value.details
        assert f"vs. {MAX_BYTES})" in error.value.details
        assert "--grpc_max_message_bytes" in str(error.value)
        half = {k: v[:MAX_ROWS // 2] for k, v in inputs.items()}
        np.testing.assert_allclose(client.predict(half, "log_prob")["log_prob"],
                                   _in_process(loaded, "log_prob", half)["log_prob"], rtol=1e-6)


def test_deadline_shorter_than_a_sample_is_deadline_exceeded_and_the_server_goes_on(served):
    loaded, port, log = served
    inputs = _sample_inputs(MAX_ROWS, [3, 0])  # 64 rows of 16x16x3: ~0.5 s
    with Client(f"127.0.0.1:{port}", "m", timeout=0.1, max_attempts=5) as hurried:
        start = time.monotonic()
        with pytest.raises(ServingError) as error:
            hurried.predict(inputs, "sample")
        elapsed = time.monotonic() - start
    assert error.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "timeout of 0.1 s" in str(error.value) and "not retried" in str(error.value)
    assert elapsed < 0.5, f"{elapsed:.2f} s: retried?"
    with Client(f"127.0.0.1:{port}", "m", timeout=60) as client:
        good = _log_prob_inputs(np.random.default_rng(2), 2)
        np.testing.assert_allclose(client.predict(good, "log_prob")["log_prob"],
                                   _in_process(loaded, "log_prob", good)["log_prob"], rtol=1e-6)
        # As long as the dropped call: it has ended (its answer dropped) when this returns.
        np.testing.assert_array_equal(client.predict(inputs, "sample")["images"],
                                      _in_process(loaded, "sample", inputs)["images"])
    time.sleep(0.5)
    assert "Traceback" not in log.read_text()


class _Context:
    """A servicer context whose call's deadline has passed (or, `remaining=None`, has none)."""

    def __init__(self, remaining, active=True):
        self.remaining, self.active, self.aborted = remaining, active, None

    def time_remaining(self):
        return self.remaining

    def is_active(self):
        return self.active

    def abort(self, code, details):
        self.aborted = (code, details)
        raise grpc.RpcError(details)


@pytest.mark.parametrize("context", [_Context(-0.5), _Context(None, active=False)])
def test_a_call_whose_deadline_passed_while_queued_is_not_run(context):
    ran = []
    method = server._answer(lambda manager, request: ran.append(request))
    with pytest.raises(grpc.RpcError):
        method(type("Servicer", (), {"manager": None})(), "request", context)
    assert not ran
    assert context.aborted[0] == grpc.StatusCode.DEADLINE_EXCEEDED
    assert method(type("Servicer", (), {"manager": None})(), "request", _Context(5.0)) is None
    assert ran == ["request"]


def test_the_load_benchmark_smoke_run_meets_its_goals(tmp_path):
    # As a user runs it: without the tests' TF_CPP_MIN_LOG_LEVEL (it silences TF itself).
    quiet = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    result = subprocess.run([sys.executable, BENCHMARK, "--smoke", f"--out={tmp_path / 'load'}"],
                            capture_output=True, text=True, timeout=120, env=quiet)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == "", result.stderr  # quiet: no TensorFlow start-up lines
    text = (tmp_path / "load.md").read_text()
    assert "| 8 |" in text and "RESOURCE_EXHAUSTED" in text and "DEADLINE_EXCEEDED" in text
    assert "goals met" in result.stdout, result.stdout
