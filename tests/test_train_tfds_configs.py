"""The flagship TFDS configs run end to end through the real TFDS path on mocked data.

`tfds.testing.mock_data` patches TFDS in this process only, so the train CLI's `main` runs
in-process on the flags parsed from the config file; only size and length are overridden.
"""

import json
import os

import pytest
import tensorflow_datasets as tfds
from absl import flags

from spn_tf import data, train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAGS = flags.FLAGS
SMALL_RUN = ("--preset=tiny", "--steps=2", "--batch_size=2", "--checkpoint_every=2",
             "--eval_batches=1", "--num_samples=2")


def _flagfile_values(path):
    """`{name: value}` of a flagfile's lines: `--name=value`, and `--name` / `--noname` as bools."""
    values = {}
    with open(path) as file:
        for line in file:
            if line.startswith("--"):
                name, sep, value = line[2:].strip().partition("=")
                if not sep:
                    value = not name.startswith("no")
                    name = name if value else name[2:]
                values[name] = value
    return values


@pytest.fixture
def parsed_flags():
    """The train CLI's flags, parsed by the test and reset after it."""
    if "model" not in FLAGS:
        train.define_flags()
    yield FLAGS
    FLAGS.unparse_flags()


@pytest.mark.parametrize("config,image_size", [
    ("imagenet32", 8), ("imagenet64", 8), ("multiscale_imagenet32", 16),
    ("celebahq256_5bit", 16), ("multiscale_celebahq512", 16)])
def test_config_trains_evaluates_and_samples_on_mocked_tfds(config, image_size, parsed_flags,
                                                           tmp_path):
    path = os.path.join(ROOT, "configs", f"{config}.cfg")
    model_dir = tmp_path / "run"
    argv = ["train", f"--flagfile={path}", *SMALL_RUN, f"--image_size={image_size}",
            f"--model_dir={model_dir}", f"--data_dir={tmp_path / 'no_data'}"]
    parsed_flags(argv)
    # The same flags without the mock: nothing is prepared, the clear error.
    with pytest.raises(data.DatasetNotPreparedError, match="tfds build"):
        train.train_and_evaluate(train.config_from_flags())
    with tfds.testing.mock_data(num_examples=4):
        train.main(["train"])
    values = _flagfile_values(path)
    ran = json.loads((model_dir / "config.json").read_text())
    assert (ran["model"], ran["dataset"], ran["bits"]) == (
        values["model"], values["dataset"], int(values["bits"]))
    assert ran["strategy"] == values.get("strategy", "default")
    assert ran["num_classes"] == int(values["num_classes"])
    assert (ran["image_size"], ran["steps"], ran["preset"]) == (image_size, 2, "tiny")
    # Mocked pixels are uniform noise: the held-out likelihood is about `bits` bits/dim.
    metrics = json.loads((model_dir / "metrics.json").read_text())
    assert metrics["held_out_bits_per_dim"] == pytest.approx(ran["bits"], abs=0.1)
    assert (model_dir / "samples.png").read_bytes()[:4] == b"\x89PNG"
    assert (model_dir / "model.keras").exists()
