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

from spn_tf import data, models, strategies, video_data
from spn_tf.training.schedules import DECAYS


def _option(default, help, **flag):
    """A `TrainConfig` field: its default, and its help, which is also its `--flag`'s
    (`spn_tf.cli.config_flags`; `flag` holds the flag's `lower_bound`, `upper_bound`,
    `choices`, or `flag=False` for a field the CLI assembles from other flags)."""
    if isinstance(default, dict):
        return dataclasses.field(default_factory=dict, metadata={"help": help, **flag})
    return dataclasses.field(default=default, metadata={"help": help, **flag})


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs; `python -m spn_tf.train` has one `--flag` per field
    (but `hparams`), with the field's help (`dataclasses.fields(TrainConfig)[i].metadata`)."""

    model: str = _option("raster", "Model kind.", choices=sorted(models.MODELS))
    preset: str = _option("small", "Model size preset.", choices=list(models.PRESET_NAMES))
    dataset: str = _option(data.EMBEDDED, "'embedded', 'folder:/path/to/images' (resized), "
                           "'folder_crops:/path' (crops at full resolution) or a prepared "
                           "TFDS dataset name.")
    data_dir: str = _option("", "Directory of prepared TFDS data (empty: TFDS's default, "
                            "~/tensorflow_datasets).")
    image_size: int = _option(16, "Image height = width.", lower_bound=1)
    channels: int = _option(3, "Image channels.", choices=[1, 3])
    bits: int = _option(5, "Bits per sub-pixel.", lower_bound=1, upper_bound=8)
    num_classes: int = _option(0, "Class-conditional with this many classes (0: "
                               "unconditional). Training takes the dataset's labels, so it "
                               "must be the dataset's class count: 10 for embedded, cifar10 "
                               "and mnist, 1000 for imagenet_resized.", lower_bound=0)
    text_conditional: bool = _option(False, "Conditional on captions (cond['text']): the "
                                     "embedded photos' captions, encoded by a text encoder "
                                     "(spn_tf.layers.TextEncoder) trained with the model.")
    hparams: dict = _option({}, "Model hyperparameter overrides (e.g. {'subscale_factor': 4}); "
                            "the CLI's --hparams, --subscale_factor, --msb_bits, --head, "
                            "--num_mixtures and --upscaling_part.", flag=False)
    batch_size: int = _option(32, "Global batch size (a multiple of the replica count).",
                              lower_bound=1)
    steps: int = _option(600, "Optimizer steps.", lower_bound=1)
    checkpoint_every: int = _option(100, "Steps between checkpoints (a killed run resumes "
                                    "from the latest).", lower_bound=1)
    keep_checkpoints: int = _option(3, "Checkpoints kept.", lower_bound=1)
    log_every: int = _option(50, "Steps between progress lines.", lower_bound=1)
    optimizer: str = _option("adam", "Optimizer (Reed et al. 2017 use RMSprop; ours with "
                             "epsilon 1e-8).", choices=["adam", "rmsprop"])
    learning_rate: float = _option(1e-3, "Peak learning rate.", lower_bound=0.0)
    warmup_steps: int = _option(0, "Linear learning-rate warm-up steps.", lower_bound=0)
    lr_decay: str = _option("constant", "Learning-rate decay after warm-up, to "
                            "--final_learning_rate at the last step.", choices=list(DECAYS))
    final_learning_rate: float = _option(0.0, "Learning rate at the last step (linear and "
                                         "cosine decay).", lower_bound=0.0)
    ema_decay: float = _option(0.0, "EMA (Polyak averaging) of the weights used for "
                               "evaluation, samples and model.keras; 0: off (e.g. 0.9999 for "
                               "long runs).", lower_bound=0.0, upper_bound=0.999999999)
    clip_grad_norm: float = _option(None, "Clip the all-reduced gradients to this global norm "
                                    "(unset: no clipping).", lower_bound=0.0)
    eval_batches: int = _option(0, "Held-out batches (0: the whole test split).",
                                lower_bound=0)
    eval_every: int = _option(0, "Steps between held-out evaluations (exact; 0: at the end "
                              "only).", lower_bound=0)
    eval_slices_per_call: int = _option(0, "SPN slices per network call in exact evaluation "
                                        "(0: the run's --batch_size, a training batch's "
                                        "memory).", lower_bound=0)
    sample_every: int = _option(0, "Steps between sample grids in TensorBoard (0: the final "
                                "grid only).", lower_bound=0)
    num_samples: int = _option(16, "Images in the sample grid.", lower_bound=1)
    temperature: float = _option(1.0, "Sampling temperature of the sample grid.",
                                 lower_bound=0.0)
    model_dir: str = _option("runs/quickstart", "Checkpoints, samples and metrics.")
    strategy: str = _option("default", "tf.distribute strategy.",
                            choices=list(strategies.STRATEGIES))
    tpu_address: str = _option("", "TPU address for --strategy=tpu.")
    xla: bool = _option(False, "XLA-compile the train step.")
    mixed_precision: bool = _option(False, "Train with the mixed_bfloat16 policy.")
    flip: bool = _option(False, "Random horizontal flips (off: the flip of a face or a scene "
                         "is another image; turn on with a reason).")
    seed: int = _option(0, "Random seed (weights, data order, samples).")

    def __post_init__(self):
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}.")


def is_video(config):
    """Whether the config's model kind draws clips (its data are clips and actions)."""
    return models.model_class(config.model).export_class.produces_clips


def cond_spec(config):
    if is_video(config):
        if config.dataset not in video_data.ACTION_DIMS:
            raise ValueError(f"--model=multiscale_video trains on clips: --dataset must be one "
                             f"of {sorted(video_data.ACTION_DIMS)}, got {config.dataset!r}.")
        if config.num_classes:
            raise ValueError(f"--num_classes does not apply to --model={config.model} (it is "
                             f"conditioned on actions); pass --num_classes=0.")
        return {"action": video_data.ACTION_DIMS[config.dataset]}
    cond = {}
    if config.num_classes:
        classes = data.num_classes(config.dataset)
        if not classes:
            raise ValueError(f"--num_classes={config.num_classes} needs labels, and "
                             f"--dataset={config.dataset} has none: pass --num_classes=0.")
        if config.num_classes != classes:
            raise ValueError(f"--num_classes={config.num_classes}, but --dataset="
                             f"{config.dataset} has {classes} classes: pass "
                             f"--num_classes={classes} (or 0: unconditional).")
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
