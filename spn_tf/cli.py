"""What every `python -m spn_tf.<tool>` shares: its flags, and a `--helpfull` of only those.

A flag that means the same in several tools is defined once, here (`model_dir_flag`,
`sampling_flags`, `cond_flags`, `batch_size_flag`, `hparams_flag`, `model_name_flag`), and
the fields of a config dataclass become flags with `config_flags` (the train CLI's, from
`spn_tf.run_folder.TrainConfig`: each option written once, its field and help). Every flag
defined here is listed with the calling tool's own flags in `--help`.

Importing TensorFlow registers ~180 flags of other libraries (absltest, the TPU tensor
tracer, pfor, absl logging) with absl's global `FLAGS`; absl's `--helpfull` would list them
all. `run` leaves them working but hides them from the help, so `--helpfull` shows the tool's
own flags and absl's `--flagfile`.

The shipped configurations are package data (`spn_tf/configs/*.cfg`; `configs/` in a checkout
links there): `--config=imagenet32` names one wherever spn_tf is installed, and stands for
`--flagfile=<its path>` (later flags override it, as with `--flagfile`).
"""

import dataclasses
import importlib.resources
import os
import sys

import numpy as np
from absl import app, flags

from spn_tf import startup
from spn_tf.inputs import check_text


def _ours(module):
    return "spn_tf" in module or module == sys.argv[0]


def hide_foreign_flags_from_help(flag_values=flags.FLAGS):
    """Drops other libraries' modules from the help listing (the flags themselves stay)."""
    by_module = flag_values.flags_by_module_dict()
    for module in [name for name in by_module if not _ours(name)]:
        del by_module[module]


def _define(define, name, default, help, **kwargs):
    """`define(name, default, help, ...)`, filed under the tool's module (`sys.argv[0]`, as
    absl files the tool's own flags) so that `--help` lists it with them."""
    return define(name, default, help=help, module_name=sys.argv[0], **kwargs)


def config_flags(config_class, names=None, **defaults):
    """A `--flag` per field of the dataclass `config_class` (those in `names`, default all but
    `flag=False` ones): the field's type (bool, int, float, str; an enum when it has
    `choices`), default (or `defaults[name]`), help and bounds from its metadata."""
    kinds = {bool: flags.DEFINE_bool, int: flags.DEFINE_integer, float: flags.DEFINE_float,
             str: flags.DEFINE_string}
    for field in dataclasses.fields(config_class):
        meta = field.metadata
        if (field.name not in names) if names is not None else meta.get("flag") is False:
            continue
        default = defaults.get(field.name, field.default)
        if "choices" in meta:
            _define(flags.DEFINE_enum, field.name, None if default is None else str(default),
                    meta["help"], enum_values=[str(c) for c in meta["choices"]])
        else:
            bounds = {k: meta[k] for k in ("lower_bound", "upper_bound") if k in meta}
            _define(kinds[field.type], field.name, default, meta["help"], **bounds)


def config_values(config_class, flag_values=flags.FLAGS):
    """`{field: value}` of the fields of `config_class` defined as flags by `config_flags`
    (an enum's string turned back into the field's type)."""
    values = {}
    for field in dataclasses.fields(config_class):
        if field.name in flag_values and field.metadata.get("flag") is not False:
            value = flag_values[field.name].value
            values[field.name] = value if value is None else field.type(value)
    return values


def model_dir_flag(required=True):
    _define(flags.DEFINE_string, "model_dir", None, "A training run's directory (what "
            "spn_tf.train wrote there: model.keras, config.json).", required=required)


def sampling_flags(num_samples):
    """`--num_samples`, `--seed`, `--temperature` of a tool that draws images."""
    _define(flags.DEFINE_integer, "num_samples", num_samples, "Images to draw.", lower_bound=1)
    _define(flags.DEFINE_integer, "seed", 0, "Stateless sampling seed: the same seed gives "
            "the same images.")
    _define(flags.DEFINE_float, "temperature", 1.0, "Sampling temperature (0: the most likely "
            "values).", lower_bound=0.0)


def cond_flags():
    """`--labels` and `--captions`: the conditioning of a class- or text-conditional model."""
    _define(flags.DEFINE_list, "labels", None, "Class labels for a class-conditional model, "
            "one per image or cycled (spn_tf.sample, spn_tf.codec: default 0, 1, 2, ... modulo "
            "the classes).")
    _define(flags.DEFINE_multi_string, "captions", None, "Captions for a text-conditional "
            "model, one flag each (--captions='a cat' --captions='a red cup'), one per image "
            "or cycled.")


def batch_size_flag(default, **bounds):
    _define(flags.DEFINE_integer, "batch_size", default, "Images per model call (per sampler "
            "or coder call: more is faster per image and takes more memory).", lower_bound=1,
            **bounds)


def hparams_flag():
    _define(flags.DEFINE_multi_string, "hparams", [], "Model hyperparameter override "
            "key=value (Python literal), repeatable: --hparams=filters=64 "
            "--hparams=attention_layers=(3,7).")


