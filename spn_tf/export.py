"""SavedModel export with exact signatures, for TF Serving and for `tf.saved_model.load`.

`python -m spn_tf.export --model_dir=runs/quickstart --export_base=exports --name=quickstart
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
    measured by `benchmarks/agreement.py` and stated in the README, not promised). The same
    holds for every sampling signature below;
  * raster: `complete` — `images` + `mask` (int32 0/1, 1 = keep) + seed + temperature;
  * SPN / upscaling: `upscale_size` — `low_res` int32 `(B, H/S, W/S, C)`, the first subscale
    slice (a depth-upscaling composite: at its top `depth_bits`, so the draw is exact), + seed
    + temperature; upscaling and depth-conditioned SPNs: `upscale_depth` —
    `msb` int32 `(B, H, W, C)` (the most significant bits) + seed + temperature;
  * multiscale: `super_resolve` — `low_res` int32 `(B, H/2, W/2, C)` + seed + temperature;
  * video (`multiscale_video`): `log_prob` / `log_prob_uint8` take `clips` `(B, T, H, W, C)`
    and `action` float32 `(B, T-1, A)` (bits/dim over the predicted frames); `sample` takes
    `first_frames` int32 `(B, H, W, C)`, `action`, seed and temperature → `clips` int32
    `(B, T, H, W, C)` (the first frame unchanged; row i is `sample_video` of row i alone).
Conditioning inputs, where the model takes them: `label` int32 `(B,)`, `embedding` float32
`(B, D)`, `text` string `(B,)` (UTF-8 captions, DT_STRING in TF Serving), `low_res` (a
depth-conditioned SPN's most significant bits; a `condition_on_base` multiscale model's
`(B, H/2, W/2, C)` image). Inputs are checked in the graph (`tf.debugging` asserts that survive
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
from spn_tf import models, orderings, warmup
from spn_tf.distributions import bits_per_dim
from spn_tf.run_folder import load_checkpoint

FLAGS = flags.FLAGS
METADATA_FILE = os.path.join("assets.extra", "spn_tf.json")


def _kind(model):
    for kind, (_, cls) in models.MODELS.items():
        if type(model).__name__ == cls:
            return kind
    raise ValueError(f"cannot export {type(model).__name__}: not one of the spn_tf models "
                     f"{sorted(models.MODELS)}.")


def _image_spec(name, model, side=None, dtype=tf.int32):
    side = side or model.image_size
    return tf.TensorSpec([None, side, side, model.channels], dtype, name=name)


def _clip_spec(name, model, dtype=tf.int32):
    side = model.image_size
    return tf.TensorSpec([None, model.num_frames, side, side, model.channels], dtype, name=name)


def _cond_specs(model):
    """Signature inputs for the conditioning the model takes, in `cond` key order."""
    specs = []
    if "action" in model.cond_spec:
        specs.append(tf.TensorSpec([None, model.num_frames - 1, model.cond_spec["action"]],
                                   tf.float32, name="action"))
    if "label" in model.cond_spec:
        specs.append(tf.TensorSpec([None], tf.int32, name="label"))
    if "embedding" in model.cond_spec:
        specs.append(tf.TensorSpec([None, model.cond_spec["embedding"]], tf.float32,
                                   name="embedding"))
    if "text" in model.cond_spec:
        specs.append(tf.TensorSpec([None], tf.string, name="text"))
    if getattr(model, "depth_condition_bits", None):
        specs.append(_image_spec("low_res", model))
    if getattr(model, "condition_on_base", False):
        specs.append(_image_spec("low_res", model, model.image_size // 2))
    return specs


def _value_bits(model, name):
    """Bits of an image-valued input: values must lie in `[0, 2**bits)`."""
    if name == "msb":
        return model.depth_bits if hasattr(model, "depth_bits") else model.depth_condition_bits
    if name == "low_res" and getattr(model, "depth_condition_bits", None):
        return model.depth_condition_bits
    if name == "low_res" and getattr(model, "depth_bits", None):
        return model.depth_bits  # the composite's first slice at its top bits (`upscale_size`)
    if name == "mask":
        return 1
    return model.bits


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
        if name in ("images", "clips", "first_frames", "low_res", "msb", "mask"):
            top = 2 ** _value_bits(model, name)
            allowed = f"{name} values must be in [0, {top})" + (
                f" (bits={_value_bits(model, name)})" if name != "mask" else " (0 or 1)")
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


def _cond(inputs, given=()):
    """The conditioning inputs of a signature, less those that are `given` content."""
    return {key: inputs[key] for key in ("label", "embedding", "text", "low_res", "action")
            if key in inputs and key not in given}


def _log_prob(model, inputs):
    pixels = inputs["clips"] if "clips" in inputs else inputs["images"]
    log_prob = model.log_prob(tf.cast(pixels, tf.int32), _cond(inputs))
    return {"log_prob": log_prob, "bits_per_dim": bits_per_dim(log_prob, model.num_dims)}


def _sampler(given_fn):
    """A sampling signature's body: `given_fn(model, inputs)` → `(cond, given)`."""
    def body(model, inputs, xla):
        cond, given = given_fn(model, inputs)
        return {"images": model.sample_rows(inputs["seed"], inputs["temperature"], cond, given,
                                            jit_compile=xla)}
    return body


