"""A run folder: its `config.json` (the `TrainConfig` a run was made with) read, guarded and
written, and its `model.keras` loaded with errors that say what to do.

What a run folder holds: `config.json`, `checkpoints/` (`spn_tf.training.checkpoints`),
`model.keras`, `samples.png`, `metrics.json`, TensorBoard summaries (`train/`, `eval/`).
"""

import dataclasses
import json
import os
import zipfile

import keras

from spn_tf import data, models, video_data


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs.

    Attributes:
      model: `raster`, `spn`, `upscaling` or `multiscale`.
      preset: `tiny`, `small` or `paper`.
      dataset: `embedded` or a TFDS name; data_dir: prepared TFDS data.
      image_size, channels, bits: the image space.
      conditional: class-conditional on the dataset's labels.
      text_conditional: conditional on captions (`cond["text"]`, the embedded photos'
        captions; a `spn_tf.layers.TextEncoder` trained with the model).
      hparams: model hyperparameter overrides (e.g. `{"subscale_factor": 4}`).
      batch_size: global batch (a multiple of the replica count); steps: optimizer steps.
      checkpoint_every: steps between checkpoints; keep_checkpoints: how many are kept.
      log_every: steps between progress lines.
      optimizer: `adam` or `rmsprop` (Reed et al. 2017 use RMSprop, epsilon 1e-8).
      learning_rate: the peak rate; warmup_steps: linear warm-up to it; lr_decay:
        `constant`, `linear` or `cosine` after warm-up, to final_learning_rate at the last step.
      ema_decay: exponential moving average of the weights for evaluation, samples and
        `model.keras` (0: off; e.g. 0.9999 for long runs).
      clip_grad_norm: clip the all-reduced gradients to this global norm (None: off).
      eval_batches: held-out batches for bits/dim (0 = the whole test split).
      eval_every: steps between held-out evaluations during training (0: only at the end).
      eval_slices_per_call: SPN slices per network call in exact evaluation (0: the batch
        size, i.e. a training batch's memory).
      num_samples, temperature: the sample grid; sample_every: steps between sample grids
        in TensorBoard (0: only the final grid).
      model_dir: where checkpoints, samples and metrics go.
      strategy: `default`, `mirrored`, `multi_worker` or `tpu`; tpu_address for `tpu`.
      jit_compile: XLA-compile the train step; mixed_precision: `mixed_bfloat16` policy.
      flip: random horizontal flips (off by default); seed: everything random.
    """

    model: str = "raster"
    preset: str = "small"
    dataset: str = data.EMBEDDED
    data_dir: str = ""
    image_size: int = 16
    channels: int = 3
    bits: int = 5
    conditional: bool = False
    text_conditional: bool = False
    hparams: dict = dataclasses.field(default_factory=dict)
    batch_size: int = 32
    steps: int = 600
    checkpoint_every: int = 100
    keep_checkpoints: int = 3
    log_every: int = 50
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    warmup_steps: int = 0
    lr_decay: str = "constant"
    final_learning_rate: float = 0.0
    ema_decay: float = 0.0
    clip_grad_norm: float = None
    eval_batches: int = 0
    eval_every: int = 0
    eval_slices_per_call: int = 0
    sample_every: int = 0
    num_samples: int = 16
    temperature: float = 1.0
    model_dir: str = "runs/quickstart"
    strategy: str = "default"
    tpu_address: str = ""
    jit_compile: bool = False
    mixed_precision: bool = False
    flip: bool = False
    seed: int = 0

    def __post_init__(self):
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}.")


def is_video(config):
    """Whether the config's model kind draws clips (its data are clips and actions)."""
    return models.model_class(config.model).produces_clips


def cond_spec(config):
    if is_video(config):
        if config.dataset not in video_data.ACTION_DIMS:
            raise ValueError(f"--model=multiscale_video trains on clips: --dataset must be one "
                             f"of {sorted(video_data.ACTION_DIMS)}, got {config.dataset!r}.")
        return {"action": video_data.ACTION_DIMS[config.dataset]}
    cond = {}
    if config.conditional:
        classes = data.num_classes(config.dataset)
        if not classes:
            raise ValueError(f"--conditional needs labels, and {config.dataset!r} has none.")
        cond["label"] = classes
    if config.text_conditional:
        if config.dataset != data.EMBEDDED:
            raise ValueError(f"--text_conditional needs captions, which ship only with "
                             f"--dataset={data.EMBEDDED}; got {config.dataset!r}.")
        cond["text"] = data.CAPTION_LENGTH
    return cond or None


def model_configuration(config):
    """The whole configuration of the model `config` builds, as JSON has it: the family and
    every argument of its class (preset resolved, conditioning included)."""
    _, arguments = models.resolve(config.model, config.image_size, channels=config.channels,
                                  bits=config.bits, preset=config.preset,
                                  cond=cond_spec(config), **config.hparams)
    return json.loads(json.dumps({"model": config.model, **arguments}))


def run_config(model_dir, **overrides):
    """The `TrainConfig` saved in `model_dir/config.json`, with `overrides` applied."""
    path = os.path.join(model_dir, "config.json")
    try:
        with open(path) as f:
            saved = json.load(f)
        config = TrainConfig(**saved)
    except (OSError, ValueError, TypeError) as error:
        raise ValueError(f"{path} is not the config of a spn_tf.train run ({error}).") from None
    return dataclasses.replace(config, **overrides)


def check_model_dir(config):
    """Validates this run's model configuration (kind, preset, hyperparameters, conditioning)
    and refuses a `model_dir` whose `config.json` describes another model (its whole
    configuration differs from this run's), before anything in the directory changes. Other
    fields (steps, rates, data) may change between the runs of one directory.

    Raises:
      ValueError: a configuration no model has, or naming each differing field, its value
        there and here.
    """
    here = model_configuration(config)
    path = os.path.join(config.model_dir, "config.json")
    if not os.path.exists(path):
        return
    try:
        there = model_configuration(run_config(config.model_dir))
    except ValueError as error:
        raise ValueError(f"{error} Move it away or pass another --model_dir.") from None
    differ = [f"{field}={there.get(field)!r} there, {here.get(field)!r} here"
              for field in sorted(set(there) | set(here)) if there.get(field) != here.get(field)]
    if differ:
        raise ValueError(
            f"--model_dir={config.model_dir} holds a run of another configuration ("
            f"{'; '.join(differ)}). Nothing in it was changed: pass another --model_dir, or "
            f"the flags of that run (its config.json) to continue it.")


def write_config(config):
    """Writes `config` as `<model_dir>/config.json` (creating the folder)."""
    os.makedirs(config.model_dir, exist_ok=True)
    with open(os.path.join(config.model_dir, "config.json"), "w") as f:
        json.dump(dataclasses.asdict(config), f, indent=2)


def load_checkpoint(path):
    """Loads a `.keras` checkpoint, turning a missing, truncated, corrupt or foreign file into
    an error that says what happened and what to do."""
    model_dir = os.path.dirname(path) or "."
    if os.path.isfile(model_dir):
        raise ValueError(
            f"--model_dir={model_dir} is a file, not a run directory: pass the directory that "
            f"holds it, --model_dir={os.path.dirname(model_dir) or '.'}")
    if not os.path.exists(path):
        raise ValueError(
            f"no checkpoint in {model_dir} ({os.path.basename(path)} does not exist); train one "
            f"first: python -m spn_tf.train --model_dir={model_dir}")
    if not zipfile.is_zipfile(path):
        raise ValueError(
            f"{path} is not a complete .keras archive ({os.path.getsize(path):,} bytes: "
            f"truncated or damaged, e.g. by an interrupted copy). It is left untouched: copy it "
            f"again from where it was written, or move it away and train again.")
    try:
        return keras.saving.load_model(path)
    except Exception as error:  # Keras raises many types for a bad archive.
        raise ValueError(
            f"checkpoint {path} could not be read ({error.__class__.__name__}: {error}). It is "
            f"left untouched: it may be damaged or written by another spn_tf version; move it "
            f"away, or pass another --model_dir.") from None
