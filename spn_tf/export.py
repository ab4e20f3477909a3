"""SavedModel export with exact signatures, for TF Serving and for `tf.saved_model.load`.

`python -m spn_tf.export --model_dir=runs/quickstart --export_base=exports --model_name=quickstart
[--version=N] [--xla] [--warmup_batch_sizes=1,8,32]` loads the training run's `model.keras`
and writes `<export_base>/<name>/<N>/` (the next free version by default; an existing version
is never overwritten), the layout TF Serving's `--model_base_path` expects, with TF Serving's
warm-up requests (`assets.extra/tf_serving_warmup_requests`: one per signature and batch size,
replayed at load, so the first real request does not pay tracing and graph optimisation).

Signatures (every input and output batched on dimension 0; dtypes int32, uint8, float32,
string):
  * `log_prob` (also `serving_default`): `images` int32 `(B, H, W, C)` (+ conditioning) →
    `log_prob` float32 `(B,)` (nats), `bits_per_dim` float32 `(B,)`;
    `log_prob_uint8`: the same with `images` uint8 (a signature input has one dtype);
  * `sample`: `seed` int32 `(B, 2)`, `temperature` float32 `(B,)` (+ conditioning) →
    `images` int32 `(B, H, W, C)`. Same noise, batched arithmetic: the rows run together, row
    i's noise comes only from `seed[i]` and `temperature[i]` scales only row i, so how rows are
    grouped (by a client or TF Serving's batcher) never changes which draw a row gets; row i
    equals `model.sample(1, seed[i], temperature[i])` except where batched float rounding
    moves a logit across a CDF boundary of that row's noise (rare; the agreement rate is
    measured, not promised). The same
    holds for every sampling signature below;
  * raster: `complete` — `images` + `mask` (int32 0/1, 1 = keep) + seed + temperature;
  * SPN / upscaling: `upscale_size` — `first_slice` int32 `(B, H/S, W/S, C)`, the first
    subscale slice (a depth-upscaling composite: at its top `msb_bits`, so the draw is exact), + seed
    + temperature; upscaling and depth-conditioned SPNs: `upscale_depth` —
    `msb` int32 `(B, H, W, C)` (the most significant bits) + seed + temperature;
  * multiscale: `super_resolve` — `low_res` int32 `(B, H/2, W/2, C)` + seed + temperature;
  * video (`multiscale_video`): `log_prob` / `log_prob_uint8` take `clips` `(B, T, H, W, C)`
    and `action` float32 `(B, T-1, A)` (bits/dim over the predicted frames); `sample` takes
    `first_frames` int32 `(B, H, W, C)`, `action`, seed and temperature → `clips` int32
    `(B, T, H, W, C)` (the first frame unchanged; row i is `sample_video` of row i alone);
  * every kind: `describe` — `rows` int32 `(B,)` → `bits`, `image_size`, `channels`,
    `num_frames` int32 `(B,)` (what a client needs before it sends or shows pixels).
Each model kind lists its own (`model.export_module`, `spn_tf/models/<kind>/export.py`); this module checks the
inputs and writes them.
Conditioning inputs, where the model takes them: `label` int32 `(B,)`, `embedding` float32
`(B, D)`, `text` string `(B,)` (UTF-8 captions, DT_STRING in TF Serving), `msb` (a
depth-conditioned SPN's most significant bits), `low_res` (a `condition_on_base` multiscale
model's `(B, H/2, W/2, C)` image). Inputs are checked in the graph (`tf.debugging` asserts that survive
export): an out-of-range pixel or label (the message names the input, the allowed range, the
first bad value and its row), a negative temperature, an empty batch, inputs with different
batch sizes, or an empty, too long or non-UTF-8 caption raise `InvalidArgumentError` (TF
Serving answers INVALID_ARGUMENT). `assets.extra/spn_tf.json` describes the model (kind, geometry,
bits, conditioning, signatures) for clients that do not have spn_tf.
"""

import json
import os
import sys

import keras
import tensorflow as tf
from absl import app, flags

import spn_tf
from spn_tf import cli
from spn_tf import models, warmup
from spn_tf.run_folder import load_checkpoint

FLAGS = flags.FLAGS
METADATA_FILE = os.path.join("assets.extra", "spn_tf.json")


def _in_range(value, low, high, allowed):
    """An assert that every entry of `value` lies in `[low, high)`; its message is `allowed`,
    the first bad value and its row (dimension 0)."""
    flat = tf.reshape(value, [tf.shape(value)[0], -1])
    bad = tf.logical_or(flat < low, flat >= high)
    first = tf.where(bad)[:1]  # (row, position) of the first bad entry, if any
    return tf.debugging.Assert(
        tf.logical_not(tf.reduce_any(bad)),
        [f"{allowed}; got", tf.gather_nd(flat, first), "at row", first[:, 0]])


