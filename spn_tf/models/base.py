"""`DensityModel`: the verbs every spn_tf model speaks.

* `model(images, cond=None)` → the network's outputs (logits, in the model's own layout);
* `model.log_prob(images, cond=None)` → float32 `(batch,)`, exact natural-log likelihood;
* `model.sample(batch_size, seed, temperature=1.0, cond=None, given=None)` → int32 images;
* `fit` loss: bits per dimension, `-log_prob / (H * W * C * ln 2)`, averaged over the batch.

`fit` feeds `x` as an image batch or a dict `{"images": ..., "label": ..., "embedding": ...}`;
no targets. Subclasses implement `outputs(images, cond, training)`,
`_log_prob_from_outputs(images, cond, outputs)` (and its per-sub-pixel map) and
`_sample(..., loop)`, where `loop` says how
the sampling loops run: `"reference"` (one network call per step, eagerly),
`"graph"` (the fast `tf.while_loop`s as a plain `tf.function`) or `"xla"` (the same loops
XLA-compiled; what `sample` runs by default).
"""

import contextlib
import dataclasses
import math
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from spn_tf import distributions, hparams, orderings
from spn_tf import inputs as inputs_lib
from spn_tf import sampling
from spn_tf.distributions import bits_per_dim
from spn_tf.layers.masked_conv2d import one_row_matmul
from spn_tf.models import signatures


@dataclasses.dataclass(frozen=True)
class CodingPlan:
    """How `spn_tf.codec` codes a kind's examples with its sampler (`DensityModel.coding_plan`).

    Attributes:
      parts: int `(B, *example_shape)` → `(raw, draws)`: `draws` the values each noise draw of
        the sampler must yield to give back the examples (in call order, each in its draw's
        shape); `raw` the sub-pixels the model is given rather than modelling (coded at `bits`
        each, uniformly), or None. Raises `ValueError` when the model cannot code whole
        examples (the message says why).
      given: the decoded `raw` → the sampler's `given` (None: none).
    """

    parts: Callable
    given: Callable


def _keras_shape_inference():
    """Inside Keras's `compute_output_spec` (a scratch `FuncGraph` that only infers shapes)."""
    graph = tf.compat.v1.get_default_graph()
    return not tf.executing_eagerly() and graph.name.startswith("scratch_graph")


