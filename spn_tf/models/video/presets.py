"""Presets of the multiscale video model: `preset(name, image_size)`."""

from spn_tf.models.multiscale import presets as multiscale_presets
from spn_tf.models.presets_common import check_name

# The frame encoder per preset: (filters, layers of the vector path, of the aligned path).
ENCODERS = {"tiny": (8, 1, 1), "small": (48, 3, 2), "paper": (128, 4, 3)}


def preset(name, image_size):
    """The frame model's multiscale preset, 4 frames per clip, and the encoder's size."""
    check_name(name)
    filters, layers, aligned_layers = ENCODERS[name]
    return {**multiscale_presets.preset(name, image_size), "num_frames": 4,
            "encoder_filters": filters, "encoder_layers": layers,
            "encoder_aligned_layers": aligned_layers}
