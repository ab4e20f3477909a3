"""`MultidimensionalUpscaling`: size and depth upscaling with three SPNs (Menick & Kalchbrenner
2019, §4)."""

import keras
import tensorflow as tf

from spn_tf import orderings, sampling
from spn_tf.inputs import check_images
from spn_tf.models import subscale
from spn_tf.models.base import DensityModel
from spn_tf.models.subscale import SubscalePixelNetwork

PARTS = ("first", "size", "depth")
TRAIN_PARTS = ("all",) + PARTS
# Hyperparameters every part shares (see `SubscalePixelNetwork`); `part_overrides` changes them
# per part.
NETWORK_HPARAMS = ("filters", "num_layers", "kernel_size", "first_kernel_size",
                   "attention_layers", "num_heads", "key_dim", "embedder_filters",
                   "embedder_layers", "embedder_kernel_size")


def preset(name, image_size):
    """Hyperparameters of a preset: the SPN's, plus the depth split (3 most significant bits
    first: Menick & Kalchbrenner 2019 §4 [reported]; 1 for `tiny`, whose tests use 2 bits)."""
    hparams = subscale.preset(name, image_size)
    for key in ("slice_range", "depth_condition_bits"):
        hparams.pop(key)
    return {**hparams, "depth_bits": 1 if name == "tiny" else 3, "train_part": "all",
            "part_overrides": None}


