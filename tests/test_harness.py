"""The density-model harness (`tests/harness.py`) on every kind, both heads and each kind of
conditioning: one test per (case, claim), so a failure names both."""

import contextlib

import pytest

import harness

# Tiny models; together: every kind, both heads, 1 and 3 channels, attention, type A and B
# multiscale groups, depth upscaling, the SPN's half-resolution slice embedder, bfloat16
# compute (`--mixed_precision`), and label / embedding / text / action conditioning.
CASES = {
    "raster": dict(kind="raster", image_size=4, channels=1, bits=2, cond={"label": 3}),
    "raster_rgb_attention": dict(kind="raster", image_size=2, channels=3, bits=1,
                                 attention_layers=(0,)),
    "raster_mixture_5bit": dict(kind="raster", image_size=2, channels=3, bits=5,
                                head="logistic_mixture", num_mixtures=2),
    "spn": dict(kind="spn", image_size=4, channels=3, bits=2, subscale_factor=2,
                attention_layers=(0,), cond={"embedding": 4}),
    "spn_text": dict(kind="spn", image_size=4, channels=1, bits=2, subscale_factor=2,
                     cond={"text": 12}),
    "spn_half_embedder": dict(kind="spn", image_size=8, channels=1, bits=2, subscale_factor=2,
                              embedder_half_resolution=True, cond={"label": 3}),
    "spn_bfloat16": dict(kind="spn", image_size=4, channels=1, bits=2, subscale_factor=2,
                         attention_layers=(0,), policy="mixed_bfloat16", cond={"label": 3}),
    "spn_depth": dict(kind="spn", image_size=4, channels=1, bits=2, subscale_factor=2,
                      msb_bits=1, cond={"label": 2}),
    "upscaling": dict(kind="upscaling", image_size=4, channels=1, bits=2, subscale_factor=2,
                      msb_bits=1, cond={"label": 3}),
    "multiscale": dict(kind="multiscale", image_size=4, channels=3, bits=2, base_size=2,
                       cond={"label": 3}),
    "multiscale_b": dict(kind="multiscale", image_size=4, channels=1, bits=1, base_size=1,
                         group_pixelcnn_patch=2),
    "multiscale_mixture": dict(kind="multiscale", image_size=4, channels=1, bits=3,
                               base_size=2, head="logistic_mixture", num_mixtures=2),
    "multiscale_video": dict(kind="multiscale_video", image_size=4, channels=1, bits=2,
                             cond={"action": 2}, num_frames=3, base_size=2),
}


@pytest.fixture(scope="module")
def model_of():
    cache = {}

    def get(case):
        if case not in cache:
            cache[case] = harness.make_model(**CASES[case])
        return cache[case]

    return get


# bfloat16 compute keeps every claim but one: its sampler (the cached loop's windows) and
# `log_prob` (whole images) compute the same logits through ops of other shapes, which round
# differently in bfloat16's 8 bits; on the harness's sharpened tiny copies the G-test at 2000
# samples sees that gap (measured: 2 of 6 weight draws fail, p < 1e-4; 0 of 6 in float32 with
# the same weights). BUILD_NOTES.md (Checks and tests) says so; `model.keras` loads in float32.
NOT_CLAIMED = {("spn_bfloat16", "samples_follow")}


@pytest.mark.parametrize("case, claim", [(case, claim) for case in CASES
                                         for claim in harness.CLAIMS
                                         if (case, claim) not in NOT_CLAIMED])
def test_claim(case, claim, model_of, tmp_path):
    harness.check(claim, model_of(case), tmp_dir=tmp_path)


def test_the_cases_cover_every_kind_head_and_conditioning():
    from spn_tf import models
    assert {c["kind"] for c in CASES.values()} >= set(models.MODELS) - {"attentive_raster"}
    assert {c.get("head", "categorical") for c in CASES.values()} == {
        "categorical", "logistic_mixture"}
    assert {k for c in CASES.values() for k in c.get("cond") or {}} == {
        "label", "embedding", "text", "action"}


# One mutation per claim, each shown to fail it. Normalization, causality, conditionals and
# samples_follow are `spn_tf.check.model_checks`'s, which the harness only asks: their
# mutations (an unmasked centre tap, an even kernel, attention without its shift, a group
# reading itself, a sampler at the wrong temperature) are in tests/test_check.py.

def _shifted(model):
    """`model` with each weight moved by 0.1: another model of the same config."""
    model.set_weights([w + 0.1 for w in model.get_weights()])
    return model


@contextlib.contextmanager
def _shifted_within(model):
    """`_shifted(model)` inside the block, its own weights back after it."""
    weights = model.get_weights()
    try:
        yield _shifted(model)
    finally:
        model.set_weights(weights)


def test_a_compiled_sampler_on_other_seeds_fails_compiled_equals_reference(monkeypatch):
    model = harness.make_model(**CASES["raster"])
    sample = type(model).sample

    def other_seed(self, batch_size, seed=0, *args, mode="reference", **kwargs):
        if mode == "xla":
            seed = [seed[0] + 1, seed[1]]
        return sample(self, batch_size, seed, *args, mode=mode, **kwargs)

    monkeypatch.setattr(type(model), "sample", other_seed)
    with pytest.raises(AssertionError, match="compiled = reference"):
        harness.check("compiled_equals_reference", model)


def test_an_export_of_other_weights_fails_saved_model(monkeypatch, tmp_path):
    model = harness.make_model(**CASES["raster"])
    export_model = harness.export.export_model

    def stale(model, path, **kwargs):  # exports weights the in-process model does not have
        with _shifted_within(model):
            return export_model(model, path, **kwargs)

    monkeypatch.setattr(harness.export, "export_model", stale)
    with pytest.raises(AssertionError, match="signature"):
        harness.check("saved_model", model, tmp_dir=tmp_path)


def test_decoding_with_other_weights_fails_codec(monkeypatch):
    model = harness.make_model(**CASES["raster"])
    decode = harness.codec.decode

    def other_model(model, data, cond):
        with _shifted_within(model):
            return decode(model, data, cond)

    monkeypatch.setattr(harness.codec, "decode", other_model)
    with pytest.raises((AssertionError, ValueError)):  # the CRC refuses, or pixels differ
        harness.check("codec", model)


def test_a_load_that_loses_the_weights_fails_keras_round_trip(monkeypatch):
    model = harness.make_model(**CASES["raster"])
    load_model = harness.keras.saving.load_model
    monkeypatch.setattr(harness.keras.saving, "load_model",
                        lambda path: _shifted(load_model(path)))
    with pytest.raises(AssertionError):
        harness.check("keras_round_trip", model)


def test_the_bfloat16_case_computes_in_bfloat16_with_float32_variables(model_of):
    model = model_of("spn_bfloat16")
    layers = [layer for layer in model._flatten_layers() if layer.weights]
    assert {layer.compute_dtype for layer in layers} == {"bfloat16"}
    assert {weight.dtype for weight in model.weights} == {"float32"}
