"""Multi-worker training for real: two worker processes on 127.0.0.1 with TF_CONFIG."""

import json
import os
import re
import socket
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN = ["--preset=tiny", "--image_size=4", "--batch_size=8", "--checkpoint_every=2",
       "--log_every=1", "--num_samples=1", "--eval_batches=2"]


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _losses(stdout):
    return re.findall(r"^step (\d+)/\d+  bits/dim ([0-9.]+)", stdout, re.M)


def test_two_workers_train_and_leave_one_checkpoint_a_single_process_resumes(tmp_path):
    model_dir = tmp_path / "run"
    cluster = {"worker": [f"127.0.0.1:{port}" for port in _free_ports(2)]}
    workers = []
    for index in range(2):
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2",
               "TF_CONFIG": json.dumps({"cluster": cluster,
                                        "task": {"type": "worker", "index": index}})}
        workers.append(subprocess.Popen(
            [sys.executable, "-m", "spn_tf.train", "--strategy=multi_worker", "--steps=4",
             f"--model_dir={model_dir}", *RUN], cwd=ROOT, env=env, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True))
    outputs = []
    try:
        for worker in workers:
            stdout, stderr = worker.communicate(timeout=400)
            outputs.append(stdout)
            assert worker.returncode == 0, stderr[-3000:]
    finally:
        for worker in workers:
            worker.kill()
            worker.wait(timeout=60)
    chief, other = outputs
    assert "2 replica(s) under multi_worker" in chief
    assert len(_losses(chief)) == 4 and _losses(chief) == _losses(other)  # one synced model
    # Only the chief writes the artefacts; workers' temporary checkpoint dirs are gone.
    assert sorted(os.listdir(model_dir)) == ["checkpoints", "config.json", "eval",
                                             "metrics.json", "model.keras", "samples.png",
                                             "train"]
    assert "held-out bits/dim" in chief and "held-out bits/dim" not in other

    result = subprocess.run(
        [sys.executable, "-m", "spn_tf.train", "--steps=6", f"--model_dir={model_dir}", *RUN],
        cwd=ROOT, capture_output=True, text=True, timeout=400,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"resumed from {model_dir}/checkpoints/ckpt-4 at step 4" in result.stdout
    assert [step for step, _ in _losses(result.stdout)] == ["5", "6"]
