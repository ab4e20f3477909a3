"""What a multiscale PixelCNN serves: the base signatures and `super_resolve`."""

from spn_tf.models import signatures


class MultiscaleExport(signatures.ExportModule):

    # O(log N) sampler steps: for a few calls the reference sampler beats an XLA compile.
    # Measured here (2 CPU cores, 16 images of 16x16x3, `small`): the reference sampler takes
    # 0.8-1.9 s a call, the compiled one 14.5 s cold (the XLA compile) and 0.05 s warm, so
    # compiling pays from about 8 calls on.
    reference_sampler_calls = 8

    def cond_specs(self):
        specs = super().cond_specs()
        if self.model.condition_on_base:
            specs.append(signatures.image_spec("low_res", self.model,
                                               self.model.image_size // 2))
        return specs

    def signatures(self):
        """The base signatures and `super_resolve` (`low_res` at half the size given)."""
        model = self.model
        sigs = super().signatures()
        if model.num_scales and not model.condition_on_base:
            sigs["super_resolve"] = (signatures.sample, [signatures.image_spec(
                "low_res", model, model.image_size // 2)] + signatures.draw_specs()
                + self.cond_specs())
        return sigs

    def metadata(self):
        return {"base_size": self.model.base_size,
                "condition_on_base": self.model.condition_on_base}

    def given_from_image(self, images):
        """A lower resolution to super-resolve (a full-size image is halved first)."""
        if images.shape[1] == self.model.image_size:
            images = images[:, ::2, ::2]
        return None, {"low_res": images}  # checked by `sample`
