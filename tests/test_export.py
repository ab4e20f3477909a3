"""SavedModel export: every signature of every model kind, exact through the SavedModel, listed
by `saved_model_cli`, checked inputs, and the export CLI."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import prediction_log_pb2

from spn_tf import export, models, warmup
import helpers as testing

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEEDS = np.array([[0, 1], [7, 2], [3, 9]], np.int32)
# Small warm-up batches keep these exports cheap; the default sizes (those of
# export/batching_parameters.txt) are checked on the CLI's export.
WARMUP_BATCH_SIZES = (1, 2)
TEMPERATURES = np.array([1.0, 0.5, 0.0], np.float32)

# One tiny model per kind; together they cover label, embedding, low_res and msb inputs.
KINDS = {
    "raster": dict(name="raster", image_size=2, bits=2, cond={"label": 3}),
    "spn": dict(name="spn", image_size=2, bits=2, cond={"embedding": 4}, subscale_factor=2),
    "upscaling": dict(name="upscaling", image_size=2, bits=2, subscale_factor=2, msb_bits=1),
    "multiscale": dict(name="multiscale", image_size=4, bits=1, base_size=2),
    # Type B groups (the paper preset's): a patch PixelCNN inside each group.
    "multiscale_b": dict(name="multiscale", image_size=4, bits=1, base_size=2,
                         group_pixelcnn_patch=2),
    "spn_depth": dict(name="spn", image_size=2, bits=1, cond={"label": 2}, subscale_factor=2,
                      msb_bits=1),
}
SIGNATURES = {
    "raster": {"log_prob", "log_prob_uint8", "sample", "describe", "complete"},
    "spn": {"log_prob", "log_prob_uint8", "sample", "describe", "upscale_size"},
    "upscaling": {"log_prob", "log_prob_uint8", "sample", "describe", "upscale_size",
                  "upscale_depth"},
    "multiscale": {"log_prob", "log_prob_uint8", "sample", "describe", "super_resolve"},
    "multiscale_b": {"log_prob", "log_prob_uint8", "sample", "describe", "super_resolve"},
    "spn_depth": {"log_prob", "log_prob_uint8", "sample", "describe", "upscale_depth"},
}


def _model(kind):
    model = models.build(channels=1, preset="tiny", **KINDS[kind])
    return testing.sharpen(model, 5.0)  # far from uniform: the sampling test has power


def _image(model, side, bits, rng, batch=3):
    return rng.integers(0, 2 ** bits, (batch, side, side, model.channels)).astype(np.int32)


def requests(model, seeds=SEEDS, temperatures=TEMPERATURES):
    """`{signature: inputs}`, one request per signature of `model`, `len(seeds)` rows each."""
    rng = np.random.default_rng(0)
    batch, size = len(seeds), model.image_size
    cond, _ = model.ordering.conditioning(batch, rng)
    draw = {"seed": seeds, "temperature": temperatures, **cond}
    images = _image(model, size, model.bits, rng, batch)
    out = {"log_prob": {"images": images, **cond},
           "log_prob_uint8": {"images": images.astype(np.uint8), **cond},
           "sample": draw}
    if isinstance(model, models.GatedPixelCNN):
        mask = np.zeros_like(images)
        mask[:, :size // 2] = 1
        out["complete"] = {"images": images, "mask": mask, **draw}
    upscaling = isinstance(model, models.MultidimensionalUpscaling)
    if hasattr(model, "subscale_factor") and (upscaling or not model.msb_bits):
        out["upscale_size"] = {"first_slice": _image(model, size // model.subscale_factor,
                                                     model.export_module.input_value_bits("first_slice"), rng,
                                                     batch), **draw}
    if getattr(model, "msb_bits", None):
        msb = _image(model, size, model.export_module.input_value_bits("msb"), rng, batch)
        out["upscale_depth"] = {"msb": msb, **{k: v for k, v in draw.items() if k != "msb"}}
    if hasattr(model, "base_size"):
        out["super_resolve"] = {"low_res": _image(model, size // 2, model.bits, rng, batch),
                                **draw}
    return out


def in_process(model, signature, inputs, row):
    """What the in-process model gives for row `row` of a request (`model.sample(1, ...)`)."""
    one = {k: v[row:row + 1] for k, v in inputs.items()}
    upscaling = isinstance(model, models.MultidimensionalUpscaling)
    cond = {k: one[k] for k in ("label", "embedding", "low_res", "msb") if k in one}
    given = None
    if signature == "complete":
        given = {"images": one["images"], "mask": one["mask"].astype(bool)}
    elif signature == "upscale_size" and upscaling and model.msb_bits:
        first = one["first_slice"]  # the first slice at the top bits: exact given["msb"]
        msb = np.zeros((1,) + (model.image_size,) * 2 + (model.channels,), np.int32)
        msb[:, ::model.subscale_factor, ::model.subscale_factor] = first
        given = {"msb": msb, "num_slices": 1}
    elif signature == "upscale_size":
        given = {"first_slice": one["first_slice"]}
    elif signature == "upscale_depth" and upscaling:
        given = {"msb": cond.pop("msb")}
    return model.sample(1, one["seed"][0], float(one["temperature"][0]), cond or None,
                        given).numpy()[0]


def _call(loaded, signature, inputs):
    return {k: v.numpy() for k, v in loaded.signatures[signature](
        **{k: tf.constant(v) for k, v in inputs.items()}).items()}


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """`exports(kind, xla=False)` → `(model, export_dir, loaded SavedModel)`, exported once."""
    base, cache = tmp_path_factory.mktemp("exports"), {}

    def get(kind, xla=False):
        if kind not in cache:
            cache[kind] = _model(kind)
        if (kind, xla) not in cache:
            export_dir = export.export_model(cache[kind], str(base / f"{kind}-{xla}"), xla,
                                             WARMUP_BATCH_SIZES)
            cache[kind, xla] = (cache[kind], export_dir, tf.saved_model.load(export_dir))
        return cache[kind, xla]

    return get


@pytest.fixture(params=sorted(KINDS))
def exported(request, exports):
    return (request.param,) + exports(request.param)


def test_signatures_and_metadata(exported):
    kind, model, export_dir, loaded = exported
    assert set(loaded.signatures) == SIGNATURES[kind] | {"serving_default"}
    with open(os.path.join(export_dir, export.METADATA_FILE)) as f:
        info = json.load(f)
    assert (info["model"], info["image_size"], info["channels"], info["bits"]) == (
        KINDS[kind]["name"], model.image_size, 1, model.bits)
    assert info["cond"] == model.cond_spec and set(info["signatures"]) == SIGNATURES[kind]
    for name, io in info["signatures"].items():
        function = loaded.signatures[name]
        assert {k: _describe(v) for k, v in function.structured_input_signature[1].items()} == (
            io["inputs"])
        assert {k: _describe(v) for k, v in function.structured_outputs.items()} == io["outputs"]


def _describe(tensor):
    return {"shape": [-1 if d is None else d for d in tensor.shape.as_list()],
            "dtype": tensor.dtype.name}


def test_log_prob_is_exact_and_normalized_through_the_saved_model(exported):
    _, model, _, loaded = exported
    images = testing.all_images(model.image_size, model.image_size, 1, model.bits)
    cond = {k: np.repeat(v[:1], len(images), 0)
            for k, v in model.ordering.conditioning(1, np.random.default_rng(1))[0].items()}
    log_prob = np.concatenate([
        _call(loaded, "log_prob", {"images": images[i:i + 4096],
                                   **{k: v[i:i + 4096] for k, v in cond.items()}})["log_prob"]
        for i in range(0, len(images), 4096)])
    assert abs(np.exp(log_prob.astype(np.float64)).sum() - 1.0) < 1e-4
    expected = testing.batched_log_prob(model, images, cond or None)
    np.testing.assert_allclose(log_prob, expected, rtol=1e-5)
    head = {"images": images[:5], **{k: v[:5] for k, v in cond.items()}}
    # Same rows, same batch shape: the uint8 signature must agree bit for bit with the float
    # one (a different batch size may pick other kernels and round the last bit differently).
    as_float = _call(loaded, "log_prob", head)["log_prob"]
    np.testing.assert_allclose(as_float, log_prob[:5], rtol=1e-6)
    as_uint8 = _call(loaded, "log_prob_uint8", {**head, "images": images[:5].astype(np.uint8)})
    np.testing.assert_array_equal(as_uint8["log_prob"], as_float)
    np.testing.assert_allclose(as_uint8["bits_per_dim"],
                               -as_float / (model.num_dims * np.log(2)), rtol=1e-6)


def test_rows_draw_from_their_own_seed_whatever_the_batch(exported):
    # Changing one row's seed never changes another row's draw; and a row requested alone
    # draws what it draws in the batch (same noise; batched rounding could flip a rare row,
    # never seen on these tiny models).
    _, model, _, loaded = exported
    for signature, inputs in requests(model).items():
        if "seed" not in inputs:
            continue
        batched = _call(loaded, signature, inputs)["images"]
        reseeded = dict(inputs, seed=inputs["seed"] + np.int32([[0, 0], [5, 5], [0, 0]]))
        after = _call(loaded, signature, reseeded)["images"]
        np.testing.assert_array_equal(after[[0, 2]], batched[[0, 2]], err_msg=signature)
        for row in range(len(SEEDS)):
            alone = _call(loaded, signature, {k: v[row:row + 1] for k, v in inputs.items()})
            np.testing.assert_array_equal(alone["images"][0], batched[row], err_msg=signature)


def test_batched_rows_agree_with_model_sample_of_one_row(exports):
    # The contract's figure on a tiny model: one call of 1,000 rows against
    # `model.sample(1, seed[i])` (compiled, batch 1): same noise, batched graph arithmetic
    # against batch-1 XLA arithmetic. benchmarks/agreement.py --rows measures the presets.
    model, _, loaded = exports("multiscale")
    rows = 1000
    seeds = np.stack([np.full(rows, 4), np.arange(rows)], 1).astype(np.int32)
    batched = _call(loaded, "sample", {"seed": seeds,
                                       "temperature": np.ones(rows, np.float32)})["images"]
    alone = np.concatenate([model.sample(1, seed).numpy() for seed in seeds])
    agreement = np.mean(np.all(batched == alone, axis=(1, 2, 3)))
    assert agreement >= 0.99, agreement
    # The rows are draws, not copies of one (the sharpened model has few likely images).
    assert len(np.unique(batched.reshape(rows, -1), axis=0)) > 1


def test_warm_up_requests_are_prediction_logs_for_every_signature_and_batch_size(exported):
    kind, model, export_dir, loaded = exported
    path = os.path.join(export_dir, warmup.WARMUP_FILE)
    logs = [prediction_log_pb2.PredictionLog.FromString(record)
            for record in tf.data.TFRecordDataset(path).as_numpy_iterator()]
    requested = {(log.predict_log.request.model_spec.signature_name,
                  tf.make_ndarray(next(iter(log.predict_log.request.inputs.values()))).shape[0])
                 for log in logs}
    assert len(logs) == len(requested)
    assert requested == {(name, batch) for name in SIGNATURES[kind]
                         for batch in WARMUP_BATCH_SIZES}
    assert warmup.replay(loaded, export_dir) == len(logs)  # every request runs


def test_saved_model_cli_lists_every_signature(exports):
    # TensorFlow's own inspector on each export, in one fresh process with no spn_tf (its
    # absl flags stay out of this one's). That an export loads and runs every signature with
    # no spn_tf, indeed with no Python, in TensorFlow's C++ loader, is the harness's
    # `saved_model` claim.
    script = textwrap.dedent("""
        import sys
        sys.modules["spn_tf"] = None  # `import spn_tf` fails from here on
        from tensorflow.python.tools import saved_model_cli
        for export_dir in sys.argv[1:]:
            print("=== " + export_dir, flush=True)
            sys.argv = ["saved_model_cli", "show", "--dir", export_dir, "--all"]
            try:
                saved_model_cli.main()
            except SystemExit as done:  # it ends with absl's app.run: go on to the next
                assert not done.code, done.code
            sys.stdout.flush()
    """)
    dirs = [exports(kind)[1] for kind in sorted(KINDS)]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-c", script, *dirs], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    shown = dict(block.split("\n", 1) for block in result.stdout.split("=== ")[1:])
    assert sorted(shown) == sorted(dirs)
    for export_dir in dirs:
        _assert_lists_signatures(shown[export_dir], export_dir)


def test_every_signature_row_equals_model_sample_of_that_row(exports):
    # Each sampling signature's rows against the in-process verbs (`model.sample(1, seed,
    # temperature, cond, given)`, compiled, batch 1): the same images.
    for kind in sorted(KINDS):
        model, _, loaded = exports(kind)
        for signature, inputs in requests(model).items():
            if "seed" not in inputs:
                continue
            images = _call(loaded, signature, inputs)["images"]
            for row in range(len(SEEDS)):
                np.testing.assert_array_equal(images[row],
                                              in_process(model, signature, inputs, row),
                                              err_msg=f"{kind} {signature} row {row}")


def _assert_lists_signatures(shown, export_dir):
    """`saved_model_cli show --all`'s output lists every documented name, shape and dtype."""
    with open(os.path.join(export_dir, export.METADATA_FILE)) as f:
        info = json.load(f)
    blocks = {b.split("']", 1)[0]: b.split("\n\n")[0] for b in shown.split("signature_def['")}
    for name, io in info["signatures"].items():
        for key, spec in {**io["inputs"], **io["outputs"]}.items():
            dtype = types_pb2.DataType.Name(tf.as_dtype(spec["dtype"]).as_datatype_enum)
            shape = "(" + ", ".join(str(d) for d in spec["shape"]) + ")"
            assert f"['{key}'] tensor_info:\n        dtype: {dtype}\n        shape: {shape}" in (
                blocks[name]), (name, key, blocks[name])
    without_names = lambda block: [line for line in block.split("\n")[1:]
                                   if line.startswith("    ") and "name:" not in line]
    assert without_names(blocks["serving_default"]) == without_names(blocks["log_prob"])


