"""`SubscalePixelNetwork`: an image as a sequence of subscale slices (Menick & Kalchbrenner 2019)."""

import keras
import numpy as np
import tensorflow as tf

from spn_tf import exactness, hparams, orderings, sampling
from spn_tf.inputs import batch_differs, check_images
from spn_tf.layers import ConditionEmbedding, MaskedDecoder, SliceEmbedder
from spn_tf.models.base import CodingPlan, DensityModel
from spn_tf.models.subscale import presets
from spn_tf.models.subscale.export import SubscaleExport

def given_slices(given, batch_size, image_size, channels, bits, subscale_factor):
    """Parses a subscale `given` (see `SubscalePixelNetwork`) into known slices.

    Returns:
      `(slices, k)`: int32 `(B, S*S, h, w, C)` with the first `k` slices known, zeros after.
    """
    s, c = subscale_factor, channels
    h, num_slices = image_size // s, s * s
    if given is None:
        return tf.zeros([batch_size, num_slices, h, h, c], tf.int32), 0
    if isinstance(given, dict) and set(given) == {"first_slice"}:
        first = check_images(given["first_slice"], bits, c, h, h,
                             f"given['first_slice'] (H/S x W/S for S={s})")
        known, slices = 1, tf.concat(
            [first[:, None], tf.zeros([tf.shape(first)[0], num_slices - 1, h, h, c], tf.int32)],
            axis=1)
    elif isinstance(given, dict) and set(given) == {"images", "num_slices"}:
        known = given["num_slices"]
        if not isinstance(known, int) or not 0 <= known <= num_slices:
            raise ValueError(
                f"given['num_slices'] must be an int in [0, {num_slices}], got {known!r}.")
        images = check_images(given["images"], bits, c, image_size, image_size,
                              "given['images']")
        keep = tf.reshape(tf.range(num_slices) < known, [1, -1, 1, 1, 1])
        slices = tf.where(keep, orderings.subscale_split(images, s), 0)
    else:
        raise ValueError(
            "given must be None, {'first_slice': int (B, H/S, W/S, C)} or "
            "{'images': int (B, H, W, C), 'num_slices': k} (keep the first k slices); got "
            f"{given if not isinstance(given, dict) else sorted(given)!r}.")
    if batch_differs(slices.shape[0], batch_size):
        raise ValueError(f"given has batch {slices.shape[0]}, but batch_size={batch_size}.")
    return slices, known


