"""With `--ema_decay`, what a run hands on holds the averaged weights, by value: `model.keras`,
the held-out figure and an export equal the EMA formula applied to the per-step weights."""

import json

import numpy as np
import pytest
import tensorflow as tf

from spn_tf import export, run_data, run_folder, trainer
from spn_tf.run_folder import TrainConfig
from spn_tf.training.evaluation import mean_bits_per_dim
from spn_tf.training.variable_paths import checkpoint_variables, structural_paths

DECAY = 0.6
STEPS = 3


def _step_weights(config, model, step):
    """`{path: value}` of the training weights the checkpoint of `step` holds."""
    variables = checkpoint_variables(model)
    tf.train.Checkpoint(variables=variables).restore(
        f"{config.model_dir}/checkpoints/ckpt-{step}").expect_partial()
    return {path[len("model/"):]: variable.numpy() for path, variable in variables.items()
            if variable.trainable}


def test_model_keras_evaluation_and_export_hold_the_ema_of_the_step_weights(tmp_path):
    config = TrainConfig(model="raster", preset="tiny", image_size=4, bits=3, batch_size=8,
                         steps=STEPS, checkpoint_every=1, keep_checkpoints=STEPS,
                         learning_rate=0.05, ema_decay=DECAY, eval_batches=1, num_samples=1,
                         model_dir=str(tmp_path / "run"))
    metrics = trainer.train_and_evaluate(config)

    model = trainer.build_model(config)
    steps = [_step_weights(config, model, step) for step in range(1, STEPS + 1)]
    # Keras's EMA: the average starts at the first step's weights, then
    # average = decay * average + (1 - decay) * weights after each step.
    formula = dict(steps[0])
    for weights in steps[1:]:
        formula = {path: np.float32(DECAY) * formula[path] + np.float32(1 - DECAY) * value
                   for path, value in weights.items()}
    assert any(not np.allclose(formula[path], steps[-1][path]) for path in formula)

    saved = run_folder.load_checkpoint(f"{config.model_dir}/model.keras")
    for path, variable in structural_paths(saved).items():
        if variable.trainable:
            np.testing.assert_allclose(variable.numpy(), formula[path], rtol=1e-6, atol=1e-7,
                                       err_msg=path)

    for path, variable in structural_paths(model).items():
        if variable.trainable:
            variable.assign(formula[path])
    held_out = mean_bits_per_dim(model, run_data.held_out_dataset(config))
    assert metrics["held_out_bits_per_dim"] == pytest.approx(held_out, abs=1e-6)
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())[
        "held_out_bits_per_dim"] == metrics["held_out_bits_per_dim"]

    images = next(iter(run_data.held_out_dataset(config)))["images"]
    served = tf.saved_model.load(export.export_model(saved, str(tmp_path / "export"),
                                                     warmup_batch_sizes=()))
    np.testing.assert_allclose(served.signatures["log_prob"](images=images)["log_prob"],
                               model.log_prob(images), rtol=1e-5)