def _checks(model, inputs):
    """Graph asserts on a signature's inputs; each message names the input and what is allowed,
    and a bad value and its row where one is out of range.

    Returns:
      The assert ops (run them before the model: `tf.control_dependencies`).
    """
    first = next(iter(inputs))
    checks = [tf.debugging.Assert(tf.shape(inputs[first])[0] > 0, [
        f"empty batch: {first} has no rows; send at least one"])]
    for name, value in inputs.items():
        if name != first:
            checks.append(tf.debugging.assert_equal(
                tf.shape(value)[0], tf.shape(inputs[first])[0],
                message=f"batch mismatch: {name} and {first} must have the same size on "
                        f"dimension 0"))
        if value.shape.rank >= 4:  # image-valued: images, clips, first frames, low_res, msb, ...
            bits = model.export_module.input_value_bits(name)
            allowed = f"{name} values must be in [0, {2 ** bits})" + (
                f" (bits={bits})" if name != "mask" else " (0 or 1)")
            top = 2 ** bits
            checks.append(_in_range(tf.cast(value, tf.int32), 0, top, allowed))
        elif name == "label":
            classes = model.cond_spec["label"]
            checks.append(_in_range(value, 0, classes,
                                    f"label values must be class ids in [0, {classes})"))
        elif name in ("embedding", "action"):
            checks.append(tf.debugging.assert_all_finite(
                value, message=f"{name} values must be finite"))
        elif name == "temperature":
            checks.append(tf.debugging.assert_all_finite(
                value, message="temperature values must be finite floats >= 0"))
            checks.append(tf.debugging.assert_non_negative(
                value, message="temperature values must be finite floats >= 0"))
    return checks


def _endpoint(model, body, specs, xla):
    """A function of the signature's inputs, positionally, checking them first."""
    names = [spec.name for spec in specs]

    def endpoint(*tensors):
        inputs = dict(zip(names, tensors))
        with tf.control_dependencies(_checks(model, inputs)):
            inputs = {name: tf.identity(value) for name, value in inputs.items()}
        return body(model, inputs, xla)

    return endpoint


def _describe(spec):
    return {"shape": [d if d is not None else -1 for d in spec.shape.as_list()],
            "dtype": spec.dtype.name}


def metadata(model, signature_io, xla):
    """What a client needs without spn_tf: kind, geometry, bits, conditioning, signatures."""
    return {
        "model": model.kind, "class": type(model).__name__,
        "image_size": model.image_size, "channels": model.channels, "bits": model.bits,
        "cond": model.cond_spec, **model.export_module.metadata(),
        "xla": xla, "serving_default": "log_prob", "signatures": signature_io,
        "spn_tf_version": spn_tf.__version__, "tensorflow_version": tf.__version__,
    }


def export_model(model, export_dir, xla=False, warmup_batch_sizes=warmup.BATCH_SIZES):
    """Writes `model` as a SavedModel at exactly `export_dir`.

    Args:
      model: an spn_tf `DensityModel`.
      export_dir: a directory that does not exist yet (or is empty).
      xla: export the sampling loops XLA-compiled (the server must enable XLA JIT, e.g.
        `tensorflow_model_server --xla_cpu_compilation_enabled=true`); default plain graphs.
      warmup_batch_sizes: batch sizes of the warm-up requests written to
        `assets.extra/tf_serving_warmup_requests` (one per signature and size, replayed by
        TF Serving and the stand-in at load); `()` writes none.

    Returns:
      `export_dir`.

    Raises:
      ValueError: `export_dir` already holds something.
    """
    if not isinstance(model, models.DensityModel):
        raise ValueError(f"cannot export {type(model).__name__}: not an spn_tf model (a "
                         f"spn_tf.models.DensityModel).")
    export_dir = os.fspath(export_dir)
    if os.path.exists(export_dir) and os.listdir(export_dir):
        raise ValueError(f"export_dir {export_dir} already exists and is not empty; an export "
                         f"is never overwritten: choose another directory or version.")
    model.build()
    archive = keras.export.ExportArchive()
    archive.track(model)
    signature_io, signature_specs = {}, {}
    for name, (body, specs) in model.export_module.signatures().items():
        signature_specs[name] = specs
        fn = archive.add_endpoint(name, _endpoint(model, body, specs, xla), input_signature=specs)
        outputs = fn.get_concrete_function().structured_outputs
        signature_io[name] = {
            "inputs": {spec.name: _describe(spec) for spec in specs},
            "outputs": {key: _describe(tf.TensorSpec(value.shape, value.dtype))
                        for key, value in outputs.items()}}
    # Written beside, then renamed: a server watching the base path never sees half a version
    # (TF Serving ignores non-numeric directory names).
    parent, leaf = os.path.split(os.path.abspath(export_dir))
    os.makedirs(parent, exist_ok=True)
    staging = os.path.join(parent, f".{leaf}.partial-{os.getpid()}")
    archive.write_out(staging, verbose=False)
    os.makedirs(os.path.join(staging, "assets.extra"), exist_ok=True)
    with open(os.path.join(staging, METADATA_FILE), "w") as f:
        json.dump(metadata(model, signature_io, xla), f, indent=1)
    if warmup_batch_sizes:
        warmup.write(staging, signature_specs, warmup_batch_sizes)
    if os.path.exists(export_dir):
        os.rmdir(export_dir)
    os.rename(staging, export_dir)
    return export_dir