@keras.saving.register_keras_serializable(package="spn_tf")
class MultidimensionalUpscaling(DensityModel):
    """Three SPNs that grow an image in size and then in depth; exact joint likelihood.

    With `S` the subscale factor, `m = depth_bits` and `x = msb * 2**(bits - m) + lsb`
    (`spn_tf.orderings.depth_split`):
    `log p(x) = log p_first(msb_0 | c) + log p_size(msb_1..msb_{S*S-1} | msb_0, c)
    + log p_depth(lsb | msb, c)`, where `msb_k` is subscale slice `k` of the low-depth image:
      * `first` (a): slice 0 at `m` bits, a small-size low-depth image;
      * `size` (b): slices `1..S*S-1` at `m` bits given the earlier slices (absent when S=1);
      * `depth` (c): the `bits - m` least significant bits of every sub-pixel, all slices in
        subscale order, given the whole low-depth image (absent when `depth_bits` is None or
        0: size upscaling only, e.g. 5-bit CelebA-HQ 256).
    Each part is a `SubscalePixelNetwork`; the three factors are exact conditionals, so
    `log_prob` is a normalized distribution over `bits`-bit images, and the parts can be
    trained separately (they factorise the likelihood) or together.

    `train_part` picks what `fit` trains: `"all"` (the sum of the three one-slice estimates) or
    one of `"first"`, `"size"`, `"depth"` (only that network is computed and trainable; its
    loss is its share of the whole image's bits per sub-pixel). `log_prob`, `evaluate` and
    `sample` always use all three.

    `given` for `sample` (known content, returned unchanged):
      * `{"low_res": int (B, H/S, W/S, C)}` at `bits`: the first slice — size upscaling of a
        low-resolution image by `S` (and its depth upscaling);
      * `{"images": int (B, H, W, C), "num_slices": k}`: keep the first `k` slices
        (completion);
      * `{"msb": int (B, H, W, C)}` in `[0, 2**depth_bits)`: the low-depth image — depth
        upscaling only.

    Args:
      image_size, channels, bits, cond: see `DensityModel`.
      subscale_factor: `S` of all three networks.
      depth_bits: most significant bits generated first (`m`), or None / 0 for no depth
        upscaling.
      train_part: `"all"`, `"first"`, `"size"` or `"depth"`.
      part_overrides: optional `{part: {hyperparameter: value}}`, e.g. a smaller `first`.
      seed: int seed of the training slice draws, or None.
      filters, num_layers, kernel_size, first_kernel_size, attention_layers, num_heads,
        key_dim, embedder_filters, embedder_layers, embedder_kernel_size: every part's
        `SubscalePixelNetwork` hyperparameters.

    Call: images int `(B, H, W, C)` (+ cond) → `{part: that SPN's outputs}`.

    References:
      Menick, Kalchbrenner. Generating High Fidelity Images with Subscale Pixel Networks and
      Multidimensional Upscaling. ICLR 2019.
    """

    def __init__(self, image_size, channels=3, bits=8, cond=None, subscale_factor=2,
                 depth_bits=3, train_part="all", part_overrides=None, seed=None, **kwargs):
        network = {k: kwargs.pop(k) for k in NETWORK_HPARAMS if k in kwargs}
        super().__init__(image_size, channels, bits, cond, **kwargs)
        depth_bits = depth_bits or None
        if depth_bits is not None:
            orderings.check_depth_split(bits, depth_bits)
        part_overrides = {k: dict(v) for k, v in (part_overrides or {}).items()}
        if set(part_overrides) - set(PARTS):
            raise ValueError(f"part_overrides keys must be in {PARTS}, got "
                             f"{sorted(part_overrides)}.")
        self.subscale_factor = subscale_factor
        self.depth_bits = depth_bits
        self.part_overrides = part_overrides
        self.seed = seed
        self.network = network
        msb_bits = depth_bits or bits
        num_slices = subscale_factor ** 2
        specs = {"first": dict(bits=msb_bits, slice_range=(0, 1))}
        if num_slices > 1:
            specs["size"] = dict(bits=msb_bits, slice_range=(1, num_slices))
        if depth_bits is not None:
            specs["depth"] = dict(bits=bits - depth_bits, depth_condition_bits=depth_bits)
        if train_part not in ("all",) + tuple(specs):
            raise ValueError(
                f"train_part={train_part!r} is not a network of this model; choose one of "
                f"{('all',) + tuple(specs)} (size needs subscale_factor > 1, depth needs "
                f"depth_bits).")
        self.train_part = train_part
        self.networks = {}
        for i, (part, spec) in enumerate(specs.items()):
            net = SubscalePixelNetwork(
                image_size, channels, cond=cond, subscale_factor=subscale_factor,
                seed=None if seed is None else seed + i, name=f"{part}_network",
                **{**network, **spec, **part_overrides.get(part, {})})
            net.trainable = train_part in ("all", part)
            self.networks[part] = net

    def _active_parts(self, training):
        return tuple(self.networks) if not training or self.train_part == "all" else (
            self.train_part,)

    def _split(self, images):
        if self.depth_bits is None:
            return images, None
        return orderings.depth_split(images, self.bits, self.depth_bits)

    def _part_inputs(self, part, images, cond):
        msb, lsb = self._split(images)
        if part == "depth":
            return lsb, {**cond, "low_res": msb}
        return msb, cond

    def _outputs(self, images, cond, training):
        return {part: self.networks[part]._outputs(*self._part_inputs(part, images, cond),
                                                   training)
                for part in self._active_parts(training)}

    def _log_prob_from_outputs(self, images, cond, outputs):
        return tf.add_n([
            self.networks[part]._log_prob_from_outputs(*self._part_inputs(part, images, cond),
                                                       part_outputs)
            for part, part_outputs in outputs.items()])

    def part_log_probs(self, images, cond=None):
        """`{part: float32 (B,)}`: each network's exact term of `log_prob`."""
        images, cond = self.check_inputs(images, cond)
        self.build()
        return {part: self.networks[part].log_prob(*self._part_inputs(part, images, cond))
                for part in self.networks}

    def _sample(self, batch_size, seed, temperature, cond, given, loop):
        seeds = dict(zip(PARTS, sampling.split_seed(seed, len(PARTS))))
        if isinstance(given, dict) and set(given) == {"msb"}:
            if self.depth_bits is None:
                raise ValueError("given['msb'] needs a model with depth upscaling (depth_bits).")
            msb = check_images(given["msb"], self.depth_bits, self.channels, self.image_size,
                               self.image_size, "given['msb']")
            if msb.shape[0] != batch_size:
                raise ValueError(f"given['msb'] has batch {msb.shape[0]}, but batch_size="
                                 f"{batch_size}.")
            lsb, known = tf.zeros_like(msb), 0
        else:
            slices, known = subscale.given_slices(given, batch_size, self.image_size,
                                                  self.channels, self.bits,
                                                  self.subscale_factor)
            msb, lsb = self._split(orderings.subscale_merge(slices, self.subscale_factor))
            for part in ("first", "size"):
                if part in self.networks:
                    msb = self.networks[part]._sample(
                        batch_size, seeds[part], temperature, cond,
                        {"images": msb, "num_slices": max(known, 1 if part == "size" else 0)},
                        loop)
        if self.depth_bits is None:
            return msb
        lsb = self.networks["depth"]._sample(batch_size, seeds["depth"], temperature,
                                             {**cond, "low_res": msb},
                                             {"images": lsb, "num_slices": known}, loop)
        return orderings.depth_merge(msb, lsb, self.bits, self.depth_bits)

    def get_config(self):
        return {**super().get_config(), "subscale_factor": self.subscale_factor,
                "depth_bits": self.depth_bits, "train_part": self.train_part,
                "part_overrides": self.part_overrides or None, "seed": self.seed,
                **{k: list(v) if isinstance(v, tuple) else v for k, v in self.network.items()}}