def test_xla_export_gives_the_same_values(exports):
    # The SPN: embedder, slices and cached raster loops, all inside XLA.
    model, _, graph = exports("spn")
    _, _, xla = exports("spn", xla=True)
    for signature, inputs in requests(model).items():
        for key, value in _call(graph, signature, inputs).items():
            np.testing.assert_array_equal(_call(xla, signature, inputs)[key], value,
                                          err_msg=signature)


def test_bad_inputs_raise_invalid_argument_naming_the_input(exported):
    _, model, _, loaded = exported
    reqs = requests(model)
    top = 2 ** model.bits
    bad = [("log_prob", "images", lambda x: x + top,
            rf"images values must be in \[0, {top}\).*; got\] \[\d+\] \[at row\] \[0\]"),
           ("log_prob", "images", lambda x: x - top, "images values must be in"),
           ("sample", "temperature", lambda x: -x - 1, "temperature values must be"),
           ("sample", "seed", lambda x: x[:2], "batch mismatch: temperature and seed")]
    if "label" in model.cond_spec:
        classes = model.cond_spec["label"]
        bad.append(("log_prob", "label", lambda x: x + classes,
                    rf"label values must be class ids in \[0, {classes}\)"))
    if "embedding" in model.cond_spec:
        bad.append(("sample", "embedding", lambda x: x[:1], "batch mismatch: embedding and seed"))
    for signature, key in (("upscale_size", "first_slice"), ("super_resolve", "low_res"),
                           ("log_prob", "low_res"), ("log_prob", "msb")):
        if key in reqs.get(signature, {}):
            bad.append((signature, key, lambda x: x + top, f"{key} values must be in"))
    if "upscale_depth" in reqs:
        bad.append(("upscale_depth", "msb", lambda x: x + 2, r"msb values must be in \[0, 2\)"))
    if "complete" in reqs:
        bad.append(("complete", "mask", lambda x: x + 1, r"mask values must be in \[0, 2\)"))
    for signature, key, change, message in bad:
        inputs = {**reqs[signature], key: change(reqs[signature][key])}
        with pytest.raises(tf.errors.InvalidArgumentError, match=message):
            _call(loaded, signature, inputs)
    with pytest.raises(tf.errors.InvalidArgumentError, match="empty batch: images has no rows"):
        _call(loaded, "log_prob", {k: v[:0] for k, v in reqs["log_prob"].items()})
    # Still answers correct requests afterwards.
    _call(loaded, "log_prob", reqs["log_prob"])


