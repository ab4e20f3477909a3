"""Checkpoints: a SIGKILLed run resumes exactly; corrupt checkpoints and NaN losses stop clearly."""

import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import tensorflow as tf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
# SPN (random slices), flips and EMA: every source of state a resume must restore.
RUN = ["--model=spn", "--preset=tiny", "--image_size=4", "--bits=3", "--subscale_factor=2",
       "--batch_size=8", "--flip", "--ema_decay=0.9", "--warmup_steps=20",
       "--lr_decay=cosine", "--checkpoint_every=10", "--log_every=10", "--eval_batches=1",
       "--num_samples=1"]
STEPS = 120
# Raster: the quickest run, for the error paths.
QUICK = ["--preset=tiny", "--image_size=4", "--batch_size=8", "--num_samples=1",
         "--eval_batches=1", "--warmup_steps=0"]


def _command(model_dir, *args, run=RUN):
    return [sys.executable, "-m", "spn_tf.train", *run, f"--model_dir={model_dir}", *args]


def _train(model_dir, *args, check=True, run=RUN):
    result = subprocess.run(_command(model_dir, *args, run=run), cwd=ROOT, env=ENV,
                            capture_output=True, text=True, timeout=600)
    if check:
        assert result.returncode == 0, result.stderr[-3000:]
    return result


def _checkpoint_values(model_dir, step):
    reader = tf.train.load_checkpoint(os.path.join(model_dir, "checkpoints", f"ckpt-{step}"))
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
            if "OBJECT_GRAPH" not in name}


def test_sigkilled_run_resumes_and_ends_like_an_uninterrupted_one(tmp_path):
    killed_dir, whole_dir = tmp_path / "killed", tmp_path / "whole"
    whole_run = subprocess.Popen(_command(whole_dir, f"--steps={STEPS}"), cwd=ROOT, env=ENV,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    process = subprocess.Popen(_command(killed_dir, f"--steps={STEPS}"), cwd=ROOT, env=ENV,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        index = killed_dir / "checkpoints" / "checkpoint"
        deadline = time.time() + 300
        while not index.exists() and process.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    latest = tf.train.latest_checkpoint(str(killed_dir / "checkpoints"))
    killed_at = int(latest.rsplit("-", 1)[1])
    assert 0 < killed_at < STEPS

    resumed = _train(killed_dir, f"--steps={STEPS}")
    assert f"resumed from {latest} at step {killed_at}" in resumed.stdout
    steps_logged = [int(s) for s in re.findall(r"^step (\d+)/", resumed.stdout, re.M)]
    assert steps_logged[0] == killed_at + 10 and steps_logged[-1] == STEPS
    try:
        _, stderr = whole_run.communicate(timeout=600)
    finally:
        whole_run.kill()
        whole_run.wait(timeout=60)
    assert whole_run.returncode == 0, stderr[-3000:]

    killed, whole = _checkpoint_values(killed_dir, STEPS), _checkpoint_values(whole_dir, STEPS)
    assert killed.keys() == whole.keys()
    assert any("optimizer" in name for name in whole)  # moments, EMA, iterations too
    for name in whole:
        np.testing.assert_allclose(killed[name], whole[name], atol=1e-6, err_msg=name)


def test_corrupt_checkpoint_and_nan_loss_stop_with_clear_messages(tmp_path):
    model_dir = tmp_path / "run"
    _train(model_dir, "--steps=2", "--checkpoint_every=1", run=QUICK)
    index = model_dir / "checkpoints" / "ckpt-2.index"
    index.write_bytes(b"not a checkpoint")
    start = time.time()
    result = _train(model_dir, "--steps=4", check=False, run=QUICK)
    assert result.returncode != 0 and "ckpt-2.index" in result.stderr
    assert "could not be read" in result.stderr and "Traceback" not in result.stderr
    assert time.time() - start < 120
    assert index.read_bytes() == b"not a checkpoint"

    nan_dir = tmp_path / "nan"
    result = _train(nan_dir, "--steps=20", "--checkpoint_every=1", "--learning_rate=1e30",
                    check=False, run=QUICK)
    assert result.returncode != 0 and "the training loss became nan" in result.stderr
    kept = tf.train.latest_checkpoint(str(nan_dir / "checkpoints"))
    assert kept and kept in result.stderr
    reader = tf.train.load_checkpoint(kept)
    assert all(np.isfinite(reader.get_tensor(name)).all()
               for name in reader.get_variable_to_shape_map()
               if reader.get_variable_to_dtype_map()[name].is_floating)


def _contents(directory):
    return {path: path.read_bytes() for path in sorted(directory.rglob("*")) if path.is_file()}


def test_a_model_dir_of_another_configuration_is_refused_and_left_unchanged(tmp_path):
    model_dir = tmp_path / "run"
    _train(model_dir, "--steps=1", "--bits=3", run=QUICK)
    before = _contents(model_dir)
    result = _train(model_dir, "--steps=2", "--bits=4", "--hparams=filters=8", check=False,
                    run=QUICK)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "holds a run of another configuration" in result.stderr
    assert "bits=3 there, 4 here" in result.stderr and "filters=6 there, 8 here" in result.stderr
    assert _contents(model_dir) == before
    # A run of the same model continues there (more steps are not another configuration).
    result = _train(model_dir, "--steps=2", "--bits=3", run=QUICK)
    assert "resumed from" in result.stdout
