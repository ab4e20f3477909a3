"""Presets of the Subscale Pixel Network: `preset(name, image_size)`."""

from spn_tf.models.presets_common import check_name

# Sizes of the SPN's embedder and decoder are not in the sources we could read (the paper
# and what it cites): the `paper` preset keeps the published structure (conv embedder,
# PixelSNAIL-style decoder with self-attention, 32x32 slices at 128 and 256) with widths of
# our choosing [unverified].
_DEFAULTS = dict(slice_range=None, msb_bits=None, num_heads=4, key_dim=16,
                 embedder_kernel_size=3, embedder_half_resolution=False, seed=None)
_PRESETS = {
    # A few thousand parameters: seconds to train, for tests.
    "tiny": dict(filters=6, num_layers=1, kernel_size=3, first_kernel_size=3,
                 attention_layers=(0,), num_heads=1, key_dim=4, embedder_filters=8,
                 embedder_layers=1, embedder_attention_heads=1),
    # The quickstart on 2 CPU cores (embedded 32x32 photos, 16x16 slices).
    "small": dict(filters=48, num_layers=4, kernel_size=3, first_kernel_size=5,
                  attention_layers=(3,), embedder_filters=48, embedder_layers=2,
                  embedder_attention_heads=4),
    "paper": dict(filters=384, num_layers=16, kernel_size=3, first_kernel_size=7,
                  attention_layers=(3, 7, 11, 15), num_heads=8, key_dim=48,
                  embedder_filters=256, embedder_layers=6, embedder_attention_heads=8),
}


def preset(name, image_size):
    """Hyperparameters of a preset at an image size.

    The subscale factor follows the slice size: 16x16 slices for `small` (S = H/16), 32x32
    slices for `paper` at 128 and 256 (S = 4, 8: Menick & Kalchbrenner 2019 [unverified]) and
    S = 2 at 32 and 64 [unverified]; `tiny` uses S = 2. No preset drops subscaling: S >= 2 at
    every size (smaller slices below 32x32, resp. 64x64), and a size S does not divide is
    refused by the model, naming `subscale_factor` (pass it to choose another).
    """
    check_name(name)
    if name == "tiny":
        factor = 2
    elif name == "small":
        factor = max(2, image_size // 16)
    else:
        factor = max(2, image_size // 32)
    return {**_DEFAULTS, **_PRESETS[name], "subscale_factor": factor}
