"""What every `python -m spn_tf.<tool>` shares: its flags, and a `--helpfull` of only those.

Importing TensorFlow registers ~180 flags of other libraries (absltest, the TPU tensor
tracer, pfor, absl logging) with absl's global `FLAGS`; absl's `--helpfull` would list them
all. `run` leaves them working but hides them from the help, so `--helpfull` shows the tool's
own flags and absl's `--flagfile`.

The shipped configurations are package data (`spn_tf/configs/*.cfg`; `configs/` in a checkout
links there): `--config=imagenet32` names one wherever spn_tf is installed, and stands for
`--flagfile=<its path>` (later flags override it, as with `--flagfile`).
"""

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
