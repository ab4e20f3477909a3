"""No reachable setting breaks exactness: random valid configurations of every model kind are
exactly normalized and exactly causal (the checks read from each model's `ordering`, never its
class); invalid ones fail at construction; and the checks catch an even kernel when validation
is bypassed (the property test has power)."""

import numpy as np
import pytest

from spn_tf import hparams, models
import harness
import helpers as testing

SEED = 2026


def _choice(rng, options):
    return options[int(rng.integers(len(options)))]


def _subset(rng, n):
    return tuple(i for i in range(n) if rng.random() < 0.5)


def _features(rng, channels):
    # Not too narrow: the causality check also asks that every allowed dependency be non-zero.
    return channels * int(rng.integers(3, 6)) if channels == 1 else 3 * int(rng.integers(2, 5))


def _decoder(rng, channels):
    num_layers = int(rng.integers(1, 4))
    return dict(filters=_features(rng, channels), num_layers=num_layers,
                kernel_size=_choice(rng, (1, 3, 5)), first_kernel_size=_choice(rng, (3, 5)),
                attention_layers=_subset(rng, num_layers))


def _cond(rng):
    return {"label": 3} if rng.random() < 0.5 else None


# Spaces per head (the logistic mixture takes 2 bits or more, in every network of a model).
# raster: (image_size, channels, bits): at most 2**12 images to enumerate.
# spn: (image_size, subscale_factor, channels, bits)
# upscaling: (image_size, subscale_factor, channels, bits, msb_bits)
# multiscale: (image_size, channels, bits, base_size)
SPACES = {
    "categorical": {
        "raster": [(2, 1, 1), (2, 1, 2), (2, 1, 3), (2, 3, 1), (3, 1, 1), (1, 3, 2)],
        "spn": [(2, 1, 1, 2), (2, 2, 1, 2), (2, 2, 3, 1), (3, 1, 1, 1), (3, 3, 1, 1),
                (2, 1, 3, 1)],
        "upscaling": [(2, 2, 1, 2, 1), (2, 2, 1, 2, None), (2, 1, 1, 3, 2), (1, 1, 3, 2, 1),
                      (2, 2, 1, 3, 1), (2, 2, 3, 1, None)],
        "multiscale": [(2, 1, 2, 1), (2, 3, 1, 1), (2, 1, 2, 2), (4, 1, 1, 2), (4, 1, 1, 1),
                       (2, 1, 3, 1)],
    },
    "logistic_mixture": {
        "raster": [(2, 1, 2), (2, 1, 3), (1, 3, 2), (1, 3, 4)],
        "spn": [(2, 2, 1, 2), (2, 1, 1, 3), (2, 2, 1, 3), (1, 1, 3, 3)],
        "upscaling": [(1, 1, 3, 4, 2), (2, 2, 1, 3, None), (2, 2, 1, 2, None)],
        "multiscale": [(2, 1, 2, 1), (2, 1, 3, 1), (2, 1, 2, 2), (2, 1, 3, 2)],
    },
}


