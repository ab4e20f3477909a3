"""The sample CLI: PNG grids from a saved model, --given completion, clear errors, and no
line on stderr that spn_tf did not write."""

import os
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from spn_tf import models, sample
from spn_tf.grid import read_image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _sample_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "spn_tf.sample", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300,
                          env=env or {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})


OUR_FILES = {name for _, _, files in os.walk(os.path.join(ROOT, "spn_tf")) for name in files
             if name.endswith(".py")}
ABSL_LINE = re.compile(r"^[IWEF]\d{4} [\d:.]+ +\d+ (?P<file>[\w.]+\.py):\d+\] ")


def _foreign_lines(stderr):
    """Lines of a CLI's stderr that spn_tf did not write (TensorFlow's start-up lines...)."""
    return [line for line in stderr.splitlines()
            if not (ABSL_LINE.match(line) and ABSL_LINE.match(line)["file"] in OUR_FILES)]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("run")
    model = models.build("raster", 4, channels=3, bits=3, preset="tiny", cond={"label": 3})
    model.build()
    model.save(str(path / "model.keras"))
    return path


def test_cli_writes_a_png_grid_and_logs_progress(model_dir, tmp_path):
    out = tmp_path / "grid.png"
    # As a user runs it: no TF_CPP_MIN_LOG_LEVEL, so the CLI's own quieting is what is tested.
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL",
                                                            "SPN_TF_VERBOSE")}
    result = _sample_cli(f"--model_dir={model_dir}", "--num_samples=5", "--batch_size=3", "--seed=2",
                         f"--out={out}", f"--xla_cache={tmp_path / 'xla'}", env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "sampled 3/5" in result.stderr and "sampled 5/5" in result.stderr
    assert not _foreign_lines(result.stderr), result.stderr[-3000:]
    # 5 images in a 3x2 grid of 4x4 tiles with 1-pixel borders, enlarged 4 times.
    assert read_image(str(out)).shape == (4 * 11, 4 * 16, 3)


def test_given_image_keeps_the_top_half_and_same_seed_same_images(model_dir, tmp_path):
    image = np.random.default_rng(0).integers(0, 256, (4, 4, 3)).astype(np.uint8)
    given = str(tmp_path / "given.png")
    tf.io.write_file(given, tf.io.encode_png(image))
    kwargs = dict(model_dir=str(model_dir), num=4, batch_size=4, seed=1, temperature=1.0,
                  labels=["2"], given_path=given, out=str(tmp_path / "a.png"))
    compiled = sample.run(sampler="xla", **kwargs)
    reference = sample.run(sampler="reference", **kwargs)
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
    assert result.returncode != 0 and "not a complete .keras archive" in result.stderr
    with pytest.raises(ValueError, match=r"label.*\[0, 3\)"):
        sample.run(str(model_dir), 2, 2, 0, 1.0, ["7"], None, "auto", str(tmp_path / "y.png"))
    # Refused before the sampler is announced (nothing suggests sampling had started).
    result = _sample_cli(f"--model_dir={model_dir}", "--labels=x", f"--out={tmp_path / 'y.png'}")
    assert result.returncode != 0 and "--labels must be class indices" in result.stderr
    assert "sampler:" not in result.stderr


def test_non_image_given_is_a_clear_error_not_a_traceback(model_dir, tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    result = _sample_cli(f"--model_dir={model_dir}", f"--given={text}",
                         f"--out={tmp_path / 'x.png'}")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "could not be read as a PNG, JPEG, GIF or BMP image" in result.stderr
    with pytest.raises(ValueError, match="does not exist"):
        sample.run(str(model_dir), 1, 1, 0, 1.0, None, str(tmp_path / "missing.png"), "auto",
                   str(tmp_path / "x.png"))


def test_out_format_follows_the_extension_or_is_refused(model_dir, tmp_path):
    args = (str(model_dir), 2, 2, 0, 1.0, None, None, "auto")
    images = sample.run(*args, str(tmp_path / "grid.jpg"))
    data = (tmp_path / "grid.jpg").read_bytes()
    assert data[:3] == b"\xff\xd8\xff"  # JPEG, not PNG bytes under a .jpg name
    png = sample.run(*args, str(tmp_path / "grid.png"))
    np.testing.assert_array_equal(images, png)
    assert read_image(str(tmp_path / "grid.jpg")).shape == read_image(
        str(tmp_path / "grid.png")).shape
    with pytest.raises(ValueError, match=r"--out='.*grid.gif': the extension picks the format"):
        sample.run(*args, str(tmp_path / "grid.gif"))
    assert not (tmp_path / "grid.gif").exists()


def test_an_empty_model_dir_says_there_is_no_checkpoint(tmp_path):
    with pytest.raises(ValueError, match=f"no checkpoint in {tmp_path}"):
        sample.run(str(tmp_path), 1, 1, 0, 1.0, None, None, "auto", str(tmp_path / "x.png"))


def test_auto_sampler_skips_the_compile_only_for_short_multiscale_runs():
    multiscale = models.build("multiscale", 4, channels=1, bits=2, preset="tiny", base_size=2)
    raster = models.build("raster", 4, channels=1, bits=2, preset="tiny")
    assert sample.pick_sampler(multiscale, 1) == "reference"
    assert sample.pick_sampler(multiscale, multiscale.export_module.reference_sampler_calls) == "xla"
    assert sample.pick_sampler(raster, 1) == "xla"
    assert sample.pick_sampler(multiscale, 1, "xla") == "xla"


def test_stage_log_throttles_and_always_logs_a_stage_end(monkeypatch):
    lines = []
    monkeypatch.setattr(sample.logging, "info", lambda fmt, *args: lines.append(fmt % args))
    log = sample.StageLog(every=3600.0)
    for done in range(1, 5):
        log("spn slices", done, 4)
    log("frames", 1, 2)
    assert len(lines) == 1 and lines[0].startswith("  spn slices: 4/4 (")
    log = sample.StageLog(every=0.0)
    for done in range(1, 3):
        log("frames", done, 2)
    assert [line.split(" (")[0] for line in lines[1:]] == ["  frames: 1/2", "  frames: 2/2"]


def test_stage_log_time_left_counts_the_steps_after_the_first_report(monkeypatch):
    lines, clock = [], iter([100.0, 110.0, 120.0])  # reports at steps 1, 2, 3 of 5
    monkeypatch.setattr(sample.logging, "info", lambda fmt, *args: lines.append(fmt % args))
    monkeypatch.setattr(sample.time, "time", lambda: next(clock))
    log = sample.StageLog(every=0.0)
    for done in (1, 2, 3):
        log("slices", done, 5)
    assert lines == ["  slices: 1/5 (0.0 s)", "  slices: 2/5 (10.0 s, about 30 s left)",
                     "  slices: 3/5 (20.0 s, about 20 s left)"]
