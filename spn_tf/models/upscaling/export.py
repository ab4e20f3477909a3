"""What the upscaling composite serves: the base signatures, `upscale_size` (the first
slice given) when S > 1, and `upscale_depth` (the top bits given) with depth upscaling."""

import tensorflow as tf

from spn_tf import orderings
from spn_tf.models import signatures
from spn_tf.models.subscale.export import subscale_given


class UpscalingExport(signatures.ExportModule):

    def signatures(self):
        model = self.model
        sigs = super().signatures()
        draw, cond = signatures.draw_specs(), self.cond_specs()
        if model.subscale_factor > 1:
            sigs["upscale_size"] = (signatures.sampler(lambda model, inputs: (
                signatures.cond_of(inputs), first_slice_given(model, inputs["first_slice"]))),
                [signatures.image_spec("first_slice", model,
                                       model.image_size // model.subscale_factor)]
                + draw + cond)
        if model.msb_bits:
            sigs["upscale_depth"] = (signatures.sampler(lambda model, inputs: (
                signatures.cond_of(inputs, given=("msb",)), {"msb": inputs["msb"]})),
                [signatures.image_spec("msb", model)] + draw + cond)
        return sigs

    def input_value_bits(self, name):
        if name in ("msb", "first_slice") and self.model.msb_bits:
            return self.model.msb_bits
        return super().input_value_bits(name)

    def metadata(self):
        return {"subscale_factor": self.model.subscale_factor, "msb_bits": self.model.msb_bits}

    def given_from_image(self, images):
        """As an SPN's; with depth upscaling, full-depth slices are kept approximately."""
        extra = {"approximate": True} if self.model.msb_bits else {}
        return subscale_given(self.model, images, **extra)


def first_slice_given(model, first_slice):
    """`given` for `upscale_size`: the first slice `(B, H/S, W/S, C)`.

    With depth upscaling it comes at the top `msb_bits` (the output of the first network),
    so that the rest is drawn from the exact conditional (`given["msb"]` with
    `num_slices=1`); given at full depth the composite could only approximate it.
    """
    if not model.msb_bits:
        return {"first_slice": first_slice}
    s = model.subscale_factor
    rest = tf.repeat(tf.zeros_like(first_slice)[:, None], s ** 2 - 1, axis=1)
    slices = tf.concat([first_slice[:, None], rest], axis=1)
    return {"msb": orderings.subscale_merge(slices, s), "num_slices": 1}
