"""Hyperparameter checks: the settings under which the models stay exact.

Every layer and model checks its own constructor arguments with these at construction, so no
setting a user can reach (`models.build(**overrides)`, `--hparams`, a config) silently makes a
mask look ahead or a distribution unnormalized. Each error names the argument as the caller
passed it and says what is allowed. Example of what they prevent: an even kernel puts the
"centre" tap half a pixel off, so the causal masks let a pixel see the one after it (the sum of
`p(x)` over a tiny space was 1.36).
"""

import ast
import numbers

import numpy as np


def is_int(value):
    """An integer (Python or numpy), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_positive(name, value):
    """Raises `ValueError` unless `value` is an int >= 1; returns it."""
    if not is_int(value) or value < 1:
        raise ValueError(f"{name}={value!r} must be a positive int.")
    return value


def check_bool(name, value):
    """Raises `ValueError` unless `value` is a bool (a flag's `"false"` would be truthy);
    returns it."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name}={value!r} must be True or False.")
    return bool(value)


MASK_CENTRE = "the causal masks need a centre tap, which an even kernel does not have"
ALIGNED = "a centred kernel keeps the features aligned with the pixels they describe"


def check_non_negative(name, value):
    """Raises `ValueError` unless `value` is an int >= 0 (e.g. a number of blocks); returns it."""
    if not is_int(value) or value < 0:
        raise ValueError(f"{name}={value!r} must be an int >= 0.")
    return value


def check_odd_kernel(name, kernel_size, why=MASK_CENTRE):
    """Raises `ValueError` unless `kernel_size` is a positive odd int or a tuple of them.

    Causal masks keep the taps before the kernel's centre: the centre is a pixel only for odd
    sizes (an even kernel's mask reaches the next pixel). Unmasked convolutions that feed a
    decoder (`why=ALIGNED`) need it to keep their output at p about pixel p.
    """
    sizes = (kernel_size,) if is_int(kernel_size) else tuple(kernel_size)
    if not sizes or not all(is_int(k) and k >= 1 and k % 2 == 1 for k in sizes):
        raise ValueError(f"{name}={kernel_size!r} must be a positive odd int (1, 3, 5, ...): "
                         f"{why}.")
    return kernel_size


def check_first_kernel(name, kernel_size):
    """Raises `ValueError` unless the mask-A input kernel is odd and at least 3: a 1x1 mask-A
    input sees no other pixel. Returns it."""
    check_odd_kernel(name, kernel_size)
    if kernel_size < 3:
        raise ValueError(f"{name}={kernel_size} must be >= 3: a 1x1 mask-A input sees no other "
                         f"pixel.")
    return kernel_size


def check_multiple(name, value, of, why):
    """Raises `ValueError` unless `value` is a positive int multiple of `of`; `why` says why."""
    check_positive(name, value)
    if value % of:
        raise ValueError(f"{name}={value} must be a multiple of {of} ({why}).")
    return value


def check_channel_features(name, value, data_channels, splits=1):
    """Features split into `splits` chunks of `data_channels` equal channel groups (R | G | B)."""
    what = "the image channels" if splits == 1 else f"{splits} x the image channels"
    return check_multiple(name, value, data_channels * splits,
                          f"{what}: each channel's mask group gets an equal block of features")


def index_tuple(name, indices):
    """`indices` (a list or tuple of block indices) as a tuple; `ValueError` for anything else
    (one int, a string), with the flag spelling to use."""
    if isinstance(indices, (str, bytes)) or not hasattr(indices, "__iter__"):
        raise ValueError(f"{name}={indices!r} must be a list of block indices, e.g. "
                         f"--hparams={name}=[{indices!r}] or {name}=[] for none.")
    return tuple(indices)


def check_layer_indices(name, indices, num_layers, num_layers_name="num_layers"):
    """Raises `ValueError` unless `indices` are distinct ints in `[0, num_layers)`."""
    indices = index_tuple(name, indices)
    if (not all(is_int(i) and 0 <= i < num_layers for i in indices)
            or len(set(indices)) != len(indices)):
        raise ValueError(
            f"{name}={list(indices)} must be distinct block indices in [0, {num_layers}) "
            f"({num_layers_name}={num_layers}).")
    return indices


def parse_overrides(items):
    """`--hparams` entries → keyword overrides: `["filters=64", "attention_layers=(1,)"]` →
    `{"filters": 64, "attention_layers": (1,)}` (values as Python literals, else strings).

    Raises:
      ValueError: an entry that is not `key=value`.
    """
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--hparams entry {item!r} is not key=value.")
        try:
            out[key.strip()] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            out[key.strip()] = value.strip()
    return out
