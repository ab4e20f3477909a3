"""The persistent XLA cache: a second `spn_tf.sample` run loads the compiled sampling loop
instead of compiling it, and draws the same images; `enable` leaves settings it must not
touch."""

import os
import subprocess
import sys

import numpy as np

from spn_tf import compile_cache, models
from spn_tf.grid import read_image

def _cache_files(directory):
    return sorted(name for name in os.listdir(directory) if name.endswith(".pb"))


def test_a_second_sample_cli_run_loads_the_compiled_loop_and_draws_the_same_images(tmp_path):
    models.build("multiscale", 4, channels=1, bits=2, preset="tiny", base_size=2).save(
        str(tmp_path / "model.keras"))
    cache = str(tmp_path / "xla")
    env = {k: v for k, v in os.environ.items() if k != "TF_XLA_FLAGS"}
    runs = []
    for run in range(2):
        out = str(tmp_path / f"samples{run}.png")
        result = subprocess.run(
            [sys.executable, "-m", "spn_tf.sample", f"--model_dir={tmp_path}", "--num_samples=2",
             "--sampler=xla", f"--xla_cache={cache}", f"--out={out}"], env=env,
            capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
        assert f"XLA compilation cache: {cache}" in result.stderr
        runs.append((_cache_files(cache), read_image(out)))
    (written, first), (after, second) = runs
    assert written and all(name.startswith("spn_tf-tf") for name in written)
    assert after == written  # a hit: nothing new compiled and saved
    np.testing.assert_array_equal(second, first)


def test_enable_sets_the_flags_and_leaves_other_settings(tmp_path, monkeypatch):
    monkeypatch.delenv("TF_XLA_FLAGS", raising=False)
    assert compile_cache.enable("off") is None and "TF_XLA_FLAGS" not in os.environ
    directory = str(tmp_path / "cache")
    assert compile_cache.enable(directory) == directory and os.path.isdir(directory)
    flags = os.environ["TF_XLA_FLAGS"]
    assert f"--tf_xla_persistent_cache_directory={directory}" in flags
    assert "--tf_xla_persistent_cache_prefix=spn_tf-tf" in flags and "read_only" not in flags
    # A cache the user set already is left as it is.
    assert compile_cache.enable(str(tmp_path / "other")) is None
    assert os.environ["TF_XLA_FLAGS"] == flags
    # A directory that cannot be created (a file is in the way) leaves the cache off.
    monkeypatch.delenv("TF_XLA_FLAGS")
    (tmp_path / "file").write_text("")
    assert compile_cache.enable(str(tmp_path / "file" / "xla")) is None
    assert "TF_XLA_FLAGS" not in os.environ
