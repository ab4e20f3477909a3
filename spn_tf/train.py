"""`python -m spn_tf.train --flagfile=configs/quickstart.cfg`: train, evaluate, sample.

Flags are turned into a frozen `spn_tf.run_folder.TrainConfig`; absl rejects misspelt flags,
also inside a flagfile, and the command line overrides the file.
"""

import sys

from absl import app, flags, logging

from spn_tf import cli, distributions, models, strategies
from spn_tf.hparams import parse_overrides
from spn_tf.run_folder import TrainConfig
from spn_tf.trainer import train_and_evaluate
from spn_tf.training.schedules import DECAYS

FLAGS = flags.FLAGS


def define_flags():
    flags.DEFINE_enum("model", "raster", sorted(models.MODELS), "Model family.")
    flags.DEFINE_enum("preset", "small", list(models.PRESET_NAMES), "Model size preset.")
    flags.DEFINE_string("dataset", "embedded", "'embedded', 'folder:/path/to/images' or a "
                        "prepared TFDS dataset name.")
    flags.DEFINE_string("data_dir", "", "Directory of prepared TFDS data.")
    flags.DEFINE_integer("image_size", 16, "Image height = width.", lower_bound=1)
    flags.DEFINE_enum("channels", "3", ["1", "3"], "Image channels.")
    flags.DEFINE_integer("bits", 5, "Bits per sub-pixel.", lower_bound=1, upper_bound=8)
    flags.DEFINE_integer("subscale_factor", None, "SPN subscale factor S (slices of H/S).",
                         lower_bound=1)
    flags.DEFINE_bool("conditional", False, "Class-conditional on the dataset's labels.")
    flags.DEFINE_bool("text_conditional", False, "Conditional on captions (cond['text']): the "
                      "embedded photos' captions, encoded by a text encoder trained with the "
                      "model.")
    flags.DEFINE_multi_string("hparams", [], "Model hyperparameter override key=value (Python "
                              "literal), repeatable: --hparams=filters=64 "
                              "--hparams=attention_layers=(3,7).")
    flags.DEFINE_integer("depth_bits", None, "upscaling: most significant bits modelled first "
                         "(0: no depth upscaling, e.g. the 5-bit CelebA-HQ setting).",
                         lower_bound=0)
    flags.DEFINE_enum("head", None, list(distributions.HEADS),
                      "Likelihood head of every sub-pixel: a 'categorical' over the 2**bits "
                      "values (the default) or PixelCNN++'s 'logistic_mixture' (at least 2 "
                      "bits; fewer outputs, faster at 8 bits).")
    flags.DEFINE_integer("num_mixtures", None, "Logistic components per sub-pixel "
                         "(--head=logistic_mixture; default 5).", lower_bound=1)
    flags.DEFINE_enum("upscaling_part", None, ["all", "first", "size", "depth"],
                      "upscaling: the network to train (they factorise the likelihood).")
    flags.DEFINE_integer("batch_size", 32, "Global batch size.", lower_bound=1)
    flags.DEFINE_integer("steps", 600, "Optimizer steps.", lower_bound=1)
    flags.DEFINE_integer("checkpoint_every", 100, "Steps between checkpoints (a killed run "
                         "resumes from the latest).", lower_bound=1)
    flags.DEFINE_integer("keep_checkpoints", 3, "Checkpoints kept.", lower_bound=1)
    flags.DEFINE_integer("log_every", 50, "Steps between progress lines.", lower_bound=1)
    flags.DEFINE_enum("optimizer", "adam", ["adam", "rmsprop"], "Optimizer.")
    flags.DEFINE_float("learning_rate", 1e-3, "Peak learning rate.", lower_bound=0.0)
    flags.DEFINE_integer("warmup_steps", 0, "Linear learning-rate warm-up steps.", lower_bound=0)
    flags.DEFINE_enum("lr_decay", "constant", list(DECAYS),
                      "Learning-rate decay after warm-up, to --final_learning_rate.")
    flags.DEFINE_float("final_learning_rate", 0.0, "Learning rate at the last step (linear and "
                       "cosine decay).", lower_bound=0.0)
    flags.DEFINE_float("ema_decay", 0.0, "EMA (Polyak averaging) of the weights used for "
                       "evaluation, samples and model.keras; 0: off.", lower_bound=0.0,
                       upper_bound=0.999999999)
    flags.DEFINE_float("clip_grad_norm", None, "Clip gradients to this global norm.",
                       lower_bound=0.0)
    flags.DEFINE_integer("eval_batches", 0, "Held-out batches (0: the whole test split).",
                         lower_bound=0)
    flags.DEFINE_integer("eval_every", 0, "Steps between held-out evaluations (exact; 0: at "
                         "the end only).", lower_bound=0)
    flags.DEFINE_integer("eval_slices_per_call", 0, "SPN slices per network call in exact "
                         "evaluation (0: --batch_size, a training batch's memory).",
                         lower_bound=0)
    flags.DEFINE_integer("sample_every", 0, "Steps between sample grids in TensorBoard (0: the "
                         "final grid only).", lower_bound=0)
    flags.DEFINE_integer("num_samples", 16, "Images in the sample grid.", lower_bound=1)
    flags.DEFINE_float("temperature", 1.0, "Sampling temperature.", lower_bound=0.0)
    flags.DEFINE_string("model_dir", "runs/quickstart", "Checkpoints, samples and metrics.")
    flags.DEFINE_enum("strategy", "default", list(strategies.STRATEGIES), "tf.distribute strategy.")
    flags.DEFINE_string("tpu_address", "", "TPU address for --strategy=tpu.")
    flags.DEFINE_integer("cpu_devices", 0, "Split the CPU into this many logical devices (a "
                         "stand-in for several GPUs when testing --strategy=mirrored).",
                         lower_bound=0)
    flags.DEFINE_bool("jit_compile", False, "XLA-compile the train step.")
    flags.DEFINE_bool("mixed_precision", False, "Train with the mixed_bfloat16 policy.")
    flags.DEFINE_bool("flip", False, "Random horizontal flips (off: the flip of a face or a "
                      "scene is another image; turn on with a reason).")
    flags.DEFINE_integer("seed", 0, "Random seed.")


