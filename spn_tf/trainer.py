"""`train_and_evaluate`: the training job behind `python -m spn_tf.train`.

Flags are read in `spn_tf/train.py` only; here a frozen `TrainConfig` flows inward. The job:
build the model under the requested strategy, `fit` with a progress bar, checkpoint
(`model.keras` every epoch of `steps_per_epoch` steps, plus `BackupAndRestore` so that an
interrupted run resumes), evaluate exact held-out bits/dim, draw a PNG grid of samples, and
write the resolved config and the metrics as JSON into `model_dir`.
"""

import dataclasses
import json
import math
import os
import time

import keras
import numpy as np

from spn_tf import data, models
from spn_tf.grid import write_png_grid
from spn_tf.strategies import make_strategy


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs.

    Attributes:
      model: `raster`, `spn`, `upscaling` or `multiscale`.
      preset: `tiny`, `small` or `paper`.
      dataset: `embedded` or a TFDS name; data_dir: prepared TFDS data.
      image_size, channels, bits: the image space.
      conditional: class-conditional on the dataset's labels.
      hparams: model hyperparameter overrides (e.g. `{"subscale_factor": 4}`).
      batch_size: global batch; steps: optimizer steps; steps_per_epoch: steps between
        checkpoints.
      optimizer: `adam` or `rmsprop` (Reed et al. 2017 use RMSprop, epsilon 1e-8).
      learning_rate: initial rate; final_learning_rate: reached linearly at the last step
        (None: constant).
      eval_batches: held-out batches for bits/dim (0 = the whole test split).
      num_samples, temperature: the sample grid.
      model_dir: where checkpoints, samples and metrics go.
      strategy: `default`, `mirrored`, `multi_worker` or `tpu`; tpu_address for `tpu`.
      jit_compile: XLA-compile the train step; mixed_precision: `mixed_bfloat16` policy.
      flip: random horizontal flips; seed: everything random.
    """

    model: str = "raster"
    preset: str = "small"
    dataset: str = data.EMBEDDED
    data_dir: str = ""
    image_size: int = 16
    channels: int = 3
    bits: int = 5
    conditional: bool = False
    hparams: dict = dataclasses.field(default_factory=dict)
    batch_size: int = 32
    steps: int = 600
    steps_per_epoch: int = 100
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    final_learning_rate: float = None
    eval_batches: int = 0
    num_samples: int = 16
    temperature: float = 1.0
    model_dir: str = "runs/quickstart"
    strategy: str = "default"
    tpu_address: str = ""
    jit_compile: bool = False
    mixed_precision: bool = False
    flip: bool = True
    seed: int = 0


def _cond_spec(config):
    if not config.conditional:
        return None
    classes = data.num_classes(config.dataset)
    if not classes:
        raise ValueError(f"--conditional needs labels, and {config.dataset!r} has none.")
    return {"label": classes}


def build_model(config):
    """The model a config describes (call inside the strategy's scope)."""
    model = models.build(config.model, config.image_size, channels=config.channels,
                         bits=config.bits, preset=config.preset, cond=_cond_spec(config),
                         **config.hparams)
    model.build()
    return model


def make_optimizer(config):
    """Adam or RMSprop, with an optional linear decay of the learning rate over the run."""
    rate = config.learning_rate
    if config.final_learning_rate is not None:
        rate = keras.optimizers.schedules.PolynomialDecay(
            config.learning_rate, config.steps, config.final_learning_rate)
    if config.optimizer == "adam":
        return keras.optimizers.Adam(rate)
    if config.optimizer == "rmsprop":
        return keras.optimizers.RMSprop(rate, epsilon=1e-8)
    raise ValueError(f"optimizer must be 'adam' or 'rmsprop', got {config.optimizer!r}.")


def load_checkpoint(path):
    """Loads a `.keras` checkpoint, turning a corrupt or foreign file into a clear error."""
    try:
        return keras.saving.load_model(path)
    except Exception as error:  # Keras raises many types for a bad archive.
        raise ValueError(
            f"checkpoint {path} could not be read ({error.__class__.__name__}: {error}). It is "
            f"left untouched: move it away or pass another --model_dir to start afresh.") from None


def _datasets(config, global_batch):
    common = dict(image_size=config.image_size, bits=config.bits, channels=config.channels,
                  with_labels=config.conditional, data_dir=config.data_dir or None,
                  seed=config.seed)
    train = data.load(config.dataset, "train", batch_size=global_batch, shuffle=True,
                      repeat=True, flip=config.flip, **common)
    test = data.load(config.dataset, "test", batch_size=global_batch, shuffle=False, **common)
    if config.eval_batches:
        test = test.take(config.eval_batches)
    return train, test


def train_and_evaluate(config):
    """Runs the job; returns the metrics dict (also written to `model_dir/metrics.json`)."""
    keras.utils.set_random_seed(config.seed)
    if config.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    strategy = make_strategy(config.strategy, config.tpu_address)
    workers = getattr(strategy.extended, "_num_workers", 1)
    if workers > 1:
        # Measured here: Keras 3.15 `fit` under MultiWorkerMirroredStrategy first averages the
        # dict data batch across workers to infer shapes, then reduces scalar logs over axis 0;
        # both fail (keras-team/keras#20585). BUILD_NOTES.md has the details.
        raise ValueError(
            f"--strategy=multi_worker with {workers} workers is not supported by Keras "
            f"{keras.__version__} fit (keras-team/keras#20585); use one worker with "
            f"--strategy=mirrored on a multi-GPU host.")
    os.makedirs(config.model_dir, exist_ok=True)
    with open(os.path.join(config.model_dir, "config.json"), "w") as f:
        json.dump(dataclasses.asdict(config), f, indent=2)
    checkpoint = os.path.join(config.model_dir, "model.keras")
    with strategy.scope():
        model = build_model(config)
        if os.path.exists(checkpoint):
            model.set_weights(load_checkpoint(checkpoint).get_weights())
            print(f"warm start from {checkpoint}")
        model.compile(optimizer=make_optimizer(config), jit_compile=config.jit_compile)
    train_ds, test_ds = _datasets(config, config.batch_size)
    print(f"{config.model} ({config.preset}): {model.count_params():,} parameters, "
          f"{config.image_size}x{config.image_size}x{config.channels} at {config.bits} bits, "
          f"{strategy.num_replicas_in_sync} replica(s) under {config.strategy}")
    steps_per_epoch = min(config.steps_per_epoch, config.steps)
    start = time.time()
    history = model.fit(
        train_ds, steps_per_epoch=steps_per_epoch,
        epochs=math.ceil(config.steps / steps_per_epoch), verbose=1,
        callbacks=[keras.callbacks.BackupAndRestore(os.path.join(config.model_dir, "backup")),
                   keras.callbacks.ModelCheckpoint(checkpoint)])
    train_seconds = time.time() - start
    held_out = model.evaluate(test_ds, verbose=0, return_dict=True)["loss"]
    start = time.time()
    cond = None
    if config.conditional:
        cond = {"label": np.arange(config.num_samples, dtype=np.int32) % model.cond_spec["label"]}
    samples = model.sample(config.num_samples, config.seed, config.temperature, cond=cond)
    sample_seconds = time.time() - start
    png = write_png_grid(samples.numpy(), config.bits,
                         os.path.join(config.model_dir, "samples.png"))
    metrics = {"train_bits_per_dim": float(history.history["loss"][-1]),
               "held_out_bits_per_dim": float(held_out), "train_seconds": train_seconds,
               "sample_seconds": sample_seconds, "samples_png": png, "checkpoint": checkpoint,
               "parameters": int(model.count_params())}
    with open(os.path.join(config.model_dir, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=2)
    print(f"held-out bits/dim: {held_out:.4f}  (train {metrics['train_bits_per_dim']:.4f}); "
          f"samples: {png} ({sample_seconds:.1f} s); checkpoint: {checkpoint}")
    return metrics
