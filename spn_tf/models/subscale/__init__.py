"""The Subscale Pixel Network (Menick & Kalchbrenner 2019): its model, presets and export module."""

from spn_tf.models.subscale.model import SubscalePixelNetwork

__all__ = ["SubscalePixelNetwork"]