def config_from_flags():
    hparams = parse_overrides(FLAGS.hparams)
    if FLAGS.subscale_factor is not None:
        hparams["subscale_factor"] = FLAGS.subscale_factor
    if FLAGS.depth_bits is not None:
        hparams["msb_bits"] = FLAGS.depth_bits or None
    if FLAGS.upscaling_part is not None:
        hparams["train_part"] = FLAGS.upscaling_part
    for name in ("head", "num_mixtures"):
        if FLAGS[name].value is not None:
            hparams[name] = FLAGS[name].value
    if "num_mixtures" in hparams and hparams.get("head") != "logistic_mixture":
        raise ValueError("--num_mixtures is for --head=logistic_mixture (the categorical head "
                         "has none).")
    return TrainConfig(
        model=FLAGS.model, preset=FLAGS.preset, dataset=FLAGS.dataset, data_dir=FLAGS.data_dir,
        image_size=FLAGS.image_size, channels=int(FLAGS.channels), bits=FLAGS.bits,
        conditional=FLAGS.conditional, text_conditional=FLAGS.text_conditional,
        hparams=hparams, batch_size=FLAGS.batch_size,
        steps=FLAGS.steps, checkpoint_every=FLAGS.checkpoint_every,
        keep_checkpoints=FLAGS.keep_checkpoints, log_every=FLAGS.log_every,
        optimizer=FLAGS.optimizer, learning_rate=FLAGS.learning_rate,
        warmup_steps=FLAGS.warmup_steps, lr_decay=FLAGS.lr_decay,
        final_learning_rate=FLAGS.final_learning_rate, ema_decay=FLAGS.ema_decay,
        clip_grad_norm=FLAGS.clip_grad_norm, eval_batches=FLAGS.eval_batches,
        eval_every=FLAGS.eval_every, eval_slices_per_call=FLAGS.eval_slices_per_call,
        sample_every=FLAGS.sample_every,
        num_samples=FLAGS.num_samples, temperature=FLAGS.temperature, model_dir=FLAGS.model_dir,
        strategy=FLAGS.strategy, tpu_address=FLAGS.tpu_address, jit_compile=FLAGS.jit_compile,
        mixed_precision=FLAGS.mixed_precision, flip=FLAGS.flip, seed=FLAGS.seed)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}; all options are --flags.")
    if not FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # TF's per-save INFO lines would drown progress.
    if FLAGS.cpu_devices:
        strategies.split_cpu(FLAGS.cpu_devices)
    try:
        train_and_evaluate(config_from_flags())
    except ValueError as error:
        # A user-fixable problem (bad data, checkpoint, strategy): the message, not a trace.
        sys.exit(f"spn_tf.train: error: {error}")


if __name__ == "__main__":
    cli.run(main, define_flags, configs=True)