def next_version(export_base, name):
    """The next free version number under `<export_base>/<name>/` (1 if none)."""
    base = os.path.join(export_base, name)
    versions = [int(d) for d in os.listdir(base) if d.isdigit()] if os.path.isdir(base) else []
    return max(versions, default=0) + 1


def load_for_export(model_dir):
    """The model to export from a training run: `<model_dir>/model.keras`.

    `spn_tf.train` writes `model.keras` with its averaged weights when it keeps them
    (`--ema_decay`), so these are what gets exported.

    Raises:
      ValueError: no checkpoint, or one that cannot be read.
    """
    path = os.path.join(model_dir, "model.keras")
    if not os.path.isfile(path):
        raise ValueError(f"no checkpoint at {path}: --model_dir must be a training run "
                         f"directory written by `python -m spn_tf.train --model_dir=...`.")
    return load_checkpoint(path)


def export_run(model_dir, export_base, name, version=None, xla=False,
               warmup_batch_sizes=warmup.BATCH_SIZES):
    """Exports a training run's checkpoint to `<export_base>/<name>/<version>/`.

    Args:
      model_dir: the run directory holding `model.keras`.
      export_base: the directory of exported models (TF Serving's model base paths' parent).
      name: the model name (TF Serving's `--model_name`).
      version: a positive int; default the next free version.
      xla, warmup_batch_sizes: see `export_model`.

    Returns:
      The directory written.

    Raises:
      ValueError: missing or corrupt checkpoint, a bad name or version, an existing version.
    """
    if not name or os.sep in name or name.startswith("."):
        raise ValueError(f"name must be a plain directory name, got {name!r}.")
    if version is not None and (not isinstance(version, int) or version < 1):
        raise ValueError(f"version must be a positive int, got {version!r}.")
    version = version or next_version(export_base, name)
    export_dir = os.path.join(export_base, name, str(version))
    if os.path.exists(export_dir):
        raise ValueError(f"version {version} of {name!r} already exists at {export_dir}; "
                         f"versions are never overwritten: leave --version out for the next "
                         f"free one ({next_version(export_base, name)}).")
    return export_model(load_for_export(model_dir), export_dir, xla, warmup_batch_sizes)


def describe(export_dir):
    """One line per signature of an export (from its `assets.extra/spn_tf.json`)."""
    with open(os.path.join(export_dir, METADATA_FILE)) as f:
        info = json.load(f)
    fmt = lambda io: ", ".join(f"{k}: {v['dtype']} {v['shape']}" for k, v in io.items())
    return [f"{name}({fmt(io['inputs'])}) -> {fmt(io['outputs'])}"
            for name, io in info["signatures"].items()]


def define_flags():
    cli.model_dir_flag()
    flags.DEFINE_string("export_base", "exports", "Directory of exported models.")
    cli.model_name_flag(required=True, help_text="Name of the served model (TF Serving's "
                        "--model_name): writes <export_base>/<model_name>/<version>/.")
    flags.DEFINE_integer("version", None, "Version number (default: the next free one).",
                         lower_bound=1)
    flags.DEFINE_bool("xla", False, "XLA-compile the sampling loops (TF Serving then needs "
                      "--xla_cpu_compilation_enabled=true).")
    flags.DEFINE_list("warmup_batch_sizes", [str(b) for b in warmup.BATCH_SIZES],
                      "Batch sizes of the warm-up requests written into the export (TF Serving "
                      "replays them at load, so the first request is fast); empty: none.")
    flags.register_validator(
        "warmup_batch_sizes", lambda sizes: all(s.isdigit() and int(s) > 0 for s in sizes),
        message="--warmup_batch_sizes must be positive integers, e.g. 1,8,32 (or empty).")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}; all options are --flags.")
    try:
        export_dir = export_run(FLAGS.model_dir, FLAGS.export_base, FLAGS.model_name, FLAGS.version,
                                FLAGS.xla, tuple(int(s) for s in FLAGS.warmup_batch_sizes))
    except ValueError as error:
        sys.exit(f"spn_tf.export: error: {error}")
    print(f"wrote {export_dir}")
    for line in describe(export_dir):
        print(f"  {line}")


if __name__ == "__main__":
    cli.run(main, define_flags)
