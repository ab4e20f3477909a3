"""One test harness for density models: every claim of the papers, stated once, for any kind.

keras-hub's `run_layer_test` pattern: `run_density_model_test(kind, **build_kwargs)` builds a
tiny model, perturbs its weights and checks each claim in `CLAIMS`. What it checks is read
from the model's own answers, never its class: `model.ordering` (the networks checked one by
one, their generation order, the sub-pixels they model, their tiny copy, their random
conditioning and `given` content), `model.export_module.signatures()` (what the SavedModel
serves, and the in-process body each signature runs), `model.example_shape` and
`model.coding_plan` (the codec). So a new kind, video included, gets every claim.

Claims (`check(claim, model, ...)` runs one; `spn_tf.check.model_checks` states the first
five, and the harness only asks it):
  * `normalization` — `sum_x p(x) = 1` over every image of each network's tiny copy (2x2 at
    1-2 bits), its weights perturbed;
  * `causality` — changing any sub-pixel changes no term generated at its step or earlier,
    bit for bit, for each network; every term sees some earlier sub-pixel;
  * `conditionals` — each probed conditional sums to 1 over its values; `log_prob` of a
    drawn sample is the sum of its terms;
  * `samples_follow` — each network's sampler follows its `log_prob` (G-test, tiny copy);
  * `compiled_equals_reference` — `mode="xla"` draws `mode="reference"`'s images;
  * `saved_model` — every signature of `spn_tf.export.export_model`, loaded with
    `tf.saved_model.load`, equals the same signature's body run in process (float outputs
    within float32 rounding; sampled images equal, i.e. `run_sampler(..., mode="graph")`
    with the same per-row seeds); the same requests and the export's warm-up records run in
    TensorFlow's C++ loader (`spn_tf.check.native_checks`: no Python in that process) equal
    the Python load; no signature's graph multiplies matrices with broadcast batch
    dimensions (`spn_tf.matmul_ranks`: oneDNN's heap corruption);
  * `codec` — `spn_tf.codec.decode(encode(x)) == x`;
  * `keras_round_trip` — save `.keras`, `keras.saving.load_model`: the same `log_prob` and
    the same samples for the same seed.
"""

import contextlib
import os
import tempfile

import keras
import numpy as np
import tensorflow as tf

from spn_tf import codec, export, matmul_ranks, models
from spn_tf.check import model_checks, native_checks

CLAIMS = ("normalization", "causality", "conditionals", "samples_follow",
          "compiled_equals_reference", "saved_model", "codec", "keras_round_trip")
GTEST_SAMPLES = 2000


def make_model(kind, seed=0, policy="float32", **build_kwargs):
    """`models.build(kind, preset="tiny", **build_kwargs)` with its weights perturbed, built
    under the Keras dtype policy `policy` (e.g. `mixed_bfloat16`: bfloat16 compute, float32
    variables, as `--mixed_precision` trains)."""
    build_kwargs.setdefault("preset", "tiny")
    with dtype_policy(policy):
        model = models.build(kind, **build_kwargs)
        return model_checks.perturb(model, np.random.default_rng(seed))


@contextlib.contextmanager
def dtype_policy(name):
    """Keras's global dtype policy is `name` inside the block (what a run sets for its whole
    process: the copies, loads and exports a claim makes follow the model's own)."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def _assert_passed(claim, verdicts):
    """Every verdict passes (an n/a is a failure: the harness is for models it can check)."""
    bad = [v for v in verdicts if v.status != "pass"]
    assert verdicts and not bad, f"{claim}: " + "; ".join(
        f"{v.check}: {v.status} ({v.detail})" for v in bad)


def _per_network(function):
    """A claim of `spn_tf.check.model_checks` run on each of the model's networks."""
    def claim(model, rng, **kwargs):
        verdicts = []
        for name, network in model.ordering.units:
            verdicts += function(name, network, rng, **kwargs)
        return verdicts
    return claim


def _request(model, specs, rng, batch=3):
    """Random inputs for a signature's `specs`: image-valued ones in the range the export
    module states, conditioning as the ordering draws it, per-row seeds, temperatures."""
    cond, _ = model.ordering.conditioning(batch, rng)
    feed = {}
    for spec in specs:
        name, shape = spec.name, [batch] + spec.shape.as_list()[1:]
        if name == "seed":
            value = np.stack([np.full(batch, 5), np.arange(batch)], 1)
        elif name == "temperature":
            value = np.array([1.0, 0.5, 0.0][:batch] + [1.0] * (batch - 3))
        elif len(shape) >= 4:  # images, clips, first frames, low_res, msb, first_slice, mask
            top = 2 ** model.export_module.input_value_bits(name)
            value = rng.integers(0, top, shape)
        elif name in cond:
            value = cond[name]
        elif spec.dtype == tf.string:
            value = np.array(["a photo"] * batch, object)
        elif spec.dtype.is_floating:
            value = rng.normal(size=shape)
        else:  # e.g. describe's `rows`
            value = np.zeros(shape)
        feed[name] = tf.constant(value, spec.dtype)
    return feed