def model_name_flag(default=None, required=False, help_text=None):
    _define(flags.DEFINE_string, "model_name", default, help_text or (
        "Name of the served model, as tensorflow_model_server's --model_name (server: "
        "ignored if --model_config_file is set)."), required=required)


def config_names():
    """Names of the shipped configurations (`--config` values)."""
    files = importlib.resources.files("spn_tf") / "configs"
    return sorted(entry.name[:-4] for entry in files.iterdir() if entry.name.endswith(".cfg"))


def config_path(name):
    """Path of the shipped configuration `name` (e.g. `"imagenet32"`)."""
    if name not in config_names():
        raise app.UsageError(f"--config={name!r} is not a shipped configuration; choose one of "
                             f"{config_names()} or pass --flagfile=<your .cfg file>.")
    return os.fspath(importlib.resources.files("spn_tf") / "configs" / f"{name}.cfg")


def expand_config_flags(argv):
    """`--config=NAME` → `--flagfile=<path of the shipped NAME.cfg>`, in place in `argv`.

    Raises:
      app.UsageError: an unknown NAME, or a `--flagfile` that does not exist (naming the
        `--config` that stands for it where it names a shipped configuration, e.g.
        `--flagfile=configs/imagenet32.cfg` run outside a checkout).
    """
    for arg in argv:
        if arg.startswith("--flagfile="):
            path = arg.split("=", 1)[1]
            if not os.path.exists(path):
                name = os.path.basename(path).removesuffix(".cfg")
                hint = (f"the shipped configuration of that name works wherever spn_tf is "
                        f"installed: --config={name}" if name in config_names() else
                        f"pass the path of a .cfg file, or --config=NAME with NAME one of "
                        f"{config_names()}")
                raise app.UsageError(f"--flagfile={path}: no such file in {os.getcwd()}; "
                                     f"{hint}.")
    return [f"--flagfile={config_path(arg.split('=', 1)[1])}"
            if arg.startswith("--config=") else arg for arg in argv]


def run(main, define_flags, configs=False, before_main=None):
    """Defines the tool's flags and runs `main` under absl, with a help of our flags only.

    Args:
      configs: the tool takes `--config=NAME` (a shipped configuration).
      before_main: None, or a function called with the flags parsed, before `app.run`:
        for process settings TensorFlow reads only that early (measured: `TF_XLA_FLAGS` set
        inside an absl `main` was ignored, set before `app.run` it was read).
    """
    startup.quiet_tensorflow_logs()
    define_flags()
    if configs:  # expanded below, before absl parses; defined so that the help lists it
        flags.DEFINE_string("config", None, "A shipped configuration by name (one of "
                            f"{', '.join(config_names())}): stands for --flagfile=<its "
                            "path>, wherever spn_tf is installed; later flags override it.",
                            module_name=sys.argv[0])  # listed with the tool's own flags
    app.define_help_flags()
    hide_foreign_flags_from_help()
    argv = sys.argv
    if configs:
        try:
            argv = expand_config_flags(argv)
        except app.UsageError as error:
            sys.exit(f"{os.path.basename(argv[0])}: error: {error}")
    if before_main is not None:
        try:
            flags.FLAGS(argv, known_only=True)
        except flags.Error:
            pass  # `app.run` reports it, with the usage
        else:
            before_main()
    app.run(main, argv=argv)


def labels_cond(model, num, labels):
    """`{"label": ...}` of `num` images from `--labels` (cycled; default 0, 1, 2, ... modulo
    the classes), or `{}` for a model without classes (which refuses `--labels`)."""
    classes = model.cond_spec.get("label")
    if not classes:
        if labels:
            raise ValueError("--labels given, but the model is not class-conditional.")
        return {}
    if not labels:
        return {"label": np.resize(np.arange(classes), num).astype(np.int32)}
    try:
        values = np.array([int(v) for v in labels], np.int64)
    except ValueError:
        raise ValueError(f"--labels must be class indices (integers), got {labels}.") from None
    if values.min() < 0 or values.max() >= classes:
        raise ValueError(f"--labels must be class indices in [0, {classes}) for this model, "
                         f"got {labels}.")
    return {"label": np.resize(values, num).astype(np.int32)}


def captions_cond(model, num, captions):
    """`{"text": ...}` of `num` images from `--captions` (cycled; the model's own check), or
    `{}` for a model without text (which refuses `--captions`)."""
    if "text" not in model.cond_spec:
        if captions:
            raise ValueError("--captions given, but the model is not text-conditional.")
        return {}
    if not captions:
        raise ValueError("this model is text-conditional: pass --captions='a caption' (one flag "
                         "per caption, cycled over the images).")
    captions = np.array(captions, object)
    check_text(captions, model.cond_spec["text"])  # the model's own check, before sampling
    return {"text": np.resize(captions, num)}
