"""Presets of multidimensional upscaling: `preset(name, image_size)`."""

from spn_tf.models.subscale import presets as subscale_presets


def preset(name, image_size):
    """Hyperparameters of a preset: the SPN's, plus the depth split (3 most significant bits
    first: Menick & Kalchbrenner 2019 §4 [reported]; 1 for `tiny`, whose tests use 2 bits)."""
    hparams = subscale_presets.preset(name, image_size)
    for key in ("slice_range", "msb_bits"):
        hparams.pop(key)
    return {**hparams, "msb_bits": 1 if name == "tiny" else 3, "train_part": "all",
            "part_overrides": None}
