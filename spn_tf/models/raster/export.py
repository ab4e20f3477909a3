"""What a raster PixelCNN serves: the base signatures and `complete`."""

import numpy as np

from spn_tf.models import signatures


class RasterExport(signatures.ExportModule):

    def signatures(self):
        """The base signatures and `complete` (`images` with a `mask` of kept sub-pixels)."""
        model = self.model
        sigs = super().signatures()
        sigs["complete"] = (signatures.complete, [
            signatures.image_spec("images", model), signatures.image_spec("mask", model)]
            + signatures.draw_specs() + self.cond_specs())
        return sigs

    def given_from_image(self, images):
        """A full-size image: its top half kept, the rest completed."""
        side, size = images.shape[1], self.model.image_size
        if side != size:
            raise ValueError(f"--given is {side}x{side}; this model takes {size} pixels "
                             f"square.")
        mask = np.zeros(images.shape, bool)
        mask[:, :size // 2] = True
        return {"images": images, "mask": mask}, {}
