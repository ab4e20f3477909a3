"""`train_and_evaluate`: the training job behind `python -m spn_tf.train`.

Flags are read in `spn_tf/train.py` only; here a frozen `TrainConfig` flows inward. The job:
build the model and optimizer under the requested strategy, run the one custom training loop
(`spn_tf.training.step`) with a progress line every `log_every` steps, checkpoint every
`checkpoint_every` steps (`spn_tf.training.checkpoints`; a killed run resumes exactly), then
evaluate exact held-out bits/dim, write `model.keras` and a PNG grid of samples (with the EMA
weights when `ema_decay` is set) and the resolved config and the metrics as JSON.
`model.fit` stays available for users' own code; the CLI does not use it.
"""

import dataclasses
import json
import math
import os
import time
import zipfile

import keras
import numpy as np

from spn_tf import data, models, video_data
from spn_tf.grid import write_grid
from spn_tf.strategies import chief_and_task, make_strategy
from spn_tf.training.averaging import averaged_weights
from spn_tf.training.checkpoints import RunCheckpoints
from spn_tf.training.evaluation import mean_bits_per_dim
from spn_tf.training.schedules import WarmupThenDecay
from spn_tf.training.step import TrainStep
from spn_tf.training.summaries import RunSummaries
from spn_tf.training.variable_paths import checkpoint_variables


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


def _is_video(config):
    return config.model == "multiscale_video"


def _cond_spec(config):
    if _is_video(config):
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


def build_model(config):
    """The model a config describes (call inside the strategy's scope)."""
    model = models.build(config.model, config.image_size, channels=config.channels,
                         bits=config.bits, preset=config.preset, cond=_cond_spec(config),
                         **config.hparams)
    model.build()
    return model


def make_optimizer(config):
    """Adam or RMSprop on a warm-up-then-decay schedule, keeping an EMA when asked."""
    rate = WarmupThenDecay(config.learning_rate, config.steps, config.warmup_steps,
                           config.lr_decay, config.final_learning_rate)
    averaging = dict(use_ema=bool(config.ema_decay), ema_momentum=config.ema_decay or 0.99)
    if config.optimizer == "adam":
        return keras.optimizers.Adam(rate, **averaging)
    if config.optimizer == "rmsprop":
        return keras.optimizers.RMSprop(rate, epsilon=1e-8, **averaging)
    raise ValueError(f"optimizer must be 'adam' or 'rmsprop', got {config.optimizer!r}.")


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


class TrainingDivergedError(ValueError):
    """The training loss became NaN or infinite; the last good checkpoint is kept."""


def data_args(config):
    return dict(image_size=config.image_size, bits=config.bits, channels=config.channels,
                with_labels=config.conditional, with_text=config.text_conditional,
                data_dir=config.data_dir or None,
                seed=config.seed)


def _train_dataset(config, strategy, start_step):
    """One pipeline per worker (its shard), per-replica batches, after `start_step` steps.

    Consecutive per-replica batches go to consecutive replicas, so N replicas see the same
    examples per step as one device at the same global batch. The streams are deterministic
    from the seed: a resumed run passes over the examples of the steps already taken.
    """

    def dataset_fn(context):
        per_replica = context.get_per_replica_batch_size(config.batch_size)
        local_replicas = strategy.num_replicas_in_sync // context.num_input_pipelines
        return _load(config, "train", batch_size=per_replica, shuffle=True, repeat=True,
                     flip=config.flip,
                     shard=(context.num_input_pipelines, context.input_pipeline_id),
                     skip=start_step * per_replica * local_replicas)

    return strategy.distribute_datasets_from_function(dataset_fn)


