"""`DensityModel`: the verbs every spn_tf model speaks.

* `model(images, cond=None)` → the network's outputs (logits, in the model's own layout);
* `model.log_prob(images, cond=None)` → float32 `(batch,)`, exact natural-log likelihood;
* `model.sample(batch_size, seed, temperature=1.0, cond=None, given=None)` → int32 images;
* `fit` loss: bits per dimension, `-log_prob / (H * W * C * ln 2)`, averaged over the batch.

`fit` feeds `x` as an image batch or a dict `{"images": ..., "label": ..., "embedding": ...}`;
no targets. Subclasses implement `_outputs(images, cond, training)` (what `call` returns),
`_log_prob_from_outputs(images, cond, outputs)` (and its per-sub-pixel map) and
`_sample(batch_size, seed, temperature, cond, given, draws)`, where `draws`
(`spn_tf.sampling.Draws`) carries the run's mode: `reference` (one network call per step,
eagerly), `graph` (the fast `tf.while_loop`s as a plain `tf.function`), `xla` (the same loops
XLA-compiled; what `sample` runs by default) or `coding` (the codec's).
"""

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
    `spn_tf.codec`). A composite uses the networks it holds through `call` (called directly:
    no input checks), `log_prob_from_outputs` and `run_sampler`, the same public verbs the
    training loss and the export use. `example_shape`, `num_dims` and `num_values` are plain
    attributes.

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
        self.num_values = 2 ** self.bits
        self._set_example_shape((self.image_size, self.image_size, self.channels))
        self._loops = sampling.Loops()  # its traced samplers (a plain object: not tracked)

    def _scale(self, images, bits=None):
        """Integers in `[0, 2**bits)` → floats in `[-1, 1]` in the compute dtype."""
        return inputs_lib.scale_images(images, bits or self.bits, self.compute_dtype)

    def _dummy_inputs(self, batch_size=1):
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
        images, cond = self._dummy_inputs()
        self._outputs(images, cond, False)
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
        self._check_data(x)
        if isinstance(x, tf.data.Dataset) and not args:
            kwargs.setdefault("shuffle", False)
        return super().fit(x, *args, **kwargs)

    def evaluate(self, x=None, *args, **kwargs):
        self._check_data(x)
        return super().evaluate(x, *args, **kwargs)

    def predict(self, x, *args, **kwargs):
        self._check_data(x)
        return super().predict(x, *args, **kwargs)

    def _check_data(self, x):
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
        """The network's outputs for checked images and `cond` (`check_inputs`), in the
        kind's own layout (what `model(x)` returns after checking its inputs). Called
        directly, as `model.call(images, cond, training=False)`, it is with
        `log_prob_from_outputs` the interface a composite uses on the networks it holds
        (upscaling, video), and the training loss's: no input checks, no Keras call
        wrapping.

        Args:
          inputs: int32 `(B, *example_shape)` images, or a dict of them (`"images"`) and the
            conditioning.
          cond: dict of checked conditioning tensors (may be empty or None).
          training: Python bool.
        """
        images, cond = inputs_lib.split_inputs(inputs, cond)
        return self._outputs(images, cond or {}, bool(training))

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
        return self.log_prob_from_outputs(images, cond, self._outputs(images, cond, False))

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
        return self.log_prob_from_outputs(images, cond, self._outputs(images, cond, False),
                                          per_subpixel=True)

    def _outputs(self, images, cond, training):
        """The network's outputs for checked `images` and `cond`: what `call` returns."""
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
        images = inputs_lib.check_images(images, self.bits, self.channels,
                                         *self.example_shape[:2])
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

    def sample(self, batch_size, seed, temperature=1.0, cond=None, given=None, mode="xla",
               progress=None):
        """Draws images.

        Args:
          batch_size: positive int.
          seed: int or int32 `(2,)`: stateless; the same seed gives the same images.
          temperature: float >= 0 (0 → the most likely value of every sub-pixel).
          cond: conditioning dict with `batch_size` rows, as built.
          given: model-specific known content (see the subclass), returned unchanged.
          mode: `"xla"` (the model's XLA-compiled loops, traced once per batch size),
            `"graph"` (the same loops as a plain graph) or `"reference"` (one network call
            per step); a `spn_tf.sampling.Mode` or its name. For the same seed the modes give
            the same images except for rare float-rounding flips (an observed rate, not a
            promise).
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
        mode = sampling.Mode.of(mode)
        if mode is sampling.Mode.CODING:
            raise ValueError("mode='coding' draws with an entropy coder: spn_tf.codec runs it "
                             "(run_sampler(..., mode='coding', coder=...)).")
        temperature = float(temperature)
        if not math.isfinite(temperature) or temperature < 0:
            raise ValueError(f"temperature must be a finite float >= 0, got {temperature}.")
        cond = self.check_cond(cond, batch_size)
        return self.run_sampler(seed, tf.fill([batch_size], np.float32(temperature)), cond,
                                given, mode=mode, progress=progress)

    def run_sampler(self, seed, temperature, cond=None, given=None, *, mode="graph", coder=None,
                    progress=None):
        """The sampler, inputs unchecked and graph-safe (any batch size): what `sample`, the
        composites (of their networks), the export signatures and the codec call.

        With per-row seeds row i's noise comes only from `seed[i]` (`sampling.draw_uniform`)
        and `temperature[i]` scales only row i, so how rows are grouped (by a client, or by a
        server's batcher) never changes which draw a row gets: "same noise, batched
        arithmetic". Row i equals `sample(1, seed[i], temperature[i], cond[i], given[i])`
        except where batched arithmetic rounds a logit across a CDF boundary of that row's
        noise: rare, measured (`benchmarks/agreement.py`), not promised.

        Args:
          seed: int32 `(2,)`, one stateless stream for the batch (what `sample` passes), or
            `(B, 2)`, one seed per row (the signatures').
          temperature: float32 `(B,)`, >= 0: the batch size.
          cond: conditioning dict of tensors with `B` rows, as `sample` takes it, or None.
          given: the model's `given` dict: tensors with `B` rows (bool masks included), and
            Python values shared by every row (e.g. `num_slices`); or None.
          mode: a `spn_tf.sampling.Mode` or its name (see `sample`); `"coding"` runs the
            `graph` loops with `coder` in place of randomness (`spn_tf.sampling.Draws`; fewer
            than `sampling.MAX_CODED_ROWS` rows).
          coder: the coder of a `"coding"` run (and only of one).
          progress: as in `sample`.

        Returns:
          int32 `(B, *example_shape)`.
        """
        mode = sampling.Mode.of(mode)
        if (coder is not None) != (mode is sampling.Mode.CODING):
            raise ValueError(f"a coder is given with mode='coding' and only then; got "
                             f"mode={mode.value!r} and coder={coder!r}.")
        self.build()
        temperature = tf.convert_to_tensor(temperature, tf.float32)
        batch_size = (temperature.shape[0] if temperature.shape[0] is not None
                      else tf.shape(temperature)[0])
        draws = sampling.Draws(mode, self._loops, coder, progress)
        cond = dict(cond or {})
        if mode is not sampling.Mode.CODING:
            return self._sample(batch_size, seed, temperature, cond, given, draws)
        with self._loops.slot.holding(coder):
            return self._sample(batch_size, seed, temperature, cond, given, draws)

    def _traced(self, name, draws, fn):
        """`fn(draws, *tensors)` as this model's traced function of `draws.mode`
        (`sampling.Loops.traced`): call it with tensors only."""
        return self._loops.traced(name, draws, fn, self.variables)

    # --- What the tools ask a model kind (see the class doc). ---

    kind = None  # the name `spn_tf.models.build` knows it by, set by each kind
    # `preset(name, image_size)` → the hyperparameters of a preset (a new dict; `ValueError`
    # for an unknown name): each kind's `presets.preset`, as a staticmethod.
    preset = None
    export_class = signatures.ExportModule  # its `export_module`'s class
    # Its networks and sampler hold no fixed image size: `set_sample_size` may change it.
    fully_convolutional = False

    def _set_example_shape(self, shape, num_dims=None):
        """`example_shape` (one example's shape, `(H, W, C)` for an image kind) and
        `num_dims` (its modelled sub-pixels: all by default), plain attributes."""
        self.example_shape = tuple(int(n) for n in shape)
        self.num_dims = int(np.prod(self.example_shape) if num_dims is None else num_dims)

    @property
    def export_module(self):
        """What the SavedModel serves and how a served or given image is read: the kind's
        `spn_tf.models.signatures.ExportModule` (`spn_tf/models/<kind>/export.py`)."""
        return self.export_class(self)

    def _log_prob_chunked(self, images, cond, slices_per_call):
        """`log_prob` of checked inputs with at most `slices_per_call` slices per network call
        (the kinds with slices override it; the others compute every image in one call)."""
        del slices_per_call
        return self.log_prob_from_outputs(images, cond, self._outputs(images, cond, False))

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

    def _sample(self, batch_size, seed, temperature, cond, given, draws):
        """Images from an int32 seed (`(2,)` or per row `(B, 2)`), float32 `(batch_size,)`
        temperatures, `cond` and `given`, the loops run as `draws` says
        (`spn_tf.sampling.Draws`: its mode, coder and progress)."""
        raise NotImplementedError


def set_sample_size(model, height, width):
    """A fully convolutional kind only (`model.fully_convolutional`): its sampler (and so
    `spn_tf.codec`) makes, and `log_prob` scores, `height x width` images from now on, with
    the same weights (`example_shape` follows; training still checks the built `image_size`).
    A function, not a model verb: only the codec needs it."""
    if not model.fully_convolutional:
        raise ValueError(f"a {model.kind} model samples only at its own size "
                         f"{model.image_size}x{model.image_size}.")
    hparams.check_positive("height", height)
    hparams.check_positive("width", width)
    model._set_example_shape((height, width, model.channels))
