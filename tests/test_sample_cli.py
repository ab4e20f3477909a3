"""The sample CLI: PNG grids from a saved model, --given completion, clear errors."""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from spn_tf import models, sample
from spn_tf.grid import read_png

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _sample_cli(*args):
    return subprocess.run([sys.executable, "-m", "spn_tf.sample", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("run")
    model = models.build("raster", 4, channels=3, bits=3, preset="tiny", cond={"label": 3})
    model.build()
    model.save(str(path / "model.keras"))
    return path


def test_cli_writes_a_png_grid_and_logs_progress(model_dir, tmp_path):
    out = tmp_path / "grid.png"
    result = _sample_cli(f"--model_dir={model_dir}", "--num=5", "--batch_size=3", "--seed=2",
                         f"--out={out}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "sampled 3/5" in result.stderr and "sampled 5/5" in result.stderr
    # 5 images in a 3x2 grid of 4x4 tiles with 1-pixel borders, enlarged 4 times.
    assert read_png(str(out)).shape == (4 * 11, 4 * 16, 3)


def test_given_image_keeps_the_top_half_and_same_seed_same_images(model_dir, tmp_path):
    image = np.random.default_rng(0).integers(0, 256, (4, 4, 3)).astype(np.uint8)
    given = str(tmp_path / "given.png")
    tf.io.write_file(given, tf.io.encode_png(image))
    kwargs = dict(model_dir=str(model_dir), num=4, batch_size=4, seed=1, temperature=1.0,
                  labels=["2"], given_path=given, out=str(tmp_path / "a.png"))
    compiled = sample.run(compiled=True, **kwargs)
    reference = sample.run(compiled=False, **kwargs)
    np.testing.assert_array_equal(compiled, reference)
    np.testing.assert_array_equal(compiled[:, :2], np.repeat(image[None, :2] // 32, 4, 0))


def test_bad_inputs_give_clear_errors(model_dir, tmp_path):
    wrong = str(tmp_path / "wrong.png")
    tf.io.write_file(wrong, tf.io.encode_png(np.zeros((6, 6, 3), np.uint8)))
    result = _sample_cli(f"--model_dir={model_dir}", f"--given={wrong}",
                         f"--out={tmp_path / 'x.png'}")
    assert result.returncode != 0 and "--given is 6x6" in result.stderr
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "model.keras").write_bytes(b"not a zip")
    result = _sample_cli(f"--model_dir={corrupt}", f"--out={tmp_path / 'x.png'}")
    assert result.returncode != 0 and "could not be read" in result.stderr
    with pytest.raises(ValueError, match=r"label.*\[0, 3\)"):
        sample.run(str(model_dir), 2, 2, 0, 1.0, ["7"], None, True, str(tmp_path / "y.png"))
