"""The stand-in server's life: late start (client retries), new versions, SIGTERM."""

import os
import signal
import threading
import time

import numpy as np
import pytest

from conftest import export_version, free_port, stop_server, wait_until_available
from spn_tf import models
from spn_tf.serving.client import Client, ServingError

IMAGES = np.arange(2 * 4 * 4).reshape(2, 4, 4, 1).astype(np.int32) % 4


@pytest.fixture(scope="module")
def two_models():
    """Two tiny raster models with different weights (the RNG moves between the builds)."""
    first, second = (models.build("raster", 4, channels=1, bits=2, preset="tiny")
                     for _ in range(2))
    assert not np.allclose(first.log_prob(IMAGES), second.log_prob(IMAGES))
    return first, second


def test_client_retries_until_the_server_is_up_and_sigterm_exits_0(two_models, tmp_path,
                                                                   server_factory):
    model = two_models[0]
    export_version(model, tmp_path / "m", 1)
    port = free_port()
    result = {}

    def call():
        start = time.monotonic()
        with Client(f"127.0.0.1:{port}", "m", timeout=120, max_attempts=12,
                    initial_backoff=0.1) as client:
            result["log_prob"] = client.log_prob(IMAGES)["log_prob"]
        result["seconds"] = time.monotonic() - start

    caller = threading.Thread(target=call)
    caller.start()  # before the server exists: its first attempts find the port closed
    time.sleep(0.5)
    process, _ = server_factory(["--model_name=m", f"--model_base_path={tmp_path / 'm'}"], port)
    caller.join(150)
    np.testing.assert_allclose(result["log_prob"], model.log_prob(IMAGES), rtol=1e-5)
    assert result["seconds"] > 0.5
    start = time.monotonic()
    os.kill(process.pid, signal.SIGTERM)
    assert process.wait(30) == 0
    assert time.monotonic() - start < 10
    with Client(f"127.0.0.1:{port}", "m", timeout=10, max_attempts=2) as client:
        with pytest.raises(ServingError, match="unavailable after 2 attempt"):
            client.status()


def test_new_version_is_served_without_a_failed_call(two_models, tmp_path, server_factory):
    first, second = two_models
    base = tmp_path / "m"
    export_version(first, base, 1)
    process, port = server_factory(["--model_name=m", f"--model_base_path={base}",
                                    "--file_system_poll_wait_seconds=1"])
    wait_until_available(port, ["m"], process)
    export_version(second, tmp_path / "staging", 2)
    want = [first.log_prob(IMAGES).numpy(), second.log_prob(IMAGES).numpy()]
    seen, failures, stop = [[], []], [], threading.Event()

    def calls(worker):
        deadline = time.monotonic() + 120
        with Client(f"127.0.0.1:{port}", "m", timeout=60) as client:
            for _ in range(5000):
                if stop.is_set() or time.monotonic() > deadline:
                    return
                time.sleep(0.01)
                try:
                    got = client.log_prob(IMAGES)["log_prob"]
                except ServingError as error:
                    failures.append(str(error))
                    continue
                matches = [k for k in (0, 1) if np.allclose(got, want[k], rtol=1e-5)]
                seen[worker].append(matches[0] if matches else f"unexpected {got}")

    threads = [threading.Thread(target=calls, args=(w,)) for w in range(2)]
    for thread in threads:
        thread.start()
    time.sleep(1.0)
    os.rename(tmp_path / "staging" / "2", base / "2")  # atomic: the poller never sees half
    deadline = time.monotonic() + 120
    while not all(s and s[-1] == 1 for s in seen) and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)
    stop.set()
    for thread in threads:
        thread.join(60)
    assert not failures, failures[:3]
    for worker_seen in seen:
        assert worker_seen[0] == 0 and worker_seen[-1] == 1, worker_seen
        switch = worker_seen.index(1)
        assert set(worker_seen[switch:]) == {1}, "went back to version 1"
        assert set(worker_seen[:switch]) == {0}
    with Client(f"127.0.0.1:{port}", "m") as client:
        assert client.status() == {1: ("END", ""), 2: ("AVAILABLE", "")}
    assert stop_server(process) == 0


def test_sigterm_lets_a_call_in_flight_finish_and_refuses_new_ones(tmp_path, server_factory):
    # Slow enough to be in flight when the signal comes: 32*32*3 sequential steps of the
    # `small` raster model for 16 rows (measured: 16x16 takes 0.8 s, this several seconds).
    model = models.build("raster", 32, channels=3, bits=3, preset="small")
    export_version(model, tmp_path / "slow", 1)
    process, port = server_factory(["--model_name=slow", f"--model_base_path={tmp_path / 'slow'}",
                                    "--shutdown_grace_seconds=120"])
    wait_until_available(port, ["slow"], process)
    result = {}

    def call():
        with Client(f"127.0.0.1:{port}", "slow", timeout=240, max_attempts=1) as client:
            result["images"] = client.sample(16, seed=3)
        result["end"] = time.monotonic()

    caller = threading.Thread(target=call)
    caller.start()
    time.sleep(0.5)
    os.kill(process.pid, signal.SIGTERM)
    signalled = time.monotonic()
    time.sleep(0.5)
    with Client(f"127.0.0.1:{port}", "slow", timeout=10, max_attempts=1) as late:
        with pytest.raises(ServingError, match="unavailable"):
            late.status()
    caller.join(240)
    assert process.wait(60) == 0
    assert "images" in result, "the call in flight did not complete"
    # It was in flight when the signal came (it ended after it), and it is whole.
    assert result["end"] > signalled
    assert result["images"].shape == (16, 32, 32, 3)
    assert result["images"].min() >= 0 and result["images"].max() < 8