def _load(config, split, **kwargs):
    """`data.load`, or `video_data.load` for the video model, with the config's data args."""
    if not _is_video(config):
        return data.load(config.dataset, split, **kwargs, **data_args(config))
    if kwargs.pop("flip", False):
        raise ValueError("--flip would mirror a clip but not its actions: leave it off for "
                         "--model=multiscale_video.")
    return video_data.load(config.dataset, split, image_size=config.image_size,
                           num_frames=config.hparams.get("num_frames", 4), bits=config.bits,
                           channels=config.channels, data_dir=config.data_dir or None,
                           seed=config.seed, **kwargs)


def held_out_batch(config, num):
    """The first `num` held-out examples as one batch: `{"images": ..., <conditioning>}`
    (video: `images` are clips, with their `action`)."""
    return next(iter(_load(config, "test", batch_size=num, shuffle=False)))


def held_out_dataset(config):
    """The test split the config names: `eval_batches` batches, or all of it."""
    test = _load(config, "test", batch_size=config.batch_size, shuffle=False)
    return test.take(config.eval_batches) if config.eval_batches else test


# Batches of the training subset when the held-out split's size is unknown.
TRAIN_SUBSET_BATCHES = 8


def train_subset(config):
    """A fixed sample of the training split, as many batches as the held-out evaluation.

    Drawn from `config.seed` (shuffled without flips; TFDS files in a seeded order; under
    the global seed the run sets from it, `keras.utils.set_random_seed`), so the
    same run measures the same examples, spread over the split rather than the first photos
    in stored order: in-memory data (embedded, folders) are shuffled whole; a TFDS split is
    sampled through its seeded file order and a 4,096-example shuffle buffer.
    """
    batches = int(held_out_dataset(config).cardinality())
    if batches < 0:  # unknown or infinite
        batches = TRAIN_SUBSET_BATCHES
    train = _load(config, "train", batch_size=config.batch_size, shuffle=True)
    return train.take(batches)


def _evaluate(config, model, optimizer, dataset=None):
    """Exact bits/dim of `dataset` (default: held out) with the EMA weights, in bounded
    memory."""
    with averaged_weights(model, optimizer):
        return mean_bits_per_dim(model, dataset or held_out_dataset(config),
                                 config.eval_slices_per_call or config.batch_size)


def predict_held_out_clips(config, model, num, seed, temperature, compiled=True,
                           progress=None):
    """The first `num` held-out clips, each row of frames followed by the row `model`
    predicts from its first frame and actions.

    Returns:
      `(frames int (2 * num * T, H, W, C), T)`: the frames in grid order, and the columns.
    """
    batch = held_out_batch(config, num)
    truth = batch["images"].numpy()
    predicted = model.sample_video(truth[:, 0], batch["action"], seed, temperature,
                                   compiled, progress).numpy()
    rows = np.stack([truth, predicted], axis=1)  # (n, 2, T, H, W, C)
    return rows.reshape((-1,) + rows.shape[3:]), truth.shape[1]


def _draw_samples(config, model):
    """The sample grid's images (int numpy) and its columns: labels cycling over the classes
    if conditional, captions over the photos' first captions if text-conditional; for video,
    held-out clips, each row of frames followed by the row the model predicts from its first
    frame and actions."""
    if _is_video(config):
        return predict_held_out_clips(config, model, config.num_samples, config.seed,
                                      config.temperature)
    cond = {}
    if config.conditional:
        cond["label"] = np.arange(config.num_samples, dtype=np.int32) % model.cond_spec["label"]
    if config.text_conditional:
        firsts = [captions[0] for _, captions in sorted(data.embedded_captions().items())]
        cond["text"] = [firsts[i % len(firsts)] for i in range(config.num_samples)]
    return model.sample(config.num_samples, config.seed, config.temperature,
                        cond=cond or None).numpy(), None