class DensityModel(keras.Model):
    """Base of the spn_tf models: image geometry, conditioning, loss, validation.

    A model kind owns what differs about it and answers the tools in a few objects, never
    by its class: `kind` and `preset(name, image_size)` (`spn_tf.models.build`);
    `ordering` (an `spn_tf.orderings.Ordering`: what `spn_tf.check` and the test harness
    read); `export_module` (the SavedModel signatures, their conditioning specs and metadata,
    and what an image given to the sample CLI means); `coding_plan` (a `CodingPlan`:
    `spn_tf.codec`). A composite uses the networks it holds through `outputs`,
    `log_prob_from_outputs` and `run_sampler`, the same public verbs the training loss and
    the export use.

    Args:
      image_size: height and width of the (square) images.
      channels: 1 or 3.
      bits: bits per sub-pixel; values in `[0, 2**bits)`.
      cond: which conditioning the model takes: `{"label": num_classes}`,
        `{"embedding": dim}` and/or `{"text": max_length}` (captions of at most `max_length`
        UTF-8 bytes, encoded by a trained `spn_tf.layers.TextEncoder`); `None` for an
        unconditional model.
      head: the likelihood of each sub-pixel given the network's outputs there:
        `"categorical"` (`2**bits` logits) or `"logistic_mixture"` (PixelCNN++'s discretized
        logistic mixture, `3 * num_mixtures` outputs; at least 2 bits). See
        `spn_tf.distributions`.
      num_mixtures: logistic components per sub-pixel (`head="logistic_mixture"`).
    """

    def __init__(self, image_size, channels=3, bits=8, cond=None, head="categorical",
                 num_mixtures=5, **kwargs):
        super().__init__(**kwargs)
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels}.")
        if not hparams.is_int(bits) or not 1 <= bits <= 8:
            raise ValueError(f"bits must be in [1, 8], got {bits}.")
        unknown = set(cond or {}) - {"label", "embedding", "text"}
        if unknown:
            raise ValueError(
                f"cond keys must be 'label' (number of classes), 'embedding' (vector size) or "
                f"'text' (longest caption in UTF-8 bytes); got {sorted(unknown)}.")
        hparams.check_positive("image_size", image_size)
        for key, size in (cond or {}).items():
            hparams.check_positive(f"cond[{key!r}]", size)
        self.image_size = int(image_size)
        self.channels = int(channels)
        self.bits = int(bits)
        self.cond_spec = dict(cond or {})
        self.distribution = distributions.make_head(head, self.bits, num_mixtures)
        self.head = head
        self.num_mixtures = int(num_mixtures)

    @property
    def num_values(self):
        return 2 ** self.bits

    @property
    def num_dims(self):
        return self.image_size * self.image_size * self.channels

    def scale(self, images, bits=None):
        """Integers in `[0, 2**bits)` → floats in `[-1, 1]` in the compute dtype."""
        top = 2 ** (bits or self.bits) - 1
        return tf.cast(images, self.compute_dtype) * (2.0 / top) - 1.0

    def dummy_inputs(self, batch_size=1):
        """Zero images and conditioning of the right shapes (used to build the weights)."""
        images = tf.zeros([batch_size, self.image_size, self.image_size, self.channels], tf.int32)
        cond = {}
        if "label" in self.cond_spec:
            cond["label"] = tf.zeros([batch_size], tf.int32)
        if "embedding" in self.cond_spec:
            cond["embedding"] = tf.zeros([batch_size, self.cond_spec["embedding"]], tf.float32)
        if "text" in self.cond_spec:
            cond["text"] = tf.fill([batch_size], "a")
        return images, cond

    def build(self, input_shape=None):
        if self.built:
            return
        images, cond = self.dummy_inputs()
        self.outputs(images, cond, training=False)
        self.built = True

    def build_from_config(self, config):
        self.build()

    def __call__(self, inputs, cond=None, training=None, **kwargs):
        """`model(x)`, and so `fit`, `evaluate` and `predict`: the inputs are checked as
        `log_prob` checks them, before Keras wraps the call (so the message reaches the user
        as written)."""
        images, cond = inputs_lib.split_inputs(inputs, cond)
        if _keras_shape_inference():
            # `fit` under a strategy builds its state from the MEAN of a distributed batch
            # (floats) in a scratch graph that never runs: only shapes matter there.
            images = tf.cast(images, tf.int32)
        images, cond = self.check_inputs(images, cond)
        return super().__call__(images, cond, training=training, **kwargs)

    def save(self, *args, **kwargs):
        """`keras.Model.save`, after building the weights (a model never called would save
        none, and load with fresh random ones)."""
        self.build()
        return super().save(*args, **kwargs)

    def fit(self, x=None, *args, **kwargs):
        """`keras.Model.fit`, with the data checked first. A `tf.data.Dataset` is shuffled by
        its own pipeline, so `shuffle` defaults to False for one (Keras's default True would
        only warn that it is ignored)."""
        self.check_data(x)
        if isinstance(x, tf.data.Dataset) and not args:
            kwargs.setdefault("shuffle", False)
        return super().fit(x, *args, **kwargs)

    def evaluate(self, x=None, *args, **kwargs):
        self.check_data(x)
        return super().evaluate(x, *args, **kwargs)

    def predict(self, x, *args, **kwargs):
        self.check_data(x)
        return super().predict(x, *args, **kwargs)

    def check_data(self, x):
        """What `fit`, `evaluate` and `predict` get, checked before Keras traces a step (a
        failed trace would leave the model's step functions half built).

        Arrays and tensors are checked in full, as `log_prob` checks them; a `tf.data.Dataset`
        by its element spec (dtype, shape, conditioning keys), its values by the in-graph
        checks of `model(x)`. Other inputs (generators, `PyDataset`) meet those in-graph
        checks only.
        """
        if isinstance(x, tf.data.Dataset):
            spec = x.element_spec
            spec = spec[0] if isinstance(spec, tuple) else spec
            images, cond = inputs_lib.split_inputs(spec)
            inputs_lib.check_images_spec(images, self.bits, self.channels, self.image_size,
                                         self.image_size)
            missing = set(self.cond_spec) - set(cond)
            if missing:
                raise ValueError(
                    f"this model takes conditioning {sorted(self.cond_spec)}; the dataset's "
                    f"elements lack {sorted(missing)} (they hold {sorted(cond) or 'none'} "
                    f"besides 'images').")
        elif isinstance(x, (dict, np.ndarray, tf.Tensor)):
            self.check_inputs(*inputs_lib.split_inputs(x))

    def call(self, inputs, cond=None, training=None):
        images, cond = inputs_lib.split_inputs(inputs, cond)
        return self.outputs(images, cond, training=bool(training))

    def log_prob(self, images, cond=None, slices_per_call=None):
        """Exact log-likelihood.

        Args:
          images: int32/uint8 `(B, H, W, C)` in `[0, 2**bits)`.
          cond: conditioning dict, as built.
          slices_per_call: None (every slice of every image in one network call), or at most
            this many (image, slice) pairs per call for a kind with slices: the memory of a
            training batch of that many slices (exact evaluation of large images). Kinds
            without slices compute the batch in one call either way.

        Returns:
          float32 `(B,)`, natural log.
        """
        images, cond = self.check_inputs(images, cond)
        self.build()
        if slices_per_call:
            hparams.check_positive("slices_per_call", slices_per_call)
            return self._log_prob_chunked(images, cond, int(slices_per_call))
        return self.log_prob_from_outputs(images, cond, self.outputs(images, cond))

    def log_prob_map(self, images, cond=None):
        """Per-sub-pixel log-likelihoods in image layout: where an image is unlikely.

        Entry `(b, i, j, c)` is `log p(x_ijc | the sub-pixels before it in the model's
        ordering, cond)`; sub-pixels the model is given rather than generating (e.g. the
        slices before an SPN's `slice_range`, a multiscale `cond["low_res"]`) are 0. The map
        sums over `(H, W, C)` to `log_prob` (the same terms; only the order of the float
        additions differs). The tool of likelihood-based outlier detection: a low region is
        one the model found surprising.

        Args:
          images: int32/uint8 `(B, H, W, C)` in `[0, 2**bits)`.
          cond: conditioning dict, as built.

        Returns:
          float32 `(B, H, W, C)`, natural log.
        """
        images, cond = self.check_inputs(images, cond)
        self.build()
        return self.log_prob_from_outputs(images, cond, self.outputs(images, cond),
                                          per_subpixel=True)

    def outputs(self, images, cond, training=False):
        """The network's outputs for checked `images` and `cond` (`check_inputs`), in the
        kind's own layout (what `model(x)` returns). With `log_prob_from_outputs`, the
        interface a composite uses on the networks it holds (upscaling, video), and the
        training loss's: no input checks, no Keras call wrapping.

        Args:
          images: int32 `(B, *example_shape)`.
          cond: dict of checked conditioning tensors (may be empty).
          training: Python bool.
        """
        raise NotImplementedError

    def log_prob_from_outputs(self, images, cond, outputs, per_subpixel=False):
        """`log_prob` (float32 `(B,)`) of checked `images` from this model's `outputs` for
        them; with `per_subpixel`, the terms in image layout instead (`log_prob_map`'s float32
        `(B, *example_shape)`)."""
        if per_subpixel:
            return self._log_prob_map_from_outputs(images, cond, outputs)
        return self._log_prob_from_outputs(images, cond, outputs)

    def bits_per_dim(self, images, cond=None):
        """`-log_prob / (H * W * C * ln 2)`, float32 `(B,)`."""
        return bits_per_dim(self.log_prob(images, cond), self.num_dims)

    def check_inputs(self, images, cond):
        images = inputs_lib.check_images(images, self.bits, self.channels, self.image_size,
                                         self.image_size)
        cond = self.check_cond(cond, images.shape[0])
        return images, cond

    def check_cond(self, cond, batch_size=None):
        """Validates `cond` against `cond_spec`; models that take more keys extend this."""
        return inputs_lib.check_cond(cond, self.cond_spec, batch_size)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        images, cond = inputs_lib.split_inputs(x)
        if _keras_shape_inference():
            images = tf.cast(images, tf.int32)
        else:
            # Gated by the range checks, as `model(x)` gates them: the loss reads the images
            # too (a gather, whose gradient would otherwise race the checks and fail first
            # with "segment_ids ... out of range").
            images, _ = self.check_inputs(images, cond)
        log_prob = self._log_prob_from_outputs(images, cond, y_pred)
        loss = tf.reduce_mean(bits_per_dim(log_prob, self.num_dims))
        for extra in self.losses:
            loss = loss + tf.cast(extra, loss.dtype)
        # Keras sums the replicas' gradients and its loss tracker multiplies the loss by the
        # replica count: scale as Keras's own `compute_loss` does, so the step is a mean.
        return loss / tf.distribute.get_strategy().num_replicas_in_sync

    def sample(self, batch_size, seed, temperature=1.0, cond=None, given=None, compiled=True,
               progress=None):
        """Draws images.

        Args:
          batch_size: positive int.
          seed: int or int32 `(2,)`: stateless; the same seed gives the same images.
          temperature: float >= 0 (0 → the most likely value of every sub-pixel).
          cond: conditioning dict with `batch_size` rows, as built.
          given: model-specific known content (see the subclass), returned unchanged.
          compiled: run the model's XLA-compiled loop (traced once per batch size); for the
            same seed it gives the reference sampler's (`compiled=False`) images except for
            rare float-rounding flips (an observed rate, not a promise).
          progress: None, or `progress(stage, done, total)`, called after each step the
            sampler runs from the host: an SPN's slices (each network of an upscaling model
            counts its own), a video's frames. Raster and multiscale images are one compiled
            call (one graph call each step for the reference raster sampler) and report
            nothing before they return.

        Returns:
          int32 `(batch_size, H, W, C)` in `[0, 2**bits)`.
        """
        batch_size = inputs_lib.check_batch_size(batch_size)
        seed = inputs_lib.check_seed(seed)
        temperature = float(temperature)
        if not math.isfinite(temperature) or temperature < 0:
            raise ValueError(f"temperature must be a finite float >= 0, got {temperature}.")
        cond = self.check_cond(cond, batch_size)
        self.build()
        with sampling.reporting_progress(progress):
            return self._sample(batch_size, seed, tf.fill([batch_size], np.float32(temperature)),
                                cond, given, "xla" if compiled else "reference")

    def sample_rows(self, seed, temperature, cond=None, given=None, jit_compile=False):
        """All rows at once, each drawn from its own seed; graph-safe (any batch size).

        Row i's noise comes only from `seed[i]` (`sampling.draw_uniform` with per-row seeds)
        and `temperature[i]` scales only row i, so how rows are grouped (by a client, or by a
        server's batcher) never changes which draw a row gets: "same noise, batched
        arithmetic". Row i equals `sample(1, seed[i], temperature[i], cond[i], given[i])`
        except where batched arithmetic rounds a logit across a CDF boundary of that row's
        noise: rare, measured (`benchmarks/agreement.py`), not promised. This is the SavedModel
        `sample` signature's body; inputs are checked by the caller (`spn_tf.export`).

        Args:
          seed: int32 `(B, 2)`, one stateless seed per row.
          temperature: float32 `(B,)`, >= 0.
          cond: conditioning dict of tensors with `B` rows, as `sample` takes it, or None.
          given: the model's `given` dict: tensors with `B` rows (bool masks included), and
            Python values shared by every row (e.g. `num_slices`); or None.
          jit_compile: run the sampling loops XLA-compiled (what `sample` runs) instead of as
            a plain graph.

        Returns:
          int32 `(B, H, W, C)`.
        """
        self.build()
        seed = tf.convert_to_tensor(seed, tf.int32)
        batch_size = seed.shape[0] if seed.shape[0] is not None else tf.shape(seed)[0]
        return self._sample(batch_size, seed, temperature, dict(cond or {}), given,
                            "xla" if jit_compile else "graph")

    def sample_loop(self, name, loop, fn):
        """`fn` as the `tf.function` that `loop` (`"graph"`, `"xla"` or `"coding"`) runs.

        One function per `(name, loop)`, kept outside Keras's tracking, so it traces once per
        input shape (call it with tensors only: temperature as a `(B,)` tensor).

        A `"graph"` loop is traced for a plain graph's costs, which XLA removes by itself:
        every weight is read once before the loops (a `keras.StatelessScope` maps each
        variable to one read, so loop bodies capture it instead of reading it at every step),
        and one-row convolutions run as matrix products of weights gathered once
        (`spn_tf.layers.masked_conv2d.one_row_matmul`). A `"coding"` loop is the `"graph"`
        loop with its draws made by the running coder (`coded_sample`).
        """
        loops = self.__dict__.setdefault("_sample_loops", {})
        if (name, loop) not in loops:
            def traced(*args):
                if loop == "xla":
                    return fn(*args)
                with keras.StatelessScope(state_mapping=[(v, tf.identity(v.value))
                                                         for v in self.variables]):
                    with one_row_matmul(self._flatten_layers()), contextlib.ExitStack() as stack:
                        if loop == "coding":
                            stack.enter_context(sampling.host_draws())
                        return fn(*args)
            loops[name, loop] = sampling.compile_loop(traced, jit_compile=loop == "xla")
        return loops[name, loop]

    def coded_sample(self, coder, batch_size, cond=None, given=None):
        """The sampler run with `coder` in place of randomness (`sampling.coding`): the image
        whose sub-pixels the coder picks, in the model's own order, with the fast loops run as
        plain graphs (the same trace for the encoder and the decoder). `spn_tf.codec`'s core.

        Args:
          coder: see `sampling.coding`.
          batch_size: rows (below `sampling.MAX_CODED_ROWS`).
          cond, given: as `sample` takes them (checked here, as there).

        Returns:
          int32 `(batch_size, *example_shape)`.
        """
        batch_size = inputs_lib.check_batch_size(batch_size)
        if batch_size >= sampling.MAX_CODED_ROWS:
            raise ValueError(f"a coding batch holds fewer than {sampling.MAX_CODED_ROWS} rows, "
                             f"got {batch_size}.")
        cond = self.check_cond(cond, batch_size)
        self.build()
        with sampling.coding(coder):
            return self._sample(batch_size, tf.zeros([2], tf.int32),
                                tf.ones([batch_size], tf.float32), cond, given, "coding")

    # --- What the tools ask a model kind (see the class doc). ---

    kind = None  # the name `spn_tf.models.build` knows it by, set by each kind
    # Sampler calls below which a one-shot run (`spn_tf.sample --sampler=auto`) uses the
    # reference sampler rather than compiling (0: always compile).
    reference_sampler_calls = 0
    produces_clips = False  # `sample` draws clips from first frames (video kinds)

    @staticmethod
    def preset(name, image_size):
        """The hyperparameters of preset `name` at `image_size` (a new dict): each kind's
        `presets.preset` (raises `ValueError` for an unknown name)."""
        raise NotImplementedError

    @property
    def example_shape(self):
        """One example's shape: `(H, W, C)`."""
        return (self.image_size, self.image_size, self.channels)

    def serving_signatures(self):
        """`{name: (body, [tf.TensorSpec inputs])}` of the SavedModel (`spn_tf.models.serving`):
        `log_prob`, `log_prob_uint8`, `sample` and `describe`; kinds add their own."""
        cond = self.serving_cond_specs()
        return {
            "log_prob": (signatures.log_prob, [signatures.image_spec("images", self)] + cond),
            "log_prob_uint8": (signatures.log_prob, [signatures.image_spec(
                "images", self, dtype=tf.uint8)] + cond),
            "sample": (signatures.sample, signatures.draw_specs() + cond),
            "describe": (signatures.describe, signatures.describe_spec()),
        }

    def serving_cond_specs(self):
        """Signature inputs for the conditioning the model takes."""
        return signatures.cond_specs(self.cond_spec)

    def input_value_bits(self, name):
        """Bits of the image-valued signature input `name`: its values lie in
        `[0, 2**bits)` (`mask`: 1)."""
        return 1 if name == "mask" else self.bits

    def serving_metadata(self):
        """Kind-specific facts for the export's metadata file (e.g. the subscale factor)."""
        return {}

    def given_from_image(self, images):
        """`(given, cond)` for `sample` from int `(B, h, w, C)` copies of one image at the
        model's bits (`spn_tf.sample --given`).

        Raises:
          ValueError: the model takes no image of that size (the message says which).
        """
        raise ValueError(f"{type(self).__name__} takes no --given image.")

    def _log_prob_chunked(self, images, cond, slices_per_call):
        """`log_prob` of checked inputs with at most `slices_per_call` slices per network call
        (the kinds with slices override it; the others compute every image in one call)."""
        del slices_per_call
        return self.log_prob_from_outputs(images, cond, self.outputs(images, cond))

    @property
    def coding_plan(self):
        """How `spn_tf.codec` codes this kind's examples (a `CodingPlan`): by default every
        sub-pixel is one draw of the sampler, in one noise tensor of the example's shape."""
        return CodingPlan(parts=lambda images: (None, [images]), given=lambda raw: None)

    @property
    def ordering(self):
        """The model's ordering as `spn_tf.check` and the test harness read it: an
        `spn_tf.orderings.Ordering` (generation order, modelled sub-pixels, the networks
        checked one by one, the tiny config, a reach probe, random conditioning)."""
        raise NotImplementedError(f"{type(self).__name__} does not state its ordering.")

    def _ordering(self, order, description, tiny_overrides=(), **fields):
        """An `Ordering` with this model's defaults for the fields not given: `modelled` the
        sub-pixels with a step, the model itself its one unit, the tiny config on 2x2 images
        at the fewest bits the head takes (updated by `tiny_overrides`), random conditioning
        of its `cond_spec` and no `given`."""
        defaults = dict(
            modelled=None if order is None else order >= 0, units=((type(self).__name__, self),),
            tiny_config=dict(self.get_config(), image_size=2,
                             bits=1 if self.head == "categorical" else 2,
                             **dict(tiny_overrides)),
            conditioning=lambda batch, rng: (self._random_cond(batch, rng), None))
        return orderings.Ordering(description=description, order=order,
                                  **{**defaults, **fields})

    def _random_cond(self, batch, rng):
        """Random conditioning of `batch` rows of what `cond_spec` names (numpy)."""
        cond = {}
        if "label" in self.cond_spec:
            cond["label"] = rng.integers(0, self.cond_spec["label"], batch).astype(np.int32)
        if "embedding" in self.cond_spec:
            cond["embedding"] = rng.normal(size=(batch, self.cond_spec["embedding"])).astype(
                np.float32)
        if "text" in self.cond_spec:
            cond["text"] = np.array(["a photo"] * batch, object)
        return cond

    def __repr__(self):
        cond = f", cond={self.cond_spec}" if self.cond_spec else ""
        return (f"<{type(self).__name__} {self.image_size}x{self.image_size}x{self.channels} "
                f"at {self.bits} bits{cond}: {self.ordering.description}>")

    def summary(self, *args, **kwargs):
        print_fn = kwargs.get("print_fn") or print
        print_fn(repr(self))
        self.build()
        return super().summary(*args, **kwargs)

    def get_config(self):
        return {"name": self.name, "image_size": self.image_size, "channels": self.channels,
                "bits": self.bits, "cond": self.cond_spec or None, "head": self.head,
                "num_mixtures": self.num_mixtures}

    def _log_prob_from_outputs(self, images, cond, outputs):
        """float32 `(B,)`: see `log_prob_from_outputs`."""
        raise NotImplementedError

    def _log_prob_map_from_outputs(self, images, cond, outputs):
        """float32 `(B, H, W, C)` terms of `_log_prob_from_outputs` in image layout."""
        raise NotImplementedError

    def _sample(self, batch_size, seed, temperature, cond, given, loop):
        """Images from an int32 `(2,)` seed, float32 `(batch_size,)` temperatures, checked
        `cond` and `given`, the sampling loops run as `loop` says: `"reference"`, `"graph"` or
        `"xla"` (see the module doc)."""
        raise NotImplementedError