def _export_cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "spn_tf.export", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "2"})


def test_cli_writes_versions_and_never_overwrites(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    model = models.build("raster", 2, channels=1, bits=1, preset="tiny")
    model.build()
    model.save(str(run / "model.keras"))
    result = _export_cli(f"--model_dir={run}", "--export_base=exports", "--model_name=tiny",
                         cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    first = os.path.join("exports", "tiny", "1")
    assert f"wrote {first}" in result.stdout and "sample(seed: int32 [-1, 2]" in result.stdout
    warm = warmup.read(str(tmp_path / first))  # the default: every signature at 1, 8 and 32
    assert sorted((name, len(next(iter(inputs.values())))) for name, inputs in warm) == sorted(
        (name, batch)
        for name in ("log_prob", "log_prob_uint8", "sample", "describe", "complete")
        for batch in warmup.BATCH_SIZES)
    assert export.next_version(str(tmp_path / "exports"), "tiny") == 2
    second = export.export_run(str(run), str(tmp_path / "exports"), "tiny")
    assert second.endswith(os.path.join("tiny", "2"))
    images = testing.all_images(2, 2, 1, 1)
    for version in ("1", "2"):
        loaded = tf.saved_model.load(str(tmp_path / "exports" / "tiny" / version))
        np.testing.assert_allclose(_call(loaded, "log_prob", {"images": images})["log_prob"],
                                   model.log_prob(images), rtol=1e-5)
    mtime = os.path.getmtime(tmp_path / first / "saved_model.pb")
    result = _export_cli(f"--model_dir={run}", "--export_base=exports", "--model_name=tiny",
                         "--version=1", cwd=tmp_path)
    assert result.returncode != 0 and "version 1 of 'tiny' already exists" in result.stderr
    assert os.path.getmtime(tmp_path / first / "saved_model.pb") == mtime
    result = _export_cli(f"--model_dir={tmp_path / 'nowhere'}", "--model_name=tiny", cwd=tmp_path)
    assert result.returncode != 0 and "no checkpoint at" in result.stderr
    (run / "model.keras").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a complete .keras archive"):
        export.export_run(str(run), str(tmp_path / "exports"), "tiny")
    with pytest.raises(ValueError, match="already exists and is not empty"):
        export.export_model(model, str(tmp_path / first))