def _run_steps(config, strategy, model, optimizer, checkpoints, summaries):
    """Trains from the optimizer's step to `config.steps`, checkpointing, logging, evaluating.

    Returns:
      Images per second over the run, or None when no step was left.

    Raises:
      TrainingDivergedError: a NaN or infinite loss (nothing of that step is saved).
    """
    step = int(optimizer.iterations.numpy())
    if step >= config.steps:
        return None
    train_step = TrainStep(model, optimizer, strategy, config.jit_compile, config.clip_grad_norm)
    iterator = iter(_train_dataset(config, strategy, step))
    interval, tick, tick_step, start, start_step = [], time.time(), step, time.time(), step
    while step < config.steps:
        loss, norm = train_step(iterator)
        step += 1
        loss = float(loss)
        if not math.isfinite(loss):
            raise TrainingDivergedError(
                f"the training loss became {loss} at step {step}; stopped without saving it. "
                f"The last good checkpoint ({checkpoints.latest() or 'none yet'}) is kept: "
                f"lower --learning_rate or set --clip_grad_norm / --warmup_steps, then run "
                f"again to resume from it.")
        interval.append(loss)
        if step % config.checkpoint_every == 0 or step == config.steps:
            checkpoints.save(step)
        if step % config.log_every == 0 or step == config.steps:
            now = time.time()
            values = dict(bits_per_dim=float(np.mean(interval)),
                          learning_rate=float(optimizer.learning_rate),
                          gradient_norm=float(norm),
                          images_per_second=(step - tick_step) * config.batch_size / (now - tick))
            summaries.scalars("train", step, **values)
            print(f"step {step}/{config.steps}  bits/dim {values['bits_per_dim']:.4f}  "
                  f"lr {values['learning_rate']:.3g}  grad norm {float(norm):.3g}  "
                  f"{values['images_per_second']:.1f} images/s", flush=True)
            interval, tick, tick_step = [], now, step
        if config.eval_every and step % config.eval_every == 0 and step < config.steps:
            held_out = _evaluate(config, model, optimizer)
            summaries.scalars("eval", step, bits_per_dim=held_out)
            print(f"step {step}/{config.steps}  held-out bits/dim {held_out:.4f}", flush=True)
            tick = time.time()
        if config.sample_every and step % config.sample_every == 0 and step < config.steps:
            if summaries.enabled:
                with averaged_weights(model, optimizer):
                    summaries.samples(step, _draw_samples(config, model)[0], config.bits)
            tick = time.time()
    images_per_second = (step - start_step) * config.batch_size / (time.time() - start)
    return images_per_second


def model_configuration(config):
    """The whole configuration of the model `config` builds, as JSON has it: the family and
    every argument of its class (preset resolved, conditioning included)."""
    _, arguments = models.resolve(config.model, config.image_size, channels=config.channels,
                                  bits=config.bits, preset=config.preset,
                                  cond=_cond_spec(config), **config.hparams)
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
    """Refuses a `model_dir` whose `config.json` describes another model (its whole
    configuration differs from this run's), before anything in the directory changes. Other
    fields (steps, rates, data) may change between the runs of one directory.

    Raises:
      ValueError: naming each differing field, its value there and here.
    """
    path = os.path.join(config.model_dir, "config.json")
    if not os.path.exists(path):
        return
    try:
        there = model_configuration(run_config(config.model_dir))
    except ValueError as error:
        raise ValueError(f"{error} Move it away or pass another --model_dir.") from None
    here = model_configuration(config)
    differ = [f"{field}={there.get(field)!r} there, {here.get(field)!r} here"
              for field in sorted(set(there) | set(here)) if there.get(field) != here.get(field)]
    if differ:
        raise ValueError(
            f"--model_dir={config.model_dir} holds a run of another configuration ("
            f"{'; '.join(differ)}). Nothing in it was changed: pass another --model_dir, or "
            f"the flags of that run (its config.json) to continue it.")


