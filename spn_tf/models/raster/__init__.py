"""The raster-order Gated PixelCNN: its model, presets and export module."""

from spn_tf.models.raster.model import GatedPixelCNN

__all__ = ["GatedPixelCNN"]
