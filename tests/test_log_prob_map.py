"""`log_prob_map`: per-sub-pixel log-likelihoods in image layout, for every model kind, that
sum to `log_prob` and sit where the ordering generates each sub-pixel."""

import numpy as np
import pytest

from spn_tf import models
import helpers as testing

KINDS = {
    "raster": ("raster", {}),
    "spn": ("spn", {}),
    "spn_later_slices": ("spn", {"slice_range": (1, 4)}),
    "upscaling": ("upscaling", {"msb_bits": 1}),
    "multiscale_a": ("multiscale", {"base_size": 1}),
    "multiscale_b": ("multiscale", {"base_size": 1, "group_pixelcnn_patch": 2}),
}


def _order(kind, model):
    """Generation step of each sub-pixel `(H, W, C)`."""
    size, c = model.image_size, model.channels
    if kind == "raster":
        return testing.raster_order(size, size, c)
    if kind.startswith("multiscale"):
        return testing.multiscale_order(size, c, model.base_size,
                                        model.group_pixelcnn_patch)
    return testing.subscale_order(size, c, model.subscale_factor)


@pytest.mark.parametrize("cond", [None, {"label": 3}])
@pytest.mark.parametrize("kind", list(KINDS))
def test_map_sums_to_log_prob_and_places_each_term_at_its_sub_pixel(kind, cond):
    name, overrides = KINDS[kind]
    model = models.build(name, 4, channels=3, bits=2, preset="tiny", cond=cond, **overrides)
    images = np.random.default_rng(1).integers(0, 4, (3, 4, 4, 3)).astype(np.int32)
    label = {"label": np.array([0, 1, 2], np.int32)} if cond else None
    log_prob_map = model.log_prob_map(images, label).numpy()
    assert log_prob_map.shape == images.shape and log_prob_map.dtype == np.float32
    np.testing.assert_allclose(log_prob_map.sum(axis=(1, 2, 3)),
                               model.log_prob(images, label).numpy(), rtol=1e-5)
    assert (log_prob_map <= 0).all()
    # The sub-pixel generated last: changing it changes its own term and no other (its lowest
    # bit, which the depth-upscaling ordering generates last too).
    last = np.unravel_index(np.argmax(_order(kind, model)), images.shape[1:])
    changed = images.copy()
    changed[(slice(None),) + last] ^= 1
    diff = model.log_prob_map(changed, label).numpy() != log_prob_map
    assert diff[(slice(None),) + last].all()
    diff[(slice(None),) + last] = False
    assert not diff.any()


def test_given_sub_pixels_are_zero():
    spn = models.build("spn", 4, channels=1, bits=2, preset="tiny", slice_range=(1, 4))
    images = np.ones((2, 4, 4, 1), np.int32)
    assert (spn.log_prob_map(images).numpy()[:, ::2, ::2] == 0).all()  # slice 0 is given
    multiscale = models.build("multiscale", 4, channels=1, bits=2, preset="tiny", base_size=1)
    cond = {"low_res": images[:, ::2, ::2]}
    log_prob_map = multiscale.log_prob_map(images, cond).numpy()
    assert (log_prob_map[:, ::2, ::2] == 0).all()
    np.testing.assert_allclose(log_prob_map.sum(axis=(1, 2, 3)),
                               multiscale.log_prob(images, cond), rtol=1e-5)
    other = {"low_res": 1 - images[:, ::2, ::2]}
    assert np.isneginf(multiscale.log_prob_map(images, other).numpy().sum(axis=(1, 2, 3))).all()
