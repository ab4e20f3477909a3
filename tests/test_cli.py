"""What the CLIs share (`spn_tf.cli`): a `--helpfull` of our flags only, shipped configs, one
name per option (the train flags are `TrainConfig`'s fields)."""

import dataclasses
import os
import re
import subprocess
import sys

import pytest
from absl import app

from spn_tf import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}


def test_helpfull_lists_our_flags_and_absl_flagfile_only():
    result = subprocess.run([sys.executable, "-m", "spn_tf.train", "--helpfull"], cwd=ROOT,
                            env=ENV, capture_output=True, text=True, timeout=300)
    modules = re.findall(r"^(\S+):$", result.stdout, re.M)[1:]  # after the "flags:" title
    assert [os.path.basename(m) for m in modules] == ["train.py", "absl.flags"], modules
    assert "--batch_size" in result.stdout and "--flagfile" in result.stdout
    assert "--config: A shipped configuration by name" in result.stdout
    # TensorFlow's imports registered them: still defined, only hidden from the help.
    for hidden in ("--test_tmpdir", "--logtostderr", "--delta_threshold", "--hbm_oom_exit"):
        assert hidden not in result.stdout


def test_shipped_configs_resolve_by_name_wherever_the_package_is():
    names = cli.config_names()
    assert {"quickstart", "imagenet32", "multiscale_quickstart"} <= set(names)
    path = cli.config_path("imagenet32")
    assert os.path.dirname(path) == os.path.join(ROOT, "spn_tf", "configs")
    assert cli.expand_config_flags(["train", "--config=imagenet32", "--steps=2"]) == [
        "train", f"--flagfile={path}", "--steps=2"]
    with pytest.raises(app.UsageError, match=r"--config='imagenet33' is not a shipped"):
        cli.config_path("imagenet33")


def test_a_missing_flagfile_names_the_config_that_stands_for_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # outside a checkout: no configs/ here
    with pytest.raises(app.UsageError, match=r"no such file .* --config=imagenet32\."):
        cli.expand_config_flags(["train", "--flagfile=configs/imagenet32.cfg"])
    with pytest.raises(app.UsageError, match=r"path of a \.cfg file, or --config=NAME"):
        cli.expand_config_flags(["train", "--flagfile=mine.cfg"])


def test_an_install_carries_the_configs(tmp_path):
    # `build_py` copies what an install (wheel or sdist) gets: the package data included.
    result = subprocess.run([sys.executable, "setup.py", "-q", "build_py", "-d", str(tmp_path)],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    shipped = sorted(os.listdir(tmp_path / "spn_tf" / "configs"))
    assert shipped == sorted(f"{name}.cfg" for name in cli.config_names())


def test_train_takes_a_config_by_name(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "spn_tf.train", "--config=quickstart", "--preset=tiny",
         "--image_size=4", "--steps=1", "--batch_size=4", "--num_samples=1",
         "--eval_batches=1", f"--model_dir={tmp_path}"],
        cwd=str(tmp_path), env=ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "held-out bits/dim" in result.stdout
    bad = subprocess.run([sys.executable, "-m", "spn_tf.train", "--config=nope"],
                         cwd=str(tmp_path), env=ENV, capture_output=True, text=True,
                         timeout=300)
    assert bad.returncode != 0 and "is not a shipped configuration" in bad.stderr


def test_train_flags_are_the_trainconfig_fields_and_old_names_are_unknown():
    from absl import flags

    from spn_tf import train
    from spn_tf.run_folder import TrainConfig
    values = flags.FLAGS
    if "model" not in values:
        train.define_flags()
    for field in dataclasses.fields(TrainConfig):
        if field.name != "hparams":  # assembled from --hparams and its shortcuts
            assert values[field.name].help.endswith(field.metadata["help"]), field.name
    try:
        values(["train", "--num_classes=10", "--channels=1", "--xla", "--msb_bits=0"])
        config = train.config_from_flags()
        assert (config.num_classes, config.channels, config.xla) == (10, 1, True)
        assert config.hparams == {"msb_bits": None}  # 0: no depth upscaling
        for old in ("--jit_compile", "--conditional", "--depth_bits=0"):
            with pytest.raises(flags.UnrecognizedFlagError):
                values(["train", old])
        with pytest.raises(flags.IllegalFlagValueError, match=r"<1\|3>"):
            values(["train", "--channels=2"])
        with pytest.raises(flags.IllegalFlagValueError, match="range"):
            values(["train", "--bits=9"])
    finally:
        values.unparse_flags()


def test_num_classes_must_be_the_datasets_class_count():
    from spn_tf.run_folder import TrainConfig, cond_spec
    assert cond_spec(TrainConfig(num_classes=10)) == {"label": 10}
    assert cond_spec(TrainConfig()) is None
    with pytest.raises(ValueError, match="--dataset=embedded has 10 classes: pass "
                                         "--num_classes=10"):
        cond_spec(TrainConfig(num_classes=5))
    with pytest.raises(ValueError, match="celeb_a_hq/256 has none"):
        cond_spec(TrainConfig(dataset="celeb_a_hq/256", num_classes=10))


def test_sample_and_client_refuse_the_old_flag_names():
    for tool, old in (("spn_tf.sample", "--num=2"), ("spn_tf.serving.client", "--model=x")):
        result = subprocess.run([sys.executable, "-m", tool, old],
                                cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
        assert result.returncode != 0
        assert f"Unknown command line flag '{old[2:].split('=')[0]}'" in result.stderr