def random_configs(per_kind=7, seed=SEED, head="categorical"):
    """`(kind, image_size, channels, bits, cond, overrides)` drawn from seeded valid spaces of
    `head`'s models."""
    rng = np.random.default_rng(seed)
    spaces = SPACES[head]
    configs = []
    for _ in range(per_kind):
        size, c, bits = _choice(rng, spaces["raster"])
        configs.append(("raster", size, c, bits, _cond(rng), _decoder(rng, c)))

        size, s, c, bits = _choice(rng, spaces["spn"])
        spn = dict(_decoder(rng, c), subscale_factor=s, num_heads=int(rng.integers(1, 3)),
                   key_dim=_choice(rng, (1, 2, 4)), embedder_filters=_choice(rng, (4, 8)),
                   embedder_layers=int(rng.integers(0, 3)),
                   embedder_kernel_size=_choice(rng, (1, 3)),
                   embedder_half_resolution=bool(rng.random() < 0.5))
        if bits < 8 and rng.random() < 0.3:
            spn["msb_bits"] = 1
        configs.append(("spn", size, c, bits, _cond(rng), spn))

        size, s, c, bits, depth = _choice(rng, spaces["upscaling"])
        up = dict(_decoder(rng, c), subscale_factor=s, msb_bits=depth,
                  embedder_filters=_choice(rng, (4, 8)), embedder_layers=int(rng.integers(0, 2)))
        if rng.random() < 0.3:
            up["part_overrides"] = {"first": {"filters": c * 2, "kernel_size": 5}}
        configs.append(("upscaling", size, c, bits, _cond(rng), up))

        size, c, bits, base = _choice(rng, spaces["multiscale"])
        patch = _choice(rng, (0, 0, 1, 2))
        configs.append(("multiscale", size, c, bits, _cond(rng), dict(
            base_size=base, filters=_features(rng, c) * 2, num_blocks=int(rng.integers(0, 2)),
            kernel_size=_choice(rng, (1, 3)), base_filters=_features(rng, c),
            base_layers=int(rng.integers(1, 3)), base_first_kernel_size=_choice(rng, (3, 5)),
            group_pixelcnn_patch=patch, group_pixelcnn_layers=int(rng.integers(1, 3)),
            group_pixelcnn_filters=_features(rng, c))))
    if head != "categorical":
        for config in configs:
            config[5].update(head=head, num_mixtures=int(rng.integers(1, 4)))
    return configs


def assert_exact(model):
    """Exact normalization of `model` itself (every image summed, its conditioning from
    `model.ordering`, `msb` included) and the harness's causality of each of its networks."""
    cond, _ = model.ordering.conditioning(1, np.random.default_rng(0))
    testing.assert_normalized(testing.sharpen(model, 2.0), cond or None)
    harness.check("causality", model)


CONFIGS = random_configs()
MIXTURE_CONFIGS = random_configs(per_kind=3, seed=SEED + 1, head="logistic_mixture")


@pytest.mark.parametrize("configs,chunk", [(CONFIGS, i) for i in range(4)]
                         + [(MIXTURE_CONFIGS, i) for i in range(4)],
                         ids=[f"categorical-{i}" for i in range(4)]
                         + [f"logistic_mixture-{i}" for i in range(4)])
def test_random_valid_configurations_are_exact(configs, chunk):
    """28 seeded configurations (7 per kind) with the categorical head and 12 (3 per kind)
    with the logistic mixture, a quarter per test so a failure names fewer."""
    kinds = set()
    for kind, size, channels, bits, cond, overrides in configs[chunk::4]:
        model = models.build(kind, size, channels=channels, bits=bits, preset="tiny", cond=cond,
                             **overrides)
        try:
            assert_exact(model)
        except AssertionError as error:
            raise AssertionError(f"{kind} {size}x{size}x{channels} at {bits} bits, cond={cond}, "
                                 f"{overrides}: {error}") from error
        kinds.add(kind)
    assert len(kinds) == 1  # CONFIGS cycles through the four kinds


def test_the_draws_cover_every_kind_and_the_risky_settings():
    kinds = [c[0] for c in CONFIGS]
    assert {k: kinds.count(k) for k in set(kinds)} == {
        "raster": 7, "spn": 7, "upscaling": 7, "multiscale": 7}
    overrides = [c[5] for c in CONFIGS]
    assert {o.get("kernel_size") for o in overrides} >= {1, 3, 5}
    assert any(o.get("attention_layers") for o in overrides)
    assert any(o.get("group_pixelcnn_patch") for o in overrides)
    assert any(o.get("msb_bits") for o in overrides)
    assert {o.get("embedder_half_resolution") for o in overrides} >= {False, True}
    assert any(c[4] for c in CONFIGS) and any(c[2] == 3 for c in CONFIGS)
    # The mixture: every kind, three channels (masks between channels) and 1-3 components.
    assert {c[0] for c in MIXTURE_CONFIGS} == {"raster", "spn", "upscaling", "multiscale"}
    assert any(c[2] == 3 for c in MIXTURE_CONFIGS)
    assert len({c[5]["num_mixtures"] for c in MIXTURE_CONFIGS}) > 1