def train_and_evaluate(config):
    """Runs the job; returns the metrics dict (the chief also writes `metrics.json`).

    Every strategy runs the same custom loop (`spn_tf.training.step.TrainStep`). A run resumes
    from the latest checkpoint in `model_dir/checkpoints` (step, weights, optimizer, EMA, data
    position) and ends at exactly `config.steps`; without one, a `model.keras` there is a warm
    start. Evaluation, samples and `model.keras` use the EMA weights when `ema_decay` is set.
    """
    keras.utils.set_random_seed(config.seed)
    check_model_dir(config)
    # Missing data fails here, in well under a second, before a model is built or anything is
    # written.
    _load(config, "train", batch_size=1, shuffle=False)
    held_out_dataset(config)
    if config.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    strategy = make_strategy(config.strategy, config.tpu_address)
    replicas = strategy.num_replicas_in_sync
    if config.batch_size % replicas:
        raise ValueError(f"--batch_size={config.batch_size} must be a multiple of the "
                         f"{replicas} replicas of --strategy={config.strategy}.")
    is_chief, task_id = chief_and_task(strategy)
    with strategy.scope():
        model = build_model(config)
        optimizer = make_optimizer(config)
        optimizer.build(model.trainable_variables)
    checkpoints = RunCheckpoints(os.path.join(config.model_dir, "checkpoints"),
                                 config.keep_checkpoints, is_chief, task_id,
                                 # By attribute path, never by creation order.
                                 variables=checkpoint_variables(model, optimizer))
    keras_path = os.path.join(config.model_dir, "model.keras")
    resumed = checkpoints.restore_latest()
    if resumed:
        print(f"resumed from {resumed} at step {int(optimizer.iterations.numpy())}")
    elif os.path.exists(keras_path):
        with strategy.scope():
            warm = load_checkpoint(keras_path)
            if warm.get_config() != model.get_config():
                raise ValueError(
                    f"{keras_path} is a model of another configuration than this run's: pass "
                    f"another --model_dir, or the flags of the run that wrote it.")
            model.set_weights(warm.get_weights())
        print(f"warm start from {keras_path}")
    if is_chief:  # Only now, once the directory's contents are known to fit this run.
        os.makedirs(config.model_dir, exist_ok=True)
        with open(os.path.join(config.model_dir, "config.json"), "w") as f:
            json.dump(dataclasses.asdict(config), f, indent=2)
    print(f"{config.model} ({config.preset}): {model.count_params():,} parameters, "
          f"{config.image_size}x{config.image_size}x{config.channels} at {config.bits} bits, "
          f"{replicas} replica(s) under {config.strategy}", flush=True)
    start = time.time()
    summaries = RunSummaries(config.model_dir, enabled=is_chief)
    images_per_second = _run_steps(config, strategy, model, optimizer, checkpoints, summaries)
    train_seconds = time.time() - start
    held_out = _evaluate(config, model, optimizer)
    # Exact, with the final weights: not a running mean over the steps that changed them.
    subset = train_subset(config)
    train_bits = _evaluate(config, model, optimizer, subset)
    summaries.scalars("eval", config.steps, bits_per_dim=held_out)
    with averaged_weights(model, optimizer):
        metrics = {"train_bits_per_dim": train_bits, "held_out_bits_per_dim": held_out,
                   "train_subset_batches": int(subset.cardinality()),
                   "steps": int(optimizer.iterations.numpy()), "train_seconds": train_seconds,
                   "images_per_second": images_per_second,
                   "parameters": int(model.count_params())}
        if not is_chief:
            return metrics
        model.save(keras_path)
        start = time.time()
        samples, columns = _draw_samples(config, model)
    metrics["sample_seconds"] = time.time() - start
    summaries.samples(config.steps, samples, config.bits)
    metrics["samples_png"] = write_grid(samples, config.bits,
                                        os.path.join(config.model_dir, "samples.png"),
                                        columns=columns)
    metrics["checkpoint"] = keras_path
    with open(os.path.join(config.model_dir, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=2)
    print(f"held-out bits/dim: {held_out:.4f}  (train {train_bits:.4f}); samples: "
          f"{metrics['samples_png']} "
          f"({metrics['sample_seconds']:.1f} s); checkpoint: {keras_path}")
    return metrics