def saved_model(model, rng, tmp_dir):
    """Every signature through the SavedModel equals its body run in process, the same
    requests and the warm-up records run in TensorFlow's C++ loader equal the Python load,
    and no signature's graph has a broadcasting matrix product."""
    path = export.export_model(model, os.path.join(tmp_dir, "export", "1"),
                               warmup_batch_sizes=(2,))
    loaded = tf.saved_model.load(path)
    served = model.export_module.signatures()
    assert {"log_prob", "sample"} <= set(served) <= set(loaded.signatures), (
        sorted(served), sorted(loaded.signatures))
    requests, products = [], 0
    for name, (body, specs) in served.items():
        inputs = _request(model, specs, rng)
        requests.append((name, {key: value.numpy() for key, value in inputs.items()}))
        got = loaded.signatures[name](**inputs)
        want = body(model, dict(inputs), False)
        assert set(got) >= set(want), (name, sorted(got), sorted(want))
        for key, value in want.items():
            value, result = np.asarray(value), got[key].numpy()
            message = f"signature {name!r}, output {key!r}"
            if np.issubdtype(value.dtype, np.floating):
                np.testing.assert_allclose(result, value, rtol=1e-5, atol=1e-5,
                                           err_msg=message)
            else:
                np.testing.assert_array_equal(result, value, err_msg=message)
        if "seed" in inputs:  # rows drawn, not copies: per-row seeds give different rows
            pixels = np.asarray(next(iter(want.values())))
            assert len({row.tobytes() for row in pixels}) > 1, f"{name}: every row the same"
        products += sum(matmul_ranks.assert_no_broadcast_matmul(
            loaded.signatures[name], f"signature {name}").counts.values())
    assert products, "the scan saw no matrix product"  # a scan of nothing passes vacuously
    _assert_passed("saved_model", native_checks.agreement(loaded, path, requests))


def _examples(model, rng, batch):
    """Random examples of the model's space and conditioning / `given` for `batch` rows."""
    examples = rng.integers(0, model.num_values, (batch,) + model.example_shape)
    cond, given = model.ordering.conditioning(batch, rng)
    return examples.astype(np.int32), cond or None, given


def codec_round_trip(model, rng, tmp_dir):
    del tmp_dir
    examples, cond, _ = _examples(model, rng, 3)
    data = codec.encode(model, examples, cond, batch_size=2)
    np.testing.assert_array_equal(codec.decode(model, data, cond), examples)


def keras_round_trip(model, rng, tmp_dir):
    path = os.path.join(tmp_dir, "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded) is type(model) and loaded.get_config() == model.get_config()
    examples, cond, given = _examples(model, rng, 3)
    np.testing.assert_array_equal(loaded.log_prob(examples, cond), model.log_prob(examples,
                                                                                  cond))
    draws = [m.sample(3, [3, 4], cond=cond, given=given, mode="graph").numpy()
             for m in (model, loaded)]
    np.testing.assert_array_equal(draws[1], draws[0])


CHECKS = {
    "normalization": _per_network(model_checks.normalization),
    "causality": lambda model, rng: _per_network(model_checks.causality)(model, rng, trials=3),
    "conditionals": _per_network(model_checks.conditionals),
    "samples_follow": lambda model, rng: _per_network(model_checks.samples_follow)(
        model, rng, num_samples=GTEST_SAMPLES),
    "compiled_equals_reference": lambda model, rng: model_checks.agreement(model, rng, seeds=3),
    "saved_model": saved_model,
    "codec": codec_round_trip,
    "keras_round_trip": keras_round_trip,
}
WITH_FILES = {"saved_model", "codec", "keras_round_trip"}  # take a directory, assert directly


def check(claim, model, seed=0, tmp_dir=None):
    """Checks one claim of `CLAIMS` on `model` (AssertionError naming the claim if it fails)."""
    rng = np.random.default_rng(seed)
    with dtype_policy(model.dtype_policy.name):
        if claim not in WITH_FILES:
            _assert_passed(claim, CHECKS[claim](model, rng))
        elif tmp_dir is None:
            with tempfile.TemporaryDirectory() as tmp_dir:
                CHECKS[claim](model, rng, tmp_dir)
        else:
            CHECKS[claim](model, rng, str(tmp_dir))


def run_density_model_test(kind, claims=CLAIMS, seed=0, tmp_dir=None, **build_kwargs):
    """Every claim of `claims` on a tiny `kind` model (`make_model`); returns the model.

    Example:
      >>> run_density_model_test("raster", image_size=4, channels=1, bits=2)
    """
    model = make_model(kind, seed, **build_kwargs)
    for claim in claims:
        try:
            check(claim, model, seed, tmp_dir)
        except AssertionError as error:
            raise AssertionError(f"{kind} {build_kwargs}: {claim}: {error}") from error
    return model
