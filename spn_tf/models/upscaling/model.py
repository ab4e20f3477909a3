"""`MultidimensionalUpscaling`: size and depth upscaling with three SPNs (Menick & Kalchbrenner
2019, §4)."""

import keras
import tensorflow as tf

from spn_tf import distributions, hparams, orderings, sampling
from spn_tf.inputs import batch_differs, check_images
from spn_tf.models.base import CodingPlan, DensityModel
from spn_tf.models.subscale import model as subscale
from spn_tf.models.subscale.model import SubscalePixelNetwork
from spn_tf.models.upscaling import presets
from spn_tf.models.upscaling.export import UpscalingExport

PARTS = ("first", "size", "depth")
TRAIN_PARTS = ("all",) + PARTS
# Hyperparameters every part shares (see `SubscalePixelNetwork`); `part_overrides` changes them
# per part.
NETWORK_HPARAMS = ("filters", "num_layers", "kernel_size", "first_kernel_size",
                   "attention_layers", "num_heads", "key_dim", "embedder_filters",
                   "embedder_layers", "embedder_kernel_size", "embedder_attention_heads",
                   "embedder_half_resolution")
# A part may also take its own head (e.g. a categorical over the 1-bit parts of a 2-bit model).
HEAD_HPARAMS = ("head", "num_mixtures")


