"""Action-conditional video, one multiscale frame at a time: its model, presets and export module."""

from spn_tf.models.video.model import MultiscaleVideoPixelCNN

__all__ = ["MultiscaleVideoPixelCNN"]