@keras.saving.register_keras_serializable(package="spn_tf")
class SubscalePixelNetwork(DensityModel):
    """Subscale Pixel Network: slices in subscale order, raster order inside a slice.

    The image is cut into `S*S` slices `x_k = x[k // S::S, k % S::S]` (`spn_tf.orderings`),
    and a model of slices `[start, stop)` factorises as
    `p(x_start..x_stop-1 | x_<start, c) = prod_k prod_{i,j} prod_ch
    p(x_k[i,j,ch] | x_<k, x_k[<(i,j)], x_k[i,j,<ch], c)`; with `slice_range=(0, S*S)` (the
    default) this is the whole image's distribution. `SliceEmbedder` reads the slices `< k`,
    the meta-position `k` and the conditioning `c`; a `MaskedDecoder` (Gated PixelCNN with
    causal self-attention, PixelSNAIL-style) predicts slice `k` in raster order, channels R, G,
    B, from that context. Each factor is the model's head: a softmax over `2**bits` values, or
    a discretized logistic mixture.

    Depth upscaling (the paper's network (c)): with `msb_bits = m` the model takes
    `cond["msb"]`, the most significant `m` bits of the image, int `(B, H, W, C)` in
    `[0, 2**m)`, and models the remaining least significant `bits` of every sub-pixel given it;
    the whole low-depth image, in subscale order, enters the embedder at every slice.

    Training (`model(x, training=True)`, `fit`) draws one target slice per example, uniformly
    from `[start, stop)`, so activation memory per example depends on the slice size, not on
    the image size; the loss `(stop - start) * log p(x_k | x_<k)` is an unbiased estimate of
    `log_prob`, reported as bits per sub-pixel of the whole image. Evaluation
    (`training=False`, `log_prob`, `evaluate`) computes every slice of the range (folded into
    the batch) and sums them: the exact log-likelihood.

    Sampling walks slice by slice (the embedder once per slice), then position by position and
    channel by channel inside the slice with `spn_tf.sampling.raster_sample` (`mode="reference"`)
    or, by default, the same loop XLA-compiled and cached
    (`spn_tf.sampling.cached_raster_sample`, one compiled call per slice; the same images for
    the same seed up to rare float-rounding flips). Noise is drawn
    once per call, `(B, S*S, h, w, C)` uniforms from `seed`. `given` (known content, returned
    unchanged) is one of:
      * `{"first_slice": int (B, H/S, W/S, C)}` — the first slice, a sub-sampled low-resolution
        image: size upscaling by `S`;
      * `{"images": int (B, H, W, C), "num_slices": k}` — keep slices `0..k-1` of `images`
        (completion from the first `k` slices; the other pixels are ignored).
    Slices before `start` must be given.

    Args:
      image_size, channels, bits, cond, head, num_mixtures: see `DensityModel`.
      subscale_factor: `S`; it must divide `image_size`. Slices are `image_size / S` square.
      slice_range: `(start, stop)` with `0 <= start < stop <= S*S`: the slices modelled;
        default all.
      msb_bits: `m` for a depth-upscaling network (takes `cond["msb"]`), or
        None.
      filters, num_layers, kernel_size, first_kernel_size, attention_layers, num_heads,
        key_dim: the decoder, see `spn_tf.layers.MaskedDecoder`.
      embedder_filters, embedder_layers, embedder_kernel_size, embedder_attention_heads: see
        `spn_tf.layers.SliceEmbedder` (the heads of its slice-wide attention, which gives
        every embedding position the whole of the earlier slices; 0 = convolutions only, as
        in files saved before it existed; every preset sets it).
      embedder_half_resolution: the embedder's blocks and attention at half the slice's
        resolution (`SliceEmbedder(half_resolution=True)`): an option, faster, not the
        paper's; no preset sets it.

    Call: images int `(B, H, W, C)` (+ cond) → dict `{"logits": (B, m, h, w, C, P),
    "slice_index": int (B, m)}`: the head's outputs (`P = model.distribution.num_params`,
    `2**bits` logits for the categorical head) of `m = 1` random slice per example when
    training, all `stop - start` slices otherwise.

    Example:
      >>> model = spn_tf.models.build("spn", 8, channels=1, bits=2, preset="tiny")
      >>> model.log_prob(tf.zeros([4, 8, 8, 1], tf.int32)).shape
      TensorShape([4])

    References:
      Menick, Kalchbrenner. Generating High Fidelity Images with Subscale Pixel Networks and
      Multidimensional Upscaling. ICLR 2019.
    """

    kind = "spn"

    preset = staticmethod(presets.preset)
    export_class = SubscaleExport

    def __init__(self, image_size, channels=3, bits=8, cond=None, subscale_factor=2,
                 slice_range=None, msb_bits=None, filters=48, num_layers=4,
                 kernel_size=3, first_kernel_size=5, attention_layers=(), num_heads=4,
                 key_dim=16, embedder_filters=48, embedder_layers=2, embedder_kernel_size=3,
                 embedder_attention_heads=0, embedder_half_resolution=False, seed=None,
                 **kwargs):
        super().__init__(image_size, channels, bits, cond, **kwargs)
        hparams.check_positive("subscale_factor", subscale_factor)
        orderings.check_subscale_factor(self.image_size, self.image_size, subscale_factor)
        self.subscale_factor = int(subscale_factor)
        num_slices = self.subscale_factor ** 2
        start, stop = tuple(slice_range) if slice_range is not None else (0, num_slices)
        if not 0 <= start < stop <= num_slices:
            raise ValueError(
                f"slice_range={slice_range} must be (start, stop) with 0 <= start < stop <= "
                f"S*S = {num_slices}.")
        if msb_bits is not None and not 1 <= msb_bits <= 8 - bits:
            raise ValueError(
                f"msb_bits={msb_bits} must be in [1, {8 - bits}] for "
                f"bits={bits} (the low-depth image's bits plus `bits` make at most 8), or None.")
        # The embedder's names as users pass them (its layer calls them filters, ...).
        hparams.check_positive("embedder_filters", embedder_filters)
        hparams.check_non_negative("embedder_layers", embedder_layers)
        hparams.check_odd_kernel("embedder_kernel_size", embedder_kernel_size, hparams.ALIGNED)
        self.slice_range = (int(start), int(stop))
        self.msb_bits = msb_bits
        self.filters = filters
        self.num_layers = num_layers
        self.kernel_size = kernel_size
        self.first_kernel_size = first_kernel_size
        self.attention_layers = hparams.index_tuple("attention_layers", attention_layers)
        self.num_heads = num_heads
        self.key_dim = key_dim
        self.embedder_filters = embedder_filters
        self.embedder_layers = embedder_layers
        self.embedder_kernel_size = embedder_kernel_size
        self.embedder_attention_heads = embedder_attention_heads
        self.embedder_half_resolution = hparams.check_bool("embedder_half_resolution",
                                                            embedder_half_resolution)
        self.seed = seed
        self.condition = ConditionEmbedding.for_cond(embedder_filters, self.cond_spec)
        self.embedder = SliceEmbedder(embedder_filters, embedder_layers, num_slices,
                                      embedder_kernel_size, embedder_attention_heads,
                                      self.embedder_half_resolution)
        self.decoder = MaskedDecoder(filters, num_layers, self.distribution.num_params, channels,
                                     kernel_size, first_kernel_size, attention_layers, num_heads,
                                     key_dim)
        self.seed_generator = keras.random.SeedGenerator(seed)

    @property
    def num_slices(self):
        return self.subscale_factor ** 2

    @property
    def slice_size(self):
        return self.image_size // self.subscale_factor

    def check_cond(self, cond, batch_size=None):
        cond = dict(cond or {})
        msb = cond.pop("msb", None)
        checked = super().check_cond(cond, batch_size)
        if self.msb_bits is None:
            if msb is not None:
                raise ValueError("cond['msb'] is only taken by a depth-upscaling SPN "
                                 "(msb_bits set); this model has none.")
            return checked
        if msb is None:
            raise ValueError(
                f"this depth-upscaling SPN needs cond['msb']: the {self.msb_bits} "
                f"most significant bits of the image, int (B, {self.image_size}, "
                f"{self.image_size}, {self.channels}).")
        checked["msb"] = check_images(msb, self.msb_bits, self.channels,
                                      self.image_size, self.image_size, "cond['msb']")
        return checked

    def _dummy_inputs(self, batch_size=1):
        images, cond = super()._dummy_inputs(batch_size)
        if self.msb_bits is not None:
            cond["msb"] = tf.zeros_like(images)
        return images, cond

    def _conditioning(self, cond):
        """Global context `(B, 1, 1, D)` and the low-depth planes `(B, h, w, S*S*C)` (or None)."""
        context = self.condition(cond) if self.condition is not None else None
        visible = None
        if self.msb_bits is not None:
            low = orderings.subscale_split(
                self._scale(cond["msb"], self.msb_bits), self.subscale_factor)
            low = tf.transpose(low, [0, 2, 3, 1, 4])
            visible = tf.reshape(low, [tf.shape(low)[0], self.slice_size, self.slice_size,
                                       self.num_slices * self.channels])
        return context, visible

    def _slice_logits(self, slices, slice_index, context, visible):
        """Logits of the target slices, several per example folded into the batch.

        Args:
          slices: float `(B, S*S, h, w, C)`, scaled.
          slice_index: int32 `(B, m)`: target slices.
          context, visible: from `_conditioning`.

        Returns:
          float `(B, m, h, w, C, P)`, the head's outputs.
        """
        batch, m = tf.shape(slice_index)[0], tf.shape(slice_index)[1]
        targets = tf.gather(slices, slice_index, axis=1, batch_dims=1)
        flat_index = tf.reshape(slice_index, [-1])
        repeat = lambda t: None if t is None else tf.repeat(t, m, axis=0)
        embedding = self.embedder(repeat(slices), flat_index, context=repeat(context),
                                  visible=repeat(visible))
        h, c = self.slice_size, self.channels
        logits = self.decoder(tf.reshape(targets, [-1, h, h, c]), context=embedding)
        return tf.reshape(logits, [batch, m, h, h, c, self.distribution.num_params])

    def _slice_outputs(self, images, cond, slice_index):
        slices = orderings.subscale_split(self._scale(images), self.subscale_factor)
        context, visible = self._conditioning(cond)
        return {"logits": self._slice_logits(slices, slice_index, context, visible),
                "slice_index": slice_index}

    def _outputs(self, images, cond, training):
        start, stop = self.slice_range
        batch = tf.shape(images)[0]
        if training:
            slice_index = tf.random.stateless_uniform(
                (batch, 1), _replica_seed(self.seed_generator.next()), start, stop, tf.int32)
        else:
            slice_index = tf.tile(tf.range(start, stop)[None], [batch, 1])
        return self._slice_outputs(images, cond, slice_index)

    def _log_prob_from_outputs(self, images, cond, outputs):
        slice_index = outputs["slice_index"]
        targets = tf.gather(orderings.subscale_split(images, self.subscale_factor), slice_index,
                            axis=1, batch_dims=1)
        per_slice = tf.reduce_sum(self.distribution.log_prob(outputs["logits"], targets),
                                  [2, 3, 4])
        # All slices: the exact sum; m random slices: (stop - start) x their mean, unbiased.
        weight = (self.slice_range[1] - self.slice_range[0]) / tf.cast(
            tf.shape(slice_index)[1], tf.float32)
        return weight * tf.reduce_sum(per_slice, axis=1)

    def _log_prob_map_from_outputs(self, images, cond, outputs):
        slice_index = outputs["slice_index"]
        targets = tf.gather(orderings.subscale_split(images, self.subscale_factor), slice_index,
                            axis=1, batch_dims=1)
        per_slice = self.distribution.log_prob(outputs["logits"], targets)
        # Each computed slice to its place among all S*S (zeros for those not modelled).
        placed = tf.one_hot(slice_index, self.subscale_factor ** 2, dtype=per_slice.dtype)
        slices = tf.einsum("bnhwc,bns->bshwc", per_slice, placed)
        return orderings.subscale_merge(slices, self.subscale_factor)

    def slice_log_prob(self, images, slice_index, cond=None):
        """`log p(x_k | x_<k, cond)` of one slice per example.

        Args:
          images: int `(B, H, W, C)` in `[0, 2**bits)`.
          slice_index: int `(B,)` in `[0, S*S)`.
          cond: conditioning dict, as built.

        Returns:
          float32 `(B,)`, natural log.
        """
        images, cond = self.check_inputs(images, cond)
        self.build()
        slice_index = tf.reshape(tf.cast(slice_index, tf.int32), [-1, 1])
        outputs = self._slice_outputs(images, cond, slice_index)
        targets = tf.gather(orderings.subscale_split(images, self.subscale_factor), slice_index,
                            axis=1, batch_dims=1)
        return tf.reduce_sum(self.distribution.log_prob(outputs["logits"], targets),
                             [1, 2, 3, 4])

    def _sample(self, batch_size, seed, temperature, cond, given, draws):
        slices, known = given_slices(given, batch_size, self.image_size, self.channels,
                                     self.bits, self.subscale_factor)
        start, stop = self.slice_range
        if known < start:
            raise ValueError(
                f"this SPN models slices [{start}, {stop}) given the earlier ones: pass the "
                f"first {start} slices in `given` (got {known}).")
        h, c = self.slice_size, self.channels
        uniform = draws.uniform(seed, [batch_size, self.num_slices, h, h, c])
        context, visible = self._conditioning(cond)
        sample_slice = self._traced("slice", draws, self._sample_slice)
        first = max(known, start)
        for k in range(first, stop):
            drawn = sample_slice(slices, tf.constant(k), uniform[:, k], temperature, context,
                                 visible)
            slices = tf.concat([slices[:, :k], drawn[:, None], slices[:, k + 1:]], axis=1)
            draws.report(f"{self.name} slices", k + 1 - first, stop - first)
        return orderings.subscale_merge(slices, self.subscale_factor)

    def _sample_slice(self, draws, slices, slice_index, uniform, temperature, context, visible):
        """Slice `slice_index` given the earlier ones: the embedder once, then the decoder in
        raster order (`sampling.sample_raster`).

        Returns:
          int32 `(B, h, w, C)`.
        """
        _, _, h, w, c = slices.shape
        batch = tf.shape(slices)[0]  # unknown while a signature is traced
        embedding = self.embedder(self._scale(slices), tf.fill([batch], slice_index),
                                  context=context, visible=visible)
        zeros, unknown = tf.zeros([batch, h, w, c], tf.int32), tf.zeros([batch, h, w, c], tf.bool)
        return sampling.sample_raster(self.decoder, self._scale, zeros, unknown, uniform,
                                      temperature, embedding, head=self.distribution,
                                      draws=draws)

    @property
    def coding_plan(self):
        """The image's slices: the sampler draws its noise slice by slice. Only a model of
        every slice codes whole images."""
        start, stop = self.slice_range
        if (start, stop) != (0, self.num_slices):
            def parts(images):
                raise ValueError(
                    f"this SPN models slices [{start}, {stop}) given the earlier ones, not "
                    f"whole images; spn_tf.codec codes with a model of every slice "
                    f"(slice_range=None) or a MultidimensionalUpscaling model.")
        else:
            def parts(images):
                return None, [orderings.subscale_split(images, self.subscale_factor)]
        return CodingPlan(parts=parts, given=lambda raw: None)

    def _log_prob_chunked(self, images, cond, slices_per_call):
        """Exact `log_prob` with at most `slices_per_call` (example, slice) pairs per network
        call (`slice_log_prob`), summed per example: the memory of a training batch of that
        many slices, where `log_prob` folds every slice of every image into one batch.

        Returns:
          float32 `(B,)`, natural log.
        """
        start, stop = self.slice_range
        batch = tf.shape(images)[0]
        pairs = batch * (stop - start)
        example = tf.range(pairs) // (stop - start)
        slice_index = start + tf.range(pairs) % (stop - start)
        total = tf.zeros([batch], tf.float32)
        for offset in tf.range(0, pairs, slices_per_call):
            chunk = tf.range(offset, tf.minimum(offset + slices_per_call, pairs))
            rows = tf.gather(example, chunk)
            chunk_cond = None if not cond else {k: tf.gather(v, rows) for k, v in cond.items()}
            values = self.slice_log_prob(tf.gather(images, rows), tf.gather(slice_index, chunk),
                                         chunk_cond)
            total += tf.math.unsorted_segment_sum(values, rows, batch)
        return total

    @property
    def ordering(self):
        """Slice by slice; a network of slices `[start, stop)` is given the earlier ones (a
        random image's, the same for every row, in `check`), and a depth network the top
        bits (random ones). The reach probe is the first sub-pixel of the last modelled slice:
        it sees the earlier slices only through the slice embedder."""
        s, h = self.subscale_factor, self.image_size // self.subscale_factor
        start, stop = self.slice_range
        order = exactness.subscale_order(self.image_size, self.channels, s, start)
        description = (f"subscale S={s}: {s * s} slices of {h}x{h}, slices {start}..{stop - 1} "
                       f"modelled, {h * h * self.channels} steps per slice")
        tiny = dict(subscale_factor=2, slice_range=(min(start, 1), 4 if stop == s * s else
                                                    min(stop, 4)))
        if self.msb_bits:
            description += f", given the top {self.msb_bits} bits (depth upscaling)"
            tiny["msb_bits"] = 1
        probe = None
        if stop > 1:
            first_step = (stop - 1) * h * h * self.channels
            probe = (int(np.flatnonzero(order.reshape(-1) == first_step)[0]),
                     f"the first sub-pixel of slice {stop - 1}")

        def conditioning(batch, rng):
            cond = self._random_cond(batch, rng)
            if self.msb_bits:
                cond["msb"] = rng.integers(0, 2 ** self.msb_bits, (
                    batch,) + self.example_shape).astype(np.int32)
            given = None
            if start:
                images = rng.integers(0, 2 ** self.bits, (1,) + self.example_shape)
                given = {"images": np.repeat(images.astype(np.int32), batch, axis=0),
                         "num_slices": start}
            return cond, given

        return self._ordering(
            order, description, tiny_overrides=tiny, reach_probe=probe,
            modelled=exactness.subscale_modelled(self.image_size, self.channels, s,
                                                 self.slice_range),
            conditioning=conditioning)

    def get_config(self):
        return {**super().get_config(), "subscale_factor": self.subscale_factor,
                "slice_range": list(self.slice_range),
                "msb_bits": self.msb_bits, "filters": self.filters,
                "num_layers": self.num_layers, "kernel_size": self.kernel_size,
                "first_kernel_size": self.first_kernel_size,
                "attention_layers": list(self.attention_layers), "num_heads": self.num_heads,
                "key_dim": self.key_dim, "embedder_filters": self.embedder_filters,
                "embedder_layers": self.embedder_layers,
                "embedder_kernel_size": self.embedder_kernel_size,
                "embedder_attention_heads": self.embedder_attention_heads,
                "embedder_half_resolution": self.embedder_half_resolution, "seed": self.seed}


def _replica_seed(seed):
    """`seed` made distinct per replica (and worker) of a tf.distribute strategy.

    The seed generator's state is mirrored, so every replica would draw the same slices.
    Replica r draws from `stateless_fold_in(seed, r)`: a fresh seed. (Adding r to a seed
    word would give replica r at step t the seed of replica 0 at step t + r: the generator
    advances that word by one per step.)
    """
    seed = tf.cast(seed, tf.int32)
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return seed
    return tf.random.experimental.stateless_fold_in(
        seed, tf.cast(context.replica_id_in_sync_group, tf.int32))

