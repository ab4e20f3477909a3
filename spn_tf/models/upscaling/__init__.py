"""Multidimensional upscaling: three SPNs for size and depth: its model, presets and export module."""

from spn_tf.models.upscaling.model import MultidimensionalUpscaling

__all__ = ["MultidimensionalUpscaling"]
