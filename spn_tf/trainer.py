"""`train_and_evaluate`: the training job behind `python -m spn_tf.train`.

Flags are read in `spn_tf/train.py` only; here a frozen `TrainConfig` flows inward. The job:
build the model and optimizer under the requested strategy, run the one custom training loop
(`spn_tf.training.step`) with a progress line every `log_every` steps, checkpoint every
`checkpoint_every` steps (`spn_tf.training.checkpoints`; a killed run resumes exactly), then
evaluate exact held-out bits/dim, write `model.keras` and a PNG grid of samples (with the EMA
weights when `ema_decay` is set) and the resolved config and the metrics as JSON.
`model.fit` stays available for users' own code; the CLI does not use it.
"""

import json
import math
import os
import time

import keras
import numpy as np

from spn_tf import data, models, run_data
from spn_tf.grid import write_grid
from spn_tf.run_folder import (check_model_dir, cond_spec, is_video, load_checkpoint,
                               write_config)
from spn_tf.strategies import chief_and_task, make_strategy
from spn_tf.training.averaging import averaged_weights
from spn_tf.training.checkpoints import RunCheckpoints
from spn_tf.training.evaluation import mean_bits_per_dim
from spn_tf.training.schedules import WarmupThenDecay
from spn_tf.training.step import TrainStep
from spn_tf.training.summaries import RunSummaries
from spn_tf.training.variable_paths import checkpoint_variables


def build_model(config):
    """The model a config describes (call inside the strategy's scope)."""
    model = models.build(config.model, config.image_size, channels=config.channels,
                         bits=config.bits, preset=config.preset, cond=cond_spec(config),
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


class TrainingDivergedError(ValueError):
    """The training loss became NaN or infinite; the last good checkpoint is kept."""


def _evaluate(config, model, optimizer, dataset=None):
    """Exact bits/dim of `dataset` (default: held out) with the EMA weights, in bounded
    memory."""
    with averaged_weights(model, optimizer):
        return mean_bits_per_dim(model, dataset or run_data.held_out_dataset(config),
                                 config.eval_slices_per_call or config.batch_size)


def _draw_samples(config, model):
    """The sample grid's images (int numpy) and its columns: labels cycling over the classes
    if conditional, captions over the photos' first captions if text-conditional; for video,
    held-out clips, each row of frames followed by the row the model predicts from its first
    frame and actions."""
    if is_video(config):
        return run_data.predict_held_out_clips(config, model, config.num_samples, config.seed,
                                      config.temperature)
    cond = {}
    if config.num_classes:
        cond["label"] = np.arange(config.num_samples, dtype=np.int32) % config.num_classes
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
    train_step = TrainStep(model, optimizer, strategy, config.xla, config.clip_grad_norm)
    iterator = iter(run_data.train_dataset(config, strategy, step))
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


def train_and_evaluate(config):
    """Runs the job; returns the metrics dict (the chief also writes `metrics.json`).

    Every strategy runs the same custom loop (`spn_tf.training.step.TrainStep`). A run resumes
    from the latest checkpoint in `model_dir/checkpoints` (step, weights, optimizer, EMA, data
    position) and ends at exactly `config.steps`; without one, a `model.keras` there is a warm
    start. Evaluation, samples and `model.keras` use the EMA weights when `ema_decay` is set.
    """
    keras.utils.set_random_seed(config.seed)
    check_model_dir(config)  # also refuses a kind, preset, hyperparameter or conditioning
    if config.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    # First of all TensorFlow work: multi-worker collectives must be configured before it.
    strategy = make_strategy(config.strategy, config.tpu_address)
    # Missing data fails here, in well under a second, before a model is built or anything is
    # written.
    run_data.load(config, "train", batch_size=1, shuffle=False)
    run_data.held_out_dataset(config)
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
        write_config(config)
    print(f"{config.model} ({config.preset}): {model.count_params():,} parameters, "
          f"{config.image_size}x{config.image_size}x{config.channels} at {config.bits} bits, "
          f"{replicas} replica(s) under {config.strategy}", flush=True)
    start = time.time()
    summaries = RunSummaries(config.model_dir, enabled=is_chief)
    images_per_second = _run_steps(config, strategy, model, optimizer, checkpoints, summaries)
    train_seconds = time.time() - start
    held_out = _evaluate(config, model, optimizer)
    # Exact, with the final weights: not a running mean over the steps that changed them.
    subset = run_data.train_subset(config)
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
