"""The discretized logistic mixture head: trained 8-bit models save and load with it; the train
CLI takes it and refuses what it cannot serve. (The head's own arithmetic:
test_distributions.py; every claim of the harness with it, raster and multiscale:
test_harness.py; every kind with it: test_property_exactness.py.)"""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from spn_tf import data, models

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MIXTURE = dict(head="logistic_mixture", num_mixtures=3)
KINDS = {
    "raster": dict(name="raster"),
    "spn": dict(name="spn", subscale_factor=2),
    "multiscale": dict(name="multiscale", base_size=4),
}


def _fit(model, steps, bits):
    """A few Adam steps on the embedded photos at `bits` bits."""
    ds = data.load("embedded", image_size=model.image_size, bits=bits, channels=3,
                   batch_size=8, repeat=True)
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    return model.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0).history["loss"]


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_trained_with_the_mixture_saves_and_loads(kind, tmp_path):
    """8-bit photos, where the head is meant to be used: the `.keras` file gives the trained
    model's `log_prob` (every kind). The mixture's G-test, compiled == reference, SavedModel
    and codec are the harness's claims (tests/test_harness.py: raster and multiscale)."""
    model = models.build(image_size=8, channels=3, bits=8, preset="tiny", **KINDS[kind],
                         **MIXTURE)
    assert model.distribution.num_params == 9
    _fit(model, 4, 8)
    images = next(iter(data.load("embedded", image_size=8, bits=8, channels=3, batch_size=3,
                                 split="test")))["images"]
    expected = model.log_prob(images).numpy()
    assert np.isfinite(expected).all()

    model.save(str(tmp_path / "model.keras"))
    loaded = keras.saving.load_model(str(tmp_path / "model.keras"))
    assert loaded.head == "logistic_mixture" and loaded.num_mixtures == 3
    np.testing.assert_allclose(loaded.log_prob(images), expected, rtol=1e-5)


def test_train_cli_takes_the_head_and_refuses_what_it_cannot_serve(tmp_path):
    def train(*args):
        return subprocess.run(
            [sys.executable, "-m", "spn_tf.train", "--preset=tiny", "--image_size=4",
             "--steps=2", "--eval_batches=1", "--num_samples=2", *args], cwd=ROOT,
            capture_output=True, text=True, timeout=600, env=quiet)

    # As a user runs it: without the tests' TF_CPP_MIN_LOG_LEVEL (the CLI silences TF itself).
    quiet = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}

    model_dir = tmp_path / "run"
    result = train("--head=logistic_mixture", "--num_mixtures=2", "--bits=8",
                   f"--model_dir={model_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    config = json.loads((model_dir / "config.json").read_text())
    assert config["hparams"] == {"head": "logistic_mixture", "num_mixtures": 2}
    assert np.isfinite(json.loads((model_dir / "metrics.json").read_text())[
        "held_out_bits_per_dim"])
    assert result.stderr == ""

    result = train("--head=logistic_mixture", "--bits=1", f"--model_dir={tmp_path / 'one'}")
    assert result.returncode != 0 and "needs at least 2 bits" in result.stderr
    assert "head='categorical'" in result.stderr
    result = train("--num_mixtures=3", f"--model_dir={tmp_path / 'stray'}")
    assert result.returncode != 0 and "--num_mixtures is for --head=logistic_mixture" in \
        result.stderr
    assert not (tmp_path / "one").exists() and not (tmp_path / "stray").exists()


def test_upscaling_names_the_part_whose_bits_the_mixture_cannot_serve():
    build = lambda **kw: models.build("upscaling", 2, channels=1, bits=3, preset="tiny",  # noqa
                                      msb_bits=1, head="logistic_mixture", **kw)
    with pytest.raises(ValueError, match=r"the 'first' network \(1-bit values\): head="
                                         r"'logistic_mixture' needs at least 2 bits.*"
                                         r"part_overrides=\{'first'"):
        build()
    one_bit_parts = {"first": {"head": "categorical"}, "size": {"head": "categorical"}}
    model = build(part_overrides=one_bit_parts)
    assert {p: n.head for p, n in model.networks.items()} == {
        "first": "categorical", "size": "categorical", "depth": "logistic_mixture"}
    # Another part setting keeps its own message, without advice about heads.
    with pytest.raises(ValueError, match="kernel_size=2") as error:
        build(part_overrides={**one_bit_parts, "depth": {"kernel_size": 2}})
    assert "head" not in str(error.value)
