"""`python -m spn_tf.check`: audit a configuration, a trained checkpoint or an export.

  python -m spn_tf.check --model=spn --preset=small --image_size=32 --bits=5 [--hparams=k=v]
  python -m spn_tf.check --model_dir=runs/quickstart
  python -m spn_tf.check --saved_model=exports/quickstart/1 [--json]

Prints a verdict table (or JSON with `--json`) and exits 1 if any check fails, 2 on a usage
error (a missing or corrupt checkpoint or export). See `spn_tf/check/model_checks.py` and
`export_checks.py` for what each line measures.
"""

import dataclasses
import json
import os
import sys

from absl import app, flags

from spn_tf import cli, models
from spn_tf.check import export_checks, format_table, model_checks
from spn_tf.hparams import parse_overrides
from spn_tf.run_folder import TrainConfig, load_checkpoint

FLAGS = flags.FLAGS


def define_flags():
    # The configuration to check (--model: its kind), as spn_tf.train takes it.
    cli.config_flags(TrainConfig, ["model", "preset", "image_size", "channels", "bits",
                                   "num_classes"], model=None)
    flags.DEFINE_integer("action_dims", 2, "--model=multiscale_video: the size of an action "
                         "vector (2 for the camera clips, 4 for BAIR).", lower_bound=1)
    cli.hparams_flag()
    cli.model_dir_flag(required=False)
    flags.DEFINE_string("saved_model", None, "An exported SavedModel version folder to check.")
    flags.DEFINE_integer("seed", 0, "Seed of the random probes.")
    flags.DEFINE_integer("agreement_seeds", 2, "Seeds of the compiled vs reference check.",
                         lower_bound=1)
    flags.DEFINE_integer("max_positions", 64, "Sub-pixels changed per causality probe (all "
                         "of them on smaller images).", lower_bound=1)
    flags.DEFINE_bool("json", False, "Print the verdicts as JSON.")


def verdicts_for(flag_values):
    """The verdicts of what the flags name (exactly one of model / model_dir / saved_model)."""
    named = [f for f in ("model", "model_dir", "saved_model") if flag_values[f].value]
    if len(named) != 1:
        raise app.UsageError(f"pass exactly one of --model, --model_dir, --saved_model; got "
                             f"{named or 'none'}.")
    if flag_values.saved_model:
        return export_checks.audit_export(flag_values.saved_model)
    if flag_values.model_dir:
        model = load_checkpoint(os.path.join(flag_values.model_dir, "model.keras"))
    else:
        cond = {"label": flag_values.num_classes} if flag_values.num_classes else None
        if models.model_class(flag_values.model).export_class.produces_clips:
            if cond:
                raise app.UsageError(f"--num_classes does not apply to --model="
                                     f"{flag_values.model} (it is conditioned on actions).")
            cond = {"action": flag_values.action_dims}
        model = models.build(flag_values.model, flag_values.image_size,
                             int(flag_values.channels), flag_values.bits, flag_values.preset,
                             cond, **parse_overrides(flag_values.hparams))
    return model_checks.audit_model(model, flag_values.seed, flag_values.agreement_seeds,
                                    flag_values.max_positions)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}; all options are --flags.")
    try:
        verdicts = verdicts_for(FLAGS)
    except (ValueError, app.UsageError, flags.Error) as error:
        print(f"spn_tf.check: error: {error}", file=sys.stderr)
        sys.exit(2)
    if FLAGS.json:
        print(json.dumps([dataclasses.asdict(v) for v in verdicts], indent=2))
    else:
        print(format_table(verdicts))
    sys.exit(1 if any(v.failed for v in verdicts) else 0)


if __name__ == "__main__":
    cli.run(main, define_flags)
