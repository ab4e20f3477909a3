"""What an SPN network serves: the base signatures, `upscale_size` for a network that
models the first slice's successors, `upscale_depth` for a depth network."""

from spn_tf.models import signatures


class SubscaleExport(signatures.ExportModule):

    def cond_specs(self):
        specs = super().cond_specs()
        if self.model.msb_bits:  # a depth network: conditioned on the top bits
            specs.append(signatures.image_spec("msb", self.model))
        return specs

    def signatures(self):
        model = self.model
        sigs = super().signatures()
        draw, cond = signatures.draw_specs(), self.cond_specs()
        if model.msb_bits is not None:
            sigs["upscale_depth"] = (signatures.sample, [signatures.image_spec("msb", model)]
                                     + draw + [spec for spec in cond if spec.name != "msb"])
        elif model.slice_range[0] <= 1 and model.subscale_factor > 1:
            sigs["upscale_size"] = (signatures.sampler(lambda model, inputs: (
                signatures.cond_of(inputs), {"first_slice": inputs["first_slice"]})),
                [signatures.image_spec("first_slice", model, model.slice_size)] + draw + cond)
        return sigs

    def input_value_bits(self, name):
        if name == "msb" and self.model.msb_bits:
            return self.model.msb_bits
        return super().input_value_bits(name)

    def metadata(self):
        return {"subscale_factor": self.model.subscale_factor, "msb_bits": self.model.msb_bits}

    def given_from_image(self, images):
        return subscale_given(self.model, images)


def subscale_given(model, images, **extra):
    """`(given, cond)` for `model.sample` from int `(B, h, w, C)` images: first slices
    (`h = H/S`: size upscaling) or full images (their first half of the slices kept:
    completion). `extra` goes into `given` (e.g. `approximate=True`)."""
    side, size = images.shape[1], model.image_size
    if side == size // model.subscale_factor:
        return {"first_slice": images, **extra}, {}
    if side == size:
        return {"images": images, "num_slices": model.subscale_factor ** 2 // 2, **extra}, {}
    raise ValueError(f"--given is {side}x{side}; this model takes "
                     f"{size // model.subscale_factor} (upscaling) or {size} (completion) "
                     f"pixels square.")
