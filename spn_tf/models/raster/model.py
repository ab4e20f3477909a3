"""`GatedPixelCNN`: the raster-order baseline (van den Oord et al. 2016)."""

import keras
import numpy as np

from spn_tf import exactness, hparams, sampling
from spn_tf.inputs import check_given_pixels
from spn_tf.layers import ConditionEmbedding, MaskedDecoder
from spn_tf.models.base import DensityModel
from spn_tf.models.raster import presets
from spn_tf.models.raster.export import RasterExport

@keras.saving.register_keras_serializable(package="spn_tf")
class GatedPixelCNN(DensityModel):
    """Raster-order Gated PixelCNN with channel-autoregressive outputs.

    Factorisation: `p(x) = prod_{i,j} prod_c p(x[i,j,c] | x[<(i,j)], x[i,j,<c], cond)`, pixels
    in raster order, channels R, G, B inside a pixel; each factor the model's head (a softmax
    over `2**bits` values, or a discretized logistic mixture).
    Sampling walks the same order: `H * W * C` sequential network calls with the reference
    sampler (`sample(..., mode="reference")`); the default sampler (`mode="xla"`) draws the
    same images (up to rare float-rounding flips) from one XLA-compiled loop that recomputes
    only the rows and columns a new sub-pixel changes, and one attention query per pixel over cached keys and values
    (`spn_tf.sampling.cached_raster_sample`).

    Args:
      image_size, channels, bits, cond, head, num_mixtures: see `DensityModel`.
      filters, num_layers, kernel_size, first_kernel_size, attention_layers: see
        `spn_tf.layers.MaskedDecoder`.

    Call: images int `(B, H, W, C)` (+ cond) → the head's outputs float `(B, H, W, C, P)`
    (`P = model.distribution.num_params`: `2**bits` logits for the categorical head).

    `sample(..., given={"images": int (B, H, W, C), "mask": bool (B, H, W, C)})` completes an
    image: masked sub-pixels are kept (e.g. the top half for completion).

    References:
      van den Oord, Kalchbrenner, Vinyals, Espeholt, Graves, Kavukcuoglu. Conditional Image
      Generation with PixelCNN Decoders. NeurIPS 2016.
    """

    kind = "raster"
    preset = staticmethod(presets.preset)
    export_class = RasterExport
    fully_convolutional = True  # masked convolutions, and attention over any length

    def __init__(self, image_size, channels=3, bits=8, cond=None, filters=48, num_layers=4,
                 kernel_size=3, first_kernel_size=5, attention_layers=(), **kwargs):
        super().__init__(image_size, channels, bits, cond, **kwargs)
        self.filters = filters
        self.num_layers = num_layers
        self.kernel_size = kernel_size
        self.first_kernel_size = first_kernel_size
        self.attention_layers = hparams.index_tuple("attention_layers", attention_layers)
        self.condition = ConditionEmbedding.for_cond(filters, self.cond_spec)
        self.decoder = MaskedDecoder(filters, num_layers, self.distribution.num_params, channels,
                                     kernel_size, first_kernel_size, attention_layers)

    def _context(self, cond):
        return self.condition(cond) if self.condition is not None else None

    def _outputs(self, images, cond, training):
        return self.decoder(self._scale(images), context=self._context(cond))

    def _log_prob_from_outputs(self, images, cond, outputs):
        return self.distribution.image_log_prob(outputs, images)

    def _log_prob_map_from_outputs(self, images, cond, outputs):
        return self.distribution.log_prob(outputs, images)

    def _sample(self, batch_size, seed, temperature, cond, given, draws):
        shape = [batch_size, *self.example_shape]
        images, known = check_given_pixels(given, shape, self.bits)
        uniform = draws.uniform(seed, shape)
        # The context enters the loop as a tensor: captions (tf.string) never reach XLA.
        return self._traced("raster", draws, self._raster_loop)(images, known, uniform,
                                                                 temperature, self._context(cond))

    def _raster_loop(self, draws, images, known, uniform, temperature, context):
        """`sampling.sample_raster` over this decoder: `(images, known, uniform, temperature,
        context)` → images."""
        return sampling.sample_raster(self.decoder, self._scale, images, known, uniform,
                                      temperature, context, head=self.distribution, draws=draws)

    @property
    def ordering(self):
        return self._ordering(
            exactness.raster_order(self.image_size, self.image_size, self.channels),
            f"raster order, {self.num_dims} sequential steps (one per sub-pixel)")

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "num_layers": self.num_layers,
                "kernel_size": self.kernel_size, "first_kernel_size": self.first_kernel_size,
                "attention_layers": list(self.attention_layers)}

