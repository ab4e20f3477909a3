"""The train CLI end to end on the embedded data (tiny model, a few steps)."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import keras
import pytest

from spn_tf import grid, run_data, run_folder
from spn_tf.training.evaluation import mean_bits_per_dim

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _train(*args, check=True):
    cmd = [sys.executable, "-m", "spn_tf.train", *args]
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    if check:
        assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_quickstart_flagfile_trains_checkpoints_samples_and_reports(tmp_path):
    model_dir = tmp_path / "run"
    result = _train("--flagfile=configs/quickstart.cfg", "--preset=tiny", "--image_size=4",
                    "--steps=4", "--checkpoint_every=2", "--batch_size=8", "--num_samples=4",
                    "--num_classes=10", "--eval_every=2", "--sample_every=2", "--log_every=1",
                    f"--model_dir={model_dir}")
    assert "held-out bits/dim" in result.stdout
    # Not a progress bar: one line per logging interval, a mid-run evaluation.
    assert len(re.findall(r"^step \d+/4  bits/dim", result.stdout, re.M)) == 4
    assert "step 2/4  held-out bits/dim" in result.stdout
    events = {split: b"".join(path.read_bytes() for path in (model_dir / split).iterdir())
              for split in ("train", "eval")}
    for tag in (b"bits_per_dim", b"learning_rate", b"gradient_norm", b"images_per_second"):
        assert tag in events["train"]
    assert b"bits_per_dim" in events["eval"] and b"samples" in events["eval"]
    assert events["eval"].count(b"\x89PNG") == 2 * 4  # grids at step 2 and at the end
    metrics = json.loads((model_dir / "metrics.json").read_text())
    assert 0 < metrics["held_out_bits_per_dim"] < 8
    assert (model_dir / "samples.png").read_bytes()[:4] == b"\x89PNG"
    assert (model_dir / "model.keras").exists()
    config = json.loads((model_dir / "config.json").read_text())
    assert config["preset"] == "tiny" and config["num_classes"] == 10
    # The finished run evaluates again from its directory alone: the same exact value.
    heatmap = tmp_path / "map.png"
    result = subprocess.run([sys.executable, "-m", "spn_tf.evaluate", f"--model_dir={model_dir}",
                             f"--heatmap={heatmap}", "--heatmap_images=3"],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    # Three images beside their bits: one row of six 4x4 tiles, 1-pixel gaps, enlarged 4x.
    assert grid.read_image(str(heatmap)).shape == ((4 + 2) * 4, (6 * 5 + 1) * 4, 3)
    evaluation = json.loads((model_dir / "evaluation.json").read_text())
    assert evaluation["held_out_bits_per_dim"] == pytest.approx(
        metrics["held_out_bits_per_dim"], abs=1e-5)
    # Train bits/dim: exact, of the final model on the fixed training subset (not a running
    # mean over the steps that changed the weights).
    config = run_folder.run_config(str(model_dir))
    keras.utils.set_random_seed(config.seed)  # as the run did: tf.data shuffles use it
    exact = mean_bits_per_dim(run_folder.load_checkpoint(str(model_dir / "model.keras")),
                              run_data.train_subset(config), config.batch_size)
    assert metrics["train_bits_per_dim"] == pytest.approx(exact, abs=1e-5)


def test_bad_flags_and_corrupt_checkpoint_give_clear_errors(tmp_path):
    result = _train("--flagfile=configs/quickstart.cfg", "--modle=raster", check=False)
    assert result.returncode != 0 and "modle" in result.stderr
    result = _train("--dataset=imagenet_resized/32x32", f"--data_dir={tmp_path}", check=False)
    assert result.returncode != 0 and "tfds build" in result.stderr
    model_dir = tmp_path / "corrupt"
    model_dir.mkdir()
    (model_dir / "model.keras").write_bytes(b"not a zip")
    result = _train("--preset=tiny", "--image_size=4", "--steps=1", f"--model_dir={model_dir}",
                    check=False)
    assert result.returncode != 0 and "not a complete .keras archive" in result.stderr
    assert (model_dir / "model.keras").read_bytes() == b"not a zip"


@pytest.mark.parametrize("strategy", ["tpu"])
def test_tpu_strategy_fails_clearly_without_a_tpu(strategy, tmp_path):
    result = _train(f"--strategy={strategy}", "--preset=tiny", "--image_size=4", "--steps=1",
                    f"--model_dir={tmp_path}", check=False)
    assert result.returncode != 0 and "found no TPU" in result.stderr


def _losses(stdout):
    return [float(v) for v in re.findall(r"^step \d+/\d+  bits/dim ([0-9.]+)", stdout, re.M)]


def test_mirrored_on_two_replicas_reports_what_one_device_does(tmp_path):
    # Stand-in for a multi-GPU host: the CPU split into two logical devices; the same global
    # batch, so the same examples per step. Tolerance: printed 4 decimals, float32 sums.
    runs = {}
    for strategy in ("default", "mirrored"):
        model_dir = tmp_path / strategy
        result = _train(f"--strategy={strategy}", "--cpu_devices=2", "--preset=tiny",
                        "--image_size=4", "--steps=4", "--log_every=1", "--batch_size=8",
                        "--num_samples=1", "--eval_batches=4", f"--model_dir={model_dir}")
        runs[strategy] = (_losses(result.stdout),
                          json.loads((model_dir / "metrics.json").read_text()))
    assert "2 replica(s) under mirrored" in result.stdout
    (one, one_metrics), (two, two_metrics) = runs["default"], runs["mirrored"]
    assert len(one) == 4
    np.testing.assert_allclose(two, one, atol=2e-4)
    for key in ("train_bits_per_dim", "held_out_bits_per_dim"):
        np.testing.assert_allclose(two_metrics[key], one_metrics[key], atol=1e-4)
    assert 4 < one_metrics["held_out_bits_per_dim"] < 6  # 5 bits: not doubled


def test_checkpoints_of_the_models_load_in_one_fresh_process(tmp_path):
    # A fresh interpreter has imported none of the model modules: loading must still find them.
    kinds = {"spn": "SubscalePixelNetwork", "multiscale": "MultiscalePixelCNN"}
    for model in kinds:
        _train(f"--model={model}", "--preset=tiny", "--image_size=4", "--steps=1",
               "--batch_size=4", "--num_samples=1", f"--model_dir={tmp_path / model}")
    code = ("import sys; from spn_tf.run_folder import load_checkpoint; "
            "print(*[type(load_checkpoint(path)).__name__ for path in sys.argv[1:]])")
    paths = [str(tmp_path / model / "model.keras") for model in kinds]
    result = subprocess.run([sys.executable, "-c", code, *paths], cwd=ROOT, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == list(kinds.values())