# `sample`, and `super_resolve` (multiscale takes its low-resolution image as cond["low_res"]).
_sample = _sampler(lambda model, inputs: (_cond(inputs), None))
_complete = _sampler(lambda model, inputs: (_cond(inputs), {
    "images": inputs["images"], "mask": tf.cast(inputs["mask"], tf.bool)}))


def _sample_video(model, inputs, xla):
    return {"clips": model.sample_rows(inputs["seed"], inputs["temperature"], _cond(inputs),
                                       {"frames": inputs["first_frames"]}, jit_compile=xla)}


def _first_slice_given(model, low_res):
    """`given` for `upscale_size`: the first slice `(B, H/S, W/S, C)`.

    A depth-upscaling composite takes it at its top `depth_bits` (the output of its first
    network), so that the rest is drawn from the exact conditional (`given["msb"]` with
    `num_slices=1`); given at full depth the composite could only approximate it.
    """
    if not getattr(model, "depth_bits", None):
        return {"low_res": low_res}
    rest = tf.repeat(tf.zeros_like(low_res)[:, None], model.subscale_factor ** 2 - 1, axis=1)
    slices = tf.concat([low_res[:, None], rest], axis=1)
    return {"msb": orderings.subscale_merge(slices, model.subscale_factor), "num_slices": 1}


_upscale_size = _sampler(lambda model, inputs: (
    _cond(inputs, given=("low_res",)), _first_slice_given(model, inputs["low_res"])))
# The composite takes the most significant bits as given["msb"], a depth SPN as cond["low_res"].
_upscale_depth = _sampler(lambda model, inputs: (
    (_cond(inputs), {"msb": inputs["msb"]}) if hasattr(model, "depth_bits")
    else ({**_cond(inputs), "low_res": inputs["msb"]}, None)))


def _describe_model(model, inputs, xla):
    """`describe`: what a client needs to know before calling (one row per request row)."""
    rows = tf.shape(inputs["rows"])[:1]
    facts = {"bits": model.bits, "image_size": model.image_size, "channels": model.channels,
             "num_frames": getattr(model, "num_frames", 1)}
    return {name: tf.fill(rows, value) for name, value in facts.items()}


