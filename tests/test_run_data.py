"""What a run reads: a spread training sample, seeded TFDS reads, exact resume on TFDS data,
missing data found before anything is built or written, and the whole-configuration guard."""

import dataclasses
import json
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from spn_tf import data, run_data, run_folder, trainer
from spn_tf.run_folder import TrainConfig

TINY = dict(preset="tiny", image_size=4, bits=3, batch_size=4, eval_batches=1,
            num_samples=1, log_every=100)


def _labels(dataset):
    return np.concatenate([batch["label"].numpy() for batch in dataset])


def test_train_subset_is_a_seeded_sample_spread_over_the_split_the_size_of_held_out():
    config = TrainConfig(num_classes=10, **{**TINY, "eval_batches": 0, "batch_size": 32})
    subset = run_data.train_subset(config)
    held_out = sum(int(tf.shape(b["images"])[0]) for b in run_data.held_out_dataset(config))
    labels = _labels(subset)
    assert len(labels) == held_out == 320
    # Stored order starts with 256 crops of photo 0; a spread sample holds every photo.
    assert set(labels) == set(range(10))
    np.testing.assert_array_equal(labels, _labels(run_data.train_subset(config)))
    other = TrainConfig(num_classes=10, seed=1, **{**TINY, "eval_batches": 0,
                                                   "batch_size": 32})
    assert not np.array_equal(labels, _labels(run_data.train_subset(other)))


def test_tfds_training_reads_are_fixed_by_the_seed():
    def images(seed):
        config = TrainConfig(dataset="cifar10", num_classes=10, seed=seed,
                             **{**TINY, "eval_batches": 3})
        return np.concatenate([b["images"].numpy() for b in run_data.train_subset(config)])

    with tfds.testing.mock_data(num_examples=64):
        first, again, other = images(0), images(0), images(5)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def _checkpoint(model_dir, step):
    reader = tf.train.load_checkpoint(os.path.join(model_dir, "checkpoints", f"ckpt-{step}"))
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
            if "save_counter" not in name and name != "_CHECKPOINTABLE_OBJECT_GRAPH"}


def test_resume_on_tfds_data_ends_like_an_uninterrupted_run(tmp_path):
    run = dict(TINY, model="spn", hparams={"subscale_factor": 2}, dataset="cifar10",
               num_classes=10, flip=True, ema_decay=0.9, checkpoint_every=2)
    with tfds.testing.mock_data(num_examples=24):
        trainer.train_and_evaluate(TrainConfig(**run, steps=6, model_dir=str(tmp_path / "a")))
        trainer.train_and_evaluate(TrainConfig(**run, steps=2, model_dir=str(tmp_path / "b")))
        trainer.train_and_evaluate(TrainConfig(**run, steps=6, model_dir=str(tmp_path / "b")))
    whole, resumed = _checkpoint(tmp_path / "a", 6), _checkpoint(tmp_path / "b", 6)
    assert sorted(whole) == sorted(resumed)
    for name in whole:
        np.testing.assert_array_equal(whole[name], resumed[name], err_msg=name)


def test_missing_data_stops_before_a_model_is_built_and_writes_nothing(tmp_path, monkeypatch):
    def no_build(config):
        raise AssertionError("a model was built before the data was found missing")

    monkeypatch.setattr(trainer, "build_model", no_build)
    model_dir = tmp_path / "run"
    config = TrainConfig(dataset="imagenet_resized/32x32", data_dir=str(tmp_path / "none"),
                         model_dir=str(model_dir), **TINY)
    with pytest.raises(data.DatasetNotPreparedError, match="tfds build"):
        trainer.train_and_evaluate(config)
    assert not model_dir.exists()
    # A folder of an earlier run stays as it was.
    model_dir.mkdir()
    (model_dir / "notes.txt").write_text("mine")
    with pytest.raises(data.DatasetNotPreparedError):
        trainer.train_and_evaluate(config)
    assert [p.name for p in model_dir.iterdir()] == ["notes.txt"]


def test_guard_compares_the_whole_model_configuration(tmp_path):
    saved = TrainConfig(model_dir=str(tmp_path), **TINY)
    (tmp_path / "config.json").write_text(json.dumps(dataclasses.asdict(saved)))
    run_folder.check_model_dir(TrainConfig(model_dir=str(tmp_path), steps=9, **TINY))  # same model
    with pytest.raises(ValueError, match=r"cond=None there, \{'text': 64\} here"):
        run_folder.check_model_dir(TrainConfig(model_dir=str(tmp_path), text_conditional=True,
                                            **TINY))
    # Equal to the preset's own value: the same model.
    run_folder.check_model_dir(TrainConfig(model_dir=str(tmp_path), hparams={"filters": 6},
                                        **TINY))
    with pytest.raises(ValueError, match="filters=6 there, 8 here"):
        run_folder.check_model_dir(TrainConfig(model_dir=str(tmp_path), hparams={"filters": 8},
                                            **TINY))


def test_checkpoint_errors_say_what_happened_and_what_to_do(tmp_path):
    from spn_tf import models

    model = models.build("raster", 4, bits=3, preset="tiny")
    model.build()
    whole = tmp_path / "run" / "model.keras"
    whole.parent.mkdir()
    model.save(str(whole))
    with pytest.raises(ValueError, match=r"is a file, not a run directory: pass the directory "
                                         r"that holds it, --model_dir=.*run$"):
        run_folder.load_checkpoint(str(whole / "model.keras"))
    truncated = tmp_path / "truncated.keras"
    truncated.write_bytes(whole.read_bytes()[:whole.stat().st_size // 2])
    with pytest.raises(ValueError, match="not a complete .keras archive .*truncated") as error:
        run_folder.load_checkpoint(str(truncated))
    assert "File not found" not in str(error.value)
    assert run_folder.load_checkpoint(str(whole)).count_params() == model.count_params()
