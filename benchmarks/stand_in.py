"""The local stand-in server for benchmarks: started on a free port, waited for, stopped."""

import contextlib
import socket
import subprocess
import sys
import time

from spn_tf.serving.client import Client, ServingError


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve(base_path, name, log_path, poll=0.1):
    """`(process, port)` of `python -m spn_tf.serving.server` serving `base_path` as `name`,
    yielded once a version is AVAILABLE; the server is stopped on exit.

    Polls with one attempt per `poll` seconds: a retrying client's backoff would round a
    measured load time up to its schedule (the server listens only once the model is loaded).
    """
    port = free_port()
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "spn_tf.serving.server", f"--port={port}",
             f"--model_name={name}", f"--model_base_path={base_path}",
             "--file_system_poll_wait_seconds=0"], stdout=log, stderr=subprocess.STDOUT)
    try:
        with Client(f"127.0.0.1:{port}", name, timeout=5, max_attempts=1) as probe:
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"server exited; see {log_path}")
                with contextlib.suppress(ServingError):
                    if "AVAILABLE" in {s for s, _ in probe.status().values()}:
                        break
                time.sleep(poll)
        yield process, port
    finally:
        process.terminate()
        process.wait(60)
