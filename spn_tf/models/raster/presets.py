"""Presets of the raster Gated PixelCNN: `preset(name, image_size)`."""

from spn_tf.models.presets_common import check_name

_PRESETS = {
    # A few thousand parameters: seconds to train, for tests.
    "tiny": dict(filters=6, num_layers=1, kernel_size=3, first_kernel_size=3,
                 attention_layers=()),
    # The quickstart on 2 CPU cores.
    "small": dict(filters=48, num_layers=4, kernel_size=3, first_kernel_size=5,
                  attention_layers=()),
    # Gated PixelCNN on ImageNet (van den Oord et al. 2016, §3): 20 layers; 384 features
    # [reported]; kernel sizes [unverified].
    "paper": dict(filters=384, num_layers=20, kernel_size=3, first_kernel_size=7,
                  attention_layers=()),
}


def preset(name, image_size):
    """Hyperparameters of preset `name` (the same at every image size)."""
    del image_size
    check_name(name)
    return dict(_PRESETS[name])
