"""`python -m spn_tf.train --flagfile=configs/quickstart.cfg`: train, evaluate, sample.

The flags are `spn_tf.run_folder.TrainConfig`'s fields (one each, its help; `cli.config_flags`)
and a few folded into its `hparams`; they become a frozen `TrainConfig`. absl rejects misspelt
flags, also inside a flagfile, and the command line overrides the file.
"""

import sys

from absl import app, flags, logging

from spn_tf import cli, distributions, strategies
from spn_tf.hparams import parse_overrides
from spn_tf.run_folder import TrainConfig
from spn_tf.trainer import train_and_evaluate

FLAGS = flags.FLAGS


def define_flags():
    """One flag per `TrainConfig` field (its help, bounds and choices: `cli.config_flags`),
    then those the CLI folds into `TrainConfig.hparams`, and a process setting."""
    cli.config_flags(TrainConfig)
    cli.hparams_flag()
    flags.DEFINE_integer("subscale_factor", None, "SPN subscale factor S (slices of H/S).",
                         lower_bound=1)
    flags.DEFINE_integer("msb_bits", None, "upscaling: most significant bits modelled first "
                         "(0: no depth upscaling, e.g. the 5-bit CelebA-HQ setting).",
                         lower_bound=0)
    flags.DEFINE_enum("head", None, list(distributions.HEADS),
                      "Likelihood head of every sub-pixel: a 'categorical' over the 2**bits "
                      "values (the default) or PixelCNN++'s 'logistic_mixture' (at least 2 "
                      "bits; fewer outputs). Which learns faster depends on the kind and the "
                      "data: docs/models.md, 'Which head'.")
    flags.DEFINE_integer("num_mixtures", None, "Logistic components per sub-pixel "
                         "(--head=logistic_mixture; default 5).", lower_bound=1)
    flags.DEFINE_enum("upscaling_part", None, ["all", "first", "size", "depth"],
                      "upscaling: the network to train (they factorise the likelihood).")
    flags.DEFINE_integer("cpu_devices", 0, "Split the CPU into this many logical devices (a "
                         "stand-in for several GPUs when testing --strategy=mirrored).",
                         lower_bound=0)


def config_from_flags():
    hparams = parse_overrides(FLAGS.hparams)
    if FLAGS.subscale_factor is not None:
        hparams["subscale_factor"] = FLAGS.subscale_factor
    if FLAGS.msb_bits is not None:
        hparams["msb_bits"] = FLAGS.msb_bits or None
    if FLAGS.upscaling_part is not None:
        hparams["train_part"] = FLAGS.upscaling_part
    for name in ("head", "num_mixtures"):
        if FLAGS[name].value is not None:
            hparams[name] = FLAGS[name].value
    if "num_mixtures" in hparams and hparams.get("head") != "logistic_mixture":
        raise ValueError("--num_mixtures is for --head=logistic_mixture (the categorical head "
                         "has none).")
    return TrainConfig(hparams=hparams, **cli.config_values(TrainConfig))


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
