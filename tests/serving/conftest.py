"""Shared fixtures of the serving tests: tiny exports and stand-in servers on 127.0.0.1."""

import contextlib
import socket
import subprocess
import sys
import threading
import time

import pytest
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from spn_tf.export import export_model
from spn_tf.serving.client import Client, ServingError


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def export_version(model, base_path, version):
    """Exports `model` as `<base_path>/<version>` and returns that folder."""
    return export_model(model, str(base_path / str(version)), warmup_batch_sizes=(1,))


def export_config(root, built):
    """Exports each of `built` (`{name: model}`) as `<root>/<name>/1` and writes
    `<root>/models.config` serving them all; returns that file's path."""
    config = model_server_config_pb2.ModelServerConfig()
    for name, model in built.items():
        export_version(model, root / name, 1)
        config.model_config_list.config.add(name=name, base_path=str(root / name),
                                            model_platform="tensorflow")
    (root / "models.config").write_text(text_format.MessageToString(config))
    return root / "models.config"


def run_in_threads(target, count, timeout):
    """Runs `target(i)` for i in range(count), each in its own thread, and waits up to
    `timeout` seconds for each to end."""
    threads = [threading.Thread(target=target, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)


def wait_until_available(port, names, process, timeout=120.0):
    """Waits until the server on `port` has a version AVAILABLE for each model in `names`."""
    deadline = time.monotonic() + timeout
    for name in names:
        with Client(f"127.0.0.1:{port}", name, timeout=5.0, max_attempts=3) as client:
            while True:
                assert process.poll() is None, f"server exited with {process.returncode}"
                assert time.monotonic() < deadline, f"model {name} not AVAILABLE in {timeout} s"
                with contextlib.suppress(ServingError):
                    if "AVAILABLE" in {state for state, _ in client.status().values()}:
                        break
                time.sleep(0.2)


def start_server(flags, log_path, port=None):
    """Starts `python -m spn_tf.serving.server` with `flags`; returns `(process, port)`."""
    port = port or free_port()
    log = open(log_path, "w")  # noqa: SIM115 - the process writes to it until it ends
    process = subprocess.Popen(
        [sys.executable, "-m", "spn_tf.serving.server", f"--port={port}", *flags],
        stdout=log, stderr=subprocess.STDOUT)
    log.close()
    return process, port


def stop_server(process):
    """SIGTERM, then the exit code (killed after 30 s, which fails the caller's check)."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


@pytest.fixture
def server_factory(tmp_path):
    """Starts servers for one test and stops those still running at its end."""
    processes = []

    def start(flags, port=None):
        process, port = start_server(flags, tmp_path / f"server{len(processes)}.log", port)
        processes.append(process)
        return process, port

    yield start
    for process in processes:
        stop_server(process)
