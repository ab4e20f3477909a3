"""A model kind defined here, and only here, makes every claim of the harness
(`tests/harness.py`: normalization, causality, conditionals, the sampler's G-test, compiled ==
reference, SavedModel == in process, codec and `.keras` round trips) and runs through
`spn_tf.sample` and `spn_tf.evaluate`. The tools ask the model (its ordering, export module and
coding plan), never its class, so nothing outside this file changes."""

import os

import keras
import numpy as np
import tensorflow as tf

import harness
from spn_tf import models, sample
from spn_tf.evaluate import evaluate_run
from spn_tf.run_data import held_out_dataset
from spn_tf.run_folder import TrainConfig, write_config


@keras.saving.register_keras_serializable(package="test_new_kind")
@models.register
class AttentiveRaster(models.GatedPixelCNN):
    """A raster model whose first block carries causal self-attention: another block."""

    kind = "attentive_raster"
    @staticmethod
    def preset(name, image_size):
        return {**models.GatedPixelCNN.preset(name, image_size), "attention_layers": (0,)}


def test_a_kind_defined_in_a_test_makes_every_claim_of_the_harness(tmp_path):
    harness.run_density_model_test("attentive_raster", image_size=4, channels=1, bits=2,
                                   cond={"label": 3}, tmp_dir=tmp_path)


def test_a_kind_defined_in_a_test_runs_through_the_sample_and_evaluate_clis(tmp_path):
    model = models.build("attentive_raster", 4, channels=1, bits=2, preset="tiny",
                         cond={"label": 10})  # the embedded photos: 10
    model.build()
    assert type(model) is AttentiveRaster and model.decoder.attention_layers == (0,)

    # sample: from a run folder's model.keras, with a --given image completed.
    run = tmp_path / "run"
    write_config(TrainConfig(model="attentive_raster", preset="tiny", image_size=4, channels=1,
                             bits=2, num_classes=10, batch_size=4, eval_batches=1,
                             model_dir=str(run)))
    model.save(str(run / "model.keras"))
    given = tmp_path / "given.png"
    tf.io.write_file(str(given), tf.io.encode_png(np.full([4, 4, 1], 192, np.uint8)))
    out = tmp_path / "grid.png"
    drawn = sample.run(str(run), 2, 2, 0, 1.0, ["1"], str(given), "auto", str(out))
    assert drawn.shape == (2, 4, 4, 1) and (drawn[:, :2] == 3).all()  # the kept top half
    assert out.read_bytes()[:4] == b"\x89PNG"

    # evaluate: exact held-out bits/dim of the run.
    bits, _, config = evaluate_run(str(run))
    # The same held-out images scored here, in bits (a value in nats would be 1/ln 2 off).
    held_out = [(batch["images"], {"label": batch["label"]})
                for batch in held_out_dataset(config)]
    expected = np.concatenate([-model.log_prob(x, c).numpy() for x, c in held_out])
    np.testing.assert_allclose(bits, expected.mean() / (16 * np.log(2)), rtol=1e-5)
    assert os.path.exists(run / "evaluation.json")

