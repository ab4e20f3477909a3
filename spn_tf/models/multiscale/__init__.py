"""The Parallel Multiscale PixelCNN (Reed et al. 2017): its model, presets and export module."""

from spn_tf.models.multiscale.model import MultiscalePixelCNN

__all__ = ["MultiscalePixelCNN"]