@keras.saving.register_keras_serializable(package="spn_tf")
class MultidimensionalUpscaling(DensityModel):
    """Three SPNs that grow an image in size and then in depth; exact joint likelihood.

    With `S` the subscale factor, `m = msb_bits` and `x = msb * 2**(bits - m) + lsb`
    (`spn_tf.orderings.depth_split`):
    `log p(x) = log p_first(msb_0 | c) + log p_size(msb_1..msb_{S*S-1} | msb_0, c)
    + log p_depth(lsb | msb, c)`, where `msb_k` is subscale slice `k` of the low-depth image:
      * `first` (a): slice 0 at `m` bits, a small-size low-depth image;
      * `size` (b): slices `1..S*S-1` at `m` bits given the earlier slices (absent when S=1);
      * `depth` (c): the `bits - m` least significant bits of every sub-pixel, all slices in
        subscale order, given the whole low-depth image (absent when `msb_bits` is None or
        0: size upscaling only, e.g. 5-bit CelebA-HQ 256).
    Each part is a `SubscalePixelNetwork`; the three factors are exact conditionals, so
    `log_prob` is a normalized distribution over `bits`-bit images, and the parts can be
    trained separately (they factorise the likelihood) or together.

    `train_part` picks what `fit` trains: `"all"` (the sum of the three one-slice estimates) or
    one of `"first"`, `"size"`, `"depth"` (only that network is computed and trainable; its
    loss is its share of the whole image's bits per sub-pixel). `log_prob`, `evaluate` and
    `sample` always use all three.

    `given` for `sample` (known content, returned unchanged). Exact conditionals:
      * `{"msb": int (B, H, W, C)}` in `[0, 2**msb_bits)`: the low-depth image — depth
        upscaling only: `p(lsb | msb)`;
      * `{"msb": ..., "num_slices": k}`: keep the top bits of the first `k` slices and draw
        everything else: `p(x | msb_<k)` (k = 1: size and depth upscaling of a low-depth,
        low-resolution image);
      * without depth upscaling (`msb_bits` None), `{"first_slice": int (B, H/S, W/S, C)}` (the
        first slice: size upscaling by `S`) and `{"images": int (B, H, W, C), "num_slices": k}`
        (keep the first `k` slices: completion), as for `SubscalePixelNetwork`.
    With depth upscaling, the exact conditional given full-depth slices, `p(x | x_<k)`, is not
    tractable: the given low bits `lsb_<k` are a term `p_depth(lsb_<k | msb)` of every top-bit
    completion, and weighing the completions by it needs a sum over all of them. So
    `{"first_slice": ...}` and `{"images": ..., "num_slices": k >= 1}` at full depth must say
    `"approximate": True`, and they draw from `q(x | x_<k) = p_size(msb_>=k | msb_<k) *
    p_depth(lsb_>=k | lsb_<k, msb)`: the other slices' top bits are conditioned on the given
    slices' top bits only, their low bits on everything given and drawn (exactly). Measured by
    enumeration (`tests/test_upscaling.py`, a 2x2 1-channel 2-bit model, S = 2, msb_bits = 1,
    weights doubled): total variation 0 to 0.33 from the exact conditional, depending on the
    given first slice; about 0.01 on an untrained tiny model (issue 11). The more the low bits
    tell about the top bits, the worse.

    Args:
      image_size, channels, bits, cond, head, num_mixtures: see `DensityModel`; the head is
        every part's unless `part_overrides` says otherwise (the logistic mixture needs at
        least 2 bits in each part).
      subscale_factor: `S` of all three networks.
      msb_bits: most significant bits generated first (`m`), or None / 0 for no depth
        upscaling.
      train_part: `"all"`, `"first"`, `"size"` or `"depth"`.
      part_overrides: optional `{part: {hyperparameter: value}}`, e.g. a smaller `first`.
      seed: int seed of the training slice draws, or None.
      filters, num_layers, kernel_size, first_kernel_size, attention_layers, num_heads,
        key_dim, embedder_filters, embedder_layers, embedder_kernel_size,
        embedder_attention_heads, embedder_half_resolution: every part's
        `SubscalePixelNetwork` hyperparameters.

    Call: images int `(B, H, W, C)` (+ cond) → `{part: that SPN's outputs}`.

    References:
      Menick, Kalchbrenner. Generating High Fidelity Images with Subscale Pixel Networks and
      Multidimensional Upscaling. ICLR 2019.
    """

    kind = "upscaling"

    preset = staticmethod(presets.preset)
    export_class = UpscalingExport

    def __init__(self, image_size, channels=3, bits=8, cond=None, subscale_factor=2,
                 msb_bits=3, train_part="all", part_overrides=None, seed=None, **kwargs):
        network = {k: kwargs.pop(k) for k in NETWORK_HPARAMS if k in kwargs}
        super().__init__(image_size, channels, bits, cond, **kwargs)
        msb_bits = msb_bits or None
        if msb_bits is not None:
            orderings.check_depth_split(bits, msb_bits, name="msb_bits")
        part_overrides = {k: dict(v) for k, v in (part_overrides or {}).items()}
        if set(part_overrides) - set(PARTS):
            raise ValueError(f"part_overrides keys must be in {PARTS}, got "
                             f"{sorted(part_overrides)}.")
        for part, overrides in part_overrides.items():
            # Bits, slice ranges and the depth condition define the factorisation: overriding
            # them would no longer multiply to a normalized p(x).
            if set(overrides) - set(NETWORK_HPARAMS + HEAD_HPARAMS):
                raise ValueError(
                    f"part_overrides[{part!r}] may set only {NETWORK_HPARAMS + HEAD_HPARAMS}; "
                    f"got {sorted(set(overrides) - set(NETWORK_HPARAMS + HEAD_HPARAMS))}.")
        hparams.check_positive("subscale_factor", subscale_factor)
        self.subscale_factor = subscale_factor
        self.msb_bits = msb_bits
        self.part_overrides = part_overrides
        self.seed = seed
        self.network = network
        top_bits = msb_bits or bits
        num_slices = subscale_factor ** 2
        specs = {"first": dict(bits=top_bits, slice_range=(0, 1))}
        if num_slices > 1:
            specs["size"] = dict(bits=top_bits, slice_range=(1, num_slices))
        if msb_bits is not None:
            specs["depth"] = dict(bits=bits - msb_bits, msb_bits=msb_bits)
        if train_part not in ("all",) + tuple(specs):
            raise ValueError(
                f"train_part={train_part!r} is not a network of this model; choose one of "
                f"{('all',) + tuple(specs)} (size needs subscale_factor > 1, depth needs "
                f"msb_bits).")
        self.train_part = train_part
        self.networks = {}
        for i, (part, spec) in enumerate(specs.items()):
            settings = {"head": self.head, "num_mixtures": self.num_mixtures, **network, **spec,
                        **part_overrides.get(part, {})}
            try:  # the part's head first: only its refusal needs the part named
                distributions.make_head(settings["head"], spec["bits"], settings["num_mixtures"])
            except ValueError as error:
                raise ValueError(f"the {part!r} network ({spec['bits']}-bit values): {error} "
                                 f"A part's head can be set alone: part_overrides={{{part!r}: "
                                 f"{{'head': ...}}}}.") from error
            net = SubscalePixelNetwork(
                image_size, channels, cond=cond, subscale_factor=subscale_factor,
                seed=None if seed is None else seed + i, name=f"{part}_network", **settings)
            net.trainable = self._trains(part)
            self.networks[part] = net

    def build(self, input_shape=None):
        super().build(input_shape)
        # `net.trainable = False` does not reach the projections a `MultiHeadAttention` makes
        # in its own `build` (Keras 3.15): a frozen network's attention would stay trainable
        # (the train loop's step failed on it; `fit` warned of missing gradients). So freeze
        # its variables themselves.
        for part, net in self.networks.items():
            if not self._trains(part):
                for variable in net.weights:
                    variable.trainable = False

    def _trains(self, part):
        return self.train_part in ("all", part)

    def _active_parts(self, training):
        return tuple(self.networks) if not training or self.train_part == "all" else (
            self.train_part,)

    def _split(self, images):
        if self.msb_bits is None:
            return images, None
        return orderings.depth_split(images, self.bits, self.msb_bits)

    def part_inputs(self, part, images, cond):
        """`(images, cond)` that network `part` models: the top bits, or the low bits given them."""
        msb, lsb = self._split(images)
        if part == "depth":
            return lsb, {**cond, "msb": msb}
        return msb, cond

    def _outputs(self, images, cond, training):
        return {part: self.networks[part].call(*self.part_inputs(part, images, cond),
                                                   training)
                for part in self._active_parts(training)}

    def _log_prob_from_outputs(self, images, cond, outputs):
        return tf.add_n([
            self.networks[part].log_prob_from_outputs(*self.part_inputs(part, images, cond),
                                                      part_outputs)
            for part, part_outputs in outputs.items()])

    def _log_prob_map_from_outputs(self, images, cond, outputs):
        return tf.add_n([
            self.networks[part].log_prob_from_outputs(
                *self.part_inputs(part, images, cond), part_outputs, per_subpixel=True)
            for part, part_outputs in outputs.items()])

    def _given_msb(self, given, batch_size):
        """`(msb, k)` from `given={"msb": ..., "num_slices": k}` (k = S*S when absent)."""
        if self.msb_bits is None:
            raise ValueError("given['msb'] needs a model with depth upscaling (msb_bits).")
        if set(given) - {"msb", "num_slices"}:
            raise ValueError(f"given with 'msb' takes only 'num_slices' beside it; got "
                             f"{sorted(given)}.")
        msb = check_images(given["msb"], self.msb_bits, self.channels, self.image_size,
                           self.image_size, "given['msb']")
        if batch_differs(msb.shape[0], batch_size):
            raise ValueError(f"given['msb'] has batch {msb.shape[0]}, but batch_size="
                             f"{batch_size}.")
        num_slices = self.subscale_factor ** 2
        known = given.get("num_slices", num_slices)
        if not isinstance(known, int) or not 0 <= known <= num_slices:
            raise ValueError(
                f"given['num_slices'] must be an int in [0, {num_slices}], got {known!r}.")
        return msb, known

    def _sample(self, batch_size, seed, temperature, cond, given, draws):
        seeds = dict(zip(PARTS, sampling.split_seed(seed, len(PARTS))))
        approximate = False
        if isinstance(given, dict) and "approximate" in given:
            given = dict(given)
            approximate = given.pop("approximate")
            if not isinstance(approximate, bool):
                raise ValueError(f"given['approximate'] must be True or False, got "
                                 f"{approximate!r}.")
        if isinstance(given, dict) and "msb" in given:
            msb, msb_known = self._given_msb(given, batch_size)
            lsb, known = tf.zeros_like(msb), 0
        else:
            slices, known = subscale.given_slices(given, batch_size, self.image_size,
                                                  self.channels, self.bits,
                                                  self.subscale_factor)
            if known and self.msb_bits is not None and not approximate:
                raise ValueError(
                    "given full-depth slices, this depth-upscaling model cannot sample the exact "
                    "conditional (see the class doc). Pass given={'msb': top bits, "
                    "'num_slices': k} for the exact conditional given the first k slices' top "
                    f"{self.msb_bits} bits, or add 'approximate': True to keep the full-depth "
                    "slices and draw the rest from the documented approximation.")
            msb, lsb = self._split(orderings.subscale_merge(slices, self.subscale_factor))
            msb_known = known
        for part in ("first", "size"):
            if part in self.networks and msb_known < self.subscale_factor ** 2:
                msb = self._run_network(part, draws, seeds[part], temperature, cond, {
                    "images": msb, "num_slices": max(msb_known, 1 if part == "size" else 0)})
        if self.msb_bits is None:
            return msb
        lsb = self._run_network("depth", draws, seeds["depth"], temperature,
                                {**cond, "msb": msb}, {"images": lsb, "num_slices": known})
        return orderings.depth_merge(msb, lsb, self.bits, self.msb_bits)

    def _run_network(self, part, draws, seed, temperature, cond, given):
        """Network `part`'s sampler, in this run's mode (and coder, and progress)."""
        return self.networks[part].run_sampler(seed, temperature, cond, given, mode=draws.mode,
                                               coder=draws.coder, progress=draws.progress)

    @property
    def coding_plan(self):
        """Each network's slices, in the sampler's order: the top bits for `first` and
        `size`, the low bits for `depth`."""
        def parts(images):
            msb, lsb = self._split(images)
            return None, [orderings.subscale_split(msb if part != "depth" else lsb,
                                                   self.subscale_factor) for part in PARTS
                          if part in self.networks]
        return CodingPlan(parts=parts, given=lambda raw: None)

    def _log_prob_chunked(self, images, cond, slices_per_call):
        """The sum of its networks' terms, each in chunks of `slices_per_call` slices."""
        return tf.add_n([network.log_prob(*self.part_inputs(part, images, cond or {}),
                                          slices_per_call=slices_per_call)
                         for part, network in self.networks.items()])

    @property
    def ordering(self):
        """Its networks, checked one by one (each states its own ordering). The composite
        has no one step per sub-pixel (each is drawn twice: its top bits, then the rest):
        `order` and `modelled` are None."""
        s, h = self.subscale_factor, self.image_size // self.subscale_factor
        depth = (f"top msb_bits={self.msb_bits} of {self.bits} first, then the rest"
                 if self.msb_bits else "no depth upscaling")
        first = self.networks["first"].ordering
        return self._ordering(
            None, f"networks {'+'.join(self.networks)}; subscale S={s}: {s * s} slices of "
            f"{h}x{h}; {depth}", modelled=None,
            units=tuple((f"{part} network", net) for part, net in self.networks.items()),
            conditioning=lambda batch, rng: (first.conditioning(batch, rng)[0], None))

    def get_config(self):
        return {**super().get_config(), "subscale_factor": self.subscale_factor,
                "msb_bits": self.msb_bits, "train_part": self.train_part,
                "part_overrides": self.part_overrides or None, "seed": self.seed,
                **{k: list(v) if isinstance(v, tuple) else v for k, v in self.network.items()}}
