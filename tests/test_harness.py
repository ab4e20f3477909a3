"""The density-model harness (`tests/harness.py`) on every kind, both heads and each kind of
conditioning: one test per (case, claim), so a failure names both."""

import pytest

import harness

# Tiny models; together: every kind, both heads, 1 and 3 channels, attention, type A and B
# multiscale groups, depth upscaling, and label / embedding / text / action conditioning.
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


@pytest.mark.parametrize("claim", harness.CLAIMS)
@pytest.mark.parametrize("case", list(CASES))
def test_claim(case, claim, model_of, tmp_path):
    harness.check(claim, model_of(case), tmp_dir=tmp_path)


def test_the_cases_cover_every_kind_head_and_conditioning():
    from spn_tf import models
    assert {c["kind"] for c in CASES.values()} >= set(models.MODELS) - {"attentive_raster"}
    assert {c.get("head", "categorical") for c in CASES.values()} == {
        "categorical", "logistic_mixture"}
    assert {k for c in CASES.values() for k in c.get("cond") or {}} == {
        "label", "embedding", "text", "action"}