@pytest.mark.parametrize("kind,overrides", [
    ("raster", dict(kernel_size=4, first_kernel_size=4)),
    ("spn", dict(subscale_factor=1, first_kernel_size=4)),
    ("multiscale", dict(base_size=2, base_first_kernel_size=4)),
])
def test_checks_catch_an_even_kernel_when_validation_is_bypassed(kind, overrides, monkeypatch):
    """The property test has power: the leak of issue 11 (sum of p(x) 1.36) fails both
    checks once the validator is switched off, and validation stops it otherwise."""
    build = lambda: models.build(kind, 2, channels=1, bits=2, preset="tiny",  # noqa: E731
                                 **overrides)
    with pytest.raises(ValueError, match="must be a positive odd int"):
        build()
    monkeypatch.setattr(hparams, "check_odd_kernel", lambda name, kernel_size, why=None: None)
    model = build()
    with pytest.raises(AssertionError, match="sum of p"):
        testing.assert_normalized(model)
    with pytest.raises(AssertionError, match="causality"):
        harness.check("causality", model)


@pytest.mark.parametrize("kind,channels,overrides,match", [
    ("raster", 1, dict(kernel_size=4), "kernel_size=4 must be a positive odd int"),
    ("raster", 1, dict(first_kernel_size=2), "first_kernel_size=2"),
    ("raster", 1, dict(first_kernel_size=1), "first_kernel_size=1 must be >= 3"),
    ("raster", 3, dict(filters=4), "filters=4 must be a multiple of 3"),
    ("raster", 1, dict(num_layers=0), "num_layers=0"),
    ("raster", 1, dict(attention_layers=(1,)), r"attention_layers=\[1\] must be distinct"),
    ("raster", 1, dict(num_layers=2, attention_layers=(0, 0)), "distinct"),
    ("spn", 1, dict(embedder_kernel_size=2), "embedder_kernel_size=2"),
    ("spn", 1, dict(embedder_filters=0), "embedder_filters=0"),
    ("spn", 1, dict(attention_layers=(0,), num_heads=0), "num_heads=0"),
    ("spn", 1, dict(attention_layers=(0,), key_dim=-1), "key_dim=-1"),
    ("spn", 1, dict(subscale_factor=3), "subscale_factor=3"),
    ("spn", 1, dict(subscale_factor=2.0), "subscale_factor=2.0 must be a positive int"),
    ("spn", 1, dict(msb_bits=7), "msb_bits=7"),
    ("upscaling", 1, dict(part_overrides={"first": {"bits": 3}}), r"part_overrides\['first'\]"),
    ("upscaling", 1, dict(part_overrides={"size": {"kernel_size": 2}}), "kernel_size=2"),
    ("upscaling", 1, dict(msb_bits=2), "msb_bits=2"),
    ("multiscale", 1, dict(base_first_kernel_size=2), "base_first_kernel_size=2"),
    ("multiscale", 1, dict(kernel_size=2), "kernel_size=2"),
    ("multiscale", 3, dict(base_filters=4), "base_filters=4 must be a multiple of 3"),
    ("multiscale", 3, dict(base_size=2, filters=4), "filters=4 must be a multiple of 3"),
    ("multiscale", 3, dict(group_pixelcnn_patch=2, group_pixelcnn_filters=4),
     "group_pixelcnn_filters=4"),
    ("multiscale", 1, dict(group_pixelcnn_patch=2, group_pixelcnn_layers=0),
     "group_pixelcnn_layers=0"),
    ("multiscale", 1, dict(base_size=2, group_pixelcnn_patch=-1), "group_pixelcnn_patch=-1"),
    ("multiscale", 1, dict(base_size=3), "power of 2"),
    ("multiscale", 1, dict(base_size=0), "base_size=0"),
])
def test_invalid_settings_fail_at_construction(kind, channels, overrides, match):
    with pytest.raises(ValueError, match=match):
        models.build(kind, 4, channels=channels, bits=2, preset="tiny", **overrides)


def test_bad_image_size_and_cond():
    with pytest.raises(ValueError, match="image_size=0"):
        models.build("raster", 0, preset="tiny")
    with pytest.raises(ValueError, match=r"cond\['label'\]=0"):
        models.build("raster", 2, preset="tiny", cond={"label": 0})