def signatures(model):
    """The signatures this model exports: `{name: (body, [TensorSpec inputs])}`.

    `body(model, inputs, xla)` maps the named inputs to a dict of named outputs. Every kind
    has `describe`: `rows` int32 `(batch,)` (any values) → `bits`, `image_size`, `channels`,
    `num_frames` (1 for images), int32 `(batch,)`; batched like the others, so TF Serving's
    batching serves it too.
    """
    describe = (_describe_model, [tf.TensorSpec([None], tf.int32, name="rows")])
    cond = _cond_specs(model)
    draw = [tf.TensorSpec([None, 2], tf.int32, name="seed"),
            tf.TensorSpec([None], tf.float32, name="temperature")]
    kind = _kind(model)
    if kind == "multiscale_video":
        return {
            "log_prob": (lambda m, inputs, xla: _log_prob(m, inputs),
                         [_clip_spec("clips", model)] + cond),
            "log_prob_uint8": (lambda m, inputs, xla: _log_prob(m, inputs),
                               [_clip_spec("clips", model, tf.uint8)] + cond),
            "sample": (_sample_video, [_image_spec("first_frames", model)] + draw + cond),
            "describe": describe,
        }
    specs = {
        "log_prob": (lambda m, inputs, xla: _log_prob(m, inputs),
                     [_image_spec("images", model)] + cond),
        "log_prob_uint8": (lambda m, inputs, xla: _log_prob(m, inputs),
                           [_image_spec("images", model, dtype=tf.uint8)] + cond),
        "sample": (_sample, draw + cond),
        "describe": describe,
    }
    if kind == "raster":
        specs["complete"] = (_complete, [_image_spec("images", model),
                                         _image_spec("mask", model)] + draw + cond)
    depth_spn = kind == "spn" and model.depth_condition_bits is not None
    if kind == "upscaling" or (kind == "spn" and model.slice_range[0] <= 1 and not depth_spn):
        factor = model.subscale_factor
        if factor > 1:
            specs["upscale_size"] = (_upscale_size, [_image_spec(
                "low_res", model, model.image_size // factor)] + draw + cond)
    if (kind == "upscaling" and model.depth_bits) or depth_spn:
        specs["upscale_depth"] = (_upscale_depth, [_image_spec("msb", model)] + draw + [
            spec for spec in cond if spec.name != "low_res"])
    if kind == "multiscale" and model.num_scales and not model.condition_on_base:
        specs["super_resolve"] = (_sample, [_image_spec(
            "low_res", model, model.image_size // 2)] + draw + cond)
    return specs


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
    config = model.get_config()
    return {
        "model": _kind(model), "class": type(model).__name__,
        "image_size": model.image_size, "channels": model.channels, "bits": model.bits,
        "cond": model.cond_spec,
        **{key: config[key] for key in ("subscale_factor", "depth_bits", "depth_condition_bits",
                                        "base_size", "condition_on_base", "num_frames")
           if key in config},
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
    export_dir = os.fspath(export_dir)
    if os.path.exists(export_dir) and os.listdir(export_dir):
        raise ValueError(f"export_dir {export_dir} already exists and is not empty; an export "
                         f"is never overwritten: choose another directory or version.")
    model.build()
    archive = keras.export.ExportArchive()
    archive.track(model)
    signature_io, signature_specs = {}, {}
    for name, (body, specs) in signatures(model).items():
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
    flags.DEFINE_string("model_dir", None, "Training run directory holding model.keras.")
    flags.DEFINE_string("export_base", "exports", "Directory of exported models.")
    flags.DEFINE_string("name", None, "Model name: writes <export_base>/<name>/<version>/.")
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
    flags.mark_flags_as_required(["model_dir", "name"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}; all options are --flags.")
    try:
        export_dir = export_run(FLAGS.model_dir, FLAGS.export_base, FLAGS.name, FLAGS.version,
                                FLAGS.xla, tuple(int(s) for s in FLAGS.warmup_batch_sizes))
    except ValueError as error:
        sys.exit(f"spn_tf.export: error: {error}")
    print(f"wrote {export_dir}")
    for line in describe(export_dir):
        print(f"  {line}")


if __name__ == "__main__":
    cli.run(main, define_flags)
