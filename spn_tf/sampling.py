"""Sampling loops over a model's step function; they know orderings, never a model class.

All randomness is drawn once, before a loop, as uniform noise of the image's shape
(`draw_uniform`), and each sub-pixel is drawn by inverse CDF inside the loop (`head.draw` of
the model's head, `spn_tf.distributions`). So a loop run eagerly and the same loop compiled with
XLA consume the same noise (XLA's stateless RNG is another stream) and give the same
images except where their logits, which differ in float rounding, put a CDF boundary on the
other side of a uniform draw: observed, not guaranteed (`benchmarks/agreement.py`).

Kinds of loop:
  * `raster_sample` — one sub-pixel per step in raster order; `network` is the whole network
    (the reference: one network call per sub-pixel, from Python, the network a graph
    function made once by `Loops.reference`, so it traces once per shape).
    `compiled_raster_sample` is the same loop as one `tf.while_loop` (a benchmark's baseline).
  * `cached_raster_sample` — the same images as `raster_sample` from a `MaskedDecoder`
    computing only what each step needs: its vertical stack on a strip of rows once per row,
    its horizontal stack on a window of one row per sub-pixel, attention as one query per
    pixel over cached keys and values.
  * `channel_parallel_sample` — all positions of a group at once, channels R, G, B in turn
    (the multiscale groups: one call per channel).

`sample_raster` picks between the first two by the run's mode: that choice is made there
only. A model's `Loops` keeps one traced function per sampler and mode (`Loops.traced`),
traced once per (batch, shape): temperature and noise are tensors.

Modes (`Mode`, chosen by the caller of `DensityModel.run_sampler` and passed down as a
`Draws` value; nothing else selects an algorithm):
  * `reference` — the loops above with the full network once per step, from Python;
  * `graph` — the cached loops as one plain `tf.function` (what a CPU export runs): every
    weight read once before the loops, and the one-row convolutions of the per-step windows
    as matrix products of weights gathered once (`MaskedDecoder.one_row_weights`);
  * `xla` — the same cached loops XLA-compiled (what `sample` runs by default);
  * `coding` — the `graph` loops with an entropy coder in place of randomness
    (`spn_tf.codec`): the noise a loop reads becomes what the coder needs to know at each draw
    (the encoder: the true value and the batch row of every sub-pixel; the decoder: the row),
    and every draw becomes a host call to the coder with the head's value table, which picks
    the value: the encoder records the table and returns the true value, the decoder decodes
    the value from its bit stream with the same table. So both directions run the same loop,
    in the model's own order, as plain graphs (a host call cannot run inside XLA).

Progress: a compiled loop is one XLA call and cannot report from inside (a host callback
would break the compilation), but the samplers that run stages from Python (an SPN's slices,
a video's frames) call `Draws.report` after each.
"""

import contextlib
import dataclasses
import enum
import functools
import threading
from typing import Any, Callable, Optional

import keras
import tensorflow as tf

# A coder's noise carries `row * CARRIER_BASE + value` per sub-pixel (exact in float32 for
# rows below 2**16: 2**24 / 256).
CARRIER_BASE = 256
MAX_CODED_ROWS = 2 ** 16


class Mode(enum.Enum):
    """How a sampler runs its loops (module doc)."""
    REFERENCE = "reference"
    GRAPH = "graph"
    XLA = "xla"
    CODING = "coding"

    @classmethod
    def of(cls, mode):
        """`mode` (a `Mode` or its name) as a `Mode`; a clear error for anything else."""
        try:
            return mode if isinstance(mode, cls) else cls(mode)
        except ValueError:
            raise ValueError(f"mode must be one of {[m.value for m in cls]}, got "
                             f"{mode!r}.") from None

    @property
    def cached(self):
        """The fast loops (everything but `reference`), traced into one function."""
        return self is not Mode.REFERENCE

    @property
    def one_row_matmul(self):
        """Plain-graph loops compute one-row convolutions as matrix products (module doc);
        under XLA the convolution is the faster of the two, and XLA hoists what is fixed."""
        return self in (Mode.GRAPH, Mode.CODING)


class CoderSlot:
    """Where the traced `coding` loops of one model find the coder of the run in progress.

    A traced loop's host calls run on TensorFlow's threads and can only reach an object the
    trace captured: this slot, which `DensityModel.run_sampler(mode="coding", coder=...)`
    fills for the duration of its call (one coding run at a time per model; others wait).
    """

    def __init__(self):
        self._coder = None
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def holding(self, coder):
        """Inside the block the slot holds `coder`."""
        with self._lock:
            self._coder = coder
            try:
                yield
            finally:
                self._coder = None

    def draw(self, logits, carriers):
        return self._coder.draw(logits, carriers).astype("int32")


@dataclasses.dataclass(frozen=True)
class Draws:
    """How one sampler run draws: its `mode`, the model's `Loops`, and for `coding` its coder.

    Attributes:
      mode: a `Mode`.
      loops: the `Loops` of the model that runs (its functions, its `CoderSlot`).
      coder: `coding` only: `noise(shape)` → float32 carriers of `shape` (`row *
        CARRIER_BASE + value`, the value 0 where the coder does not know it), called in place
        of a noise draw, and `draw(logits, carriers)` → int32 values of `carriers`' shape,
        called from the host calls with the head's value logits `(*carriers.shape,
        num_values)` (float32; float64 for the codec's float64 copy of a model).
      progress: None, or `progress(stage, done, total)` (`report`).
    """
    mode: Mode
    loops: "Loops"
    coder: Any = None
    progress: Optional[Callable] = None

    def for_trace(self):
        """What a traced loop may keep: the mode and the loops (the same for every run of the
        function), not this run's coder or progress."""
        return Draws(self.mode, self.loops)

    def report(self, stage, done, total):
        """Tells the caller that `done` of `total` host-side steps of `stage` (e.g.
        "slices", "frames") are finished. Nothing without a callback, and nothing while
        tracing a graph (where it would fire once, at trace time)."""
        if self.progress is not None and tf.executing_eagerly():
            self.progress(stage, done, total)

    def uniform(self, seed, shape):
        """`draw_uniform(seed, shape)`; a `coding` run's carriers instead."""
        if self.mode is Mode.CODING:
            return tf.convert_to_tensor(self.coder.noise(tuple(int(n) for n in shape)),
                                        tf.float32)
        return draw_uniform(seed, shape)

    def draw(self, head, params, uniform, temperature):
        """`head.draw(params, uniform, temperature)`; in a `coding` loop the coder's value at
        each sub-pixel instead (a host call with the value table)."""
        if self.mode is not Mode.CODING:
            return head.draw(params, uniform, temperature)
        values = tf.numpy_function(self.loops.slot.draw, [head.value_logits(params), uniform],
                                   tf.int32, stateful=True)
        return tf.reshape(values, tf.shape(uniform))


class Loops:
    """One model's sampling functions, made once: its traced loops per `(name, mode)` and
    its reference networks, plus the `CoderSlot` of its coding loops.

    A model keeps one in an attribute (a plain object: Keras tracks layers, variables and
    containers, not this), so each function traces once per input shape.
    """

    def __init__(self):
        self.slot = CoderSlot()
        self._functions = {}
        self._lock = threading.Lock()

    def traced(self, name, draws, fn, variables):
        """`fn(draws, *tensors)` as the function of `draws.mode` takes it: the `tf.function`
        of a cached mode (`graph` / `coding`: plain, every one of `variables` read once
        before the loops; `xla`: XLA-compiled), or `fn` run eagerly with `draws`
        (`reference`). Call it with tensors only (temperature as a `(B,)` tensor)."""
        if not draws.mode.cached:
            return functools.partial(fn, draws)
        key = (name, draws.mode)
        with self._lock:
            if key not in self._functions:
                self._functions[key] = _trace(fn, draws.for_trace(), variables)
            return self._functions[key]

    def reference(self, network, preprocess):
        """`network(preprocess(images), context=context)` as a graph function (no XLA) for
        `raster_sample`, made once per network.

        A trace costs far more than a call (0.2-0.5 s against ~40 ms for a `small` model), so
        a function made per call would dominate the reference sampler's time.
        """
        key = ("reference", id(network))
        with self._lock:
            if key not in self._functions:
                self._functions[key] = tf.function(
                    lambda images, context: network(preprocess(images), context=context),
                    autograph=False)
            return self._functions[key]


def _trace(fn, draws, variables):
    def run(*args):
        if draws.mode is Mode.XLA:
            return fn(draws, *args)
        # A plain graph reads a variable at every use inside a loop; XLA hoists the reads by
        # itself. A stateless scope maps each variable to one read, taken here.
        with keras.StatelessScope(state_mapping=[(v, tf.identity(v.value)) for v in variables]):
            return fn(draws, *args)

    return tf.function(run, jit_compile=draws.mode is Mode.XLA, autograph=False)


def draw_uniform(seed, shape):
    """float32 noise in `[0, 1)` of `shape` `(B, ...)`.

    Args:
      seed: int32 `(2,)`, one stateless seed for the whole batch (the rows are consecutive
        parts of one stream), or int32 `(B, 2)`, one seed per row: row i is then the noise
        that `seed[i]` alone gives a batch of one, whatever the other rows are. Both agree at
        B = 1: a stream's first `prod(shape[1:])` numbers do not depend on the shape asked.
      shape: the noise's shape; `shape[0]` may be a scalar tensor (a signature's batch).
    """
    seed = tf.convert_to_tensor(seed, tf.int32)
    if seed.shape.rank == 1:
        return tf.random.stateless_uniform(shape, seed=seed, dtype=tf.float32)
    return tf.map_fn(lambda row: tf.random.stateless_uniform(shape[1:], seed=row,
                                                             dtype=tf.float32),
                     seed, fn_output_signature=tf.float32)


def split_seed(seed, num):
    """`num` independent seeds from one: int32 `(2,)` → `num` of `(2,)`; per-row seeds
    `(B, 2)` → `num` of `(B, 2)`, row i's split from `seed[i]` alone (as a batch of one)."""
    seed = tf.convert_to_tensor(seed, tf.int32)
    if seed.shape.rank == 1:
        return tf.unstack(tf.random.experimental.stateless_split(seed, num), axis=0)
    split = tf.map_fn(lambda row: tf.random.experimental.stateless_split(row, num), seed,
                      fn_output_signature=tf.int32)
    return tf.unstack(split, num=num, axis=1)


def fold_in_seed(seed, index):
    """A new seed from `seed` and a step `index` (`stateless_fold_in`), row by row for per-row
    seeds `(B, 2)` as `draw_uniform` takes them."""
    seed = tf.convert_to_tensor(seed, tf.int32)
    if seed.shape.rank == 1:
        return tf.random.experimental.stateless_fold_in(seed, index)
    return tf.map_fn(lambda row: tf.random.experimental.stateless_fold_in(row, index), seed,
                     fn_output_signature=tf.int32)


def _positions(shape):
    batch, height, width, channels = shape
    return [(i, j, c) for i in range(height) for j in range(width) for c in range(channels)]


def _set_subpixel(images, i, j, c, values):
    """`images[:, i, j, c] = values` without Python-side indexing into variables (a scatter:
    in place where the runtime can, not a copy of the whole batch per step)."""
    return _set_at(images, [i, j, c], values)


def _set_at(x, position, values):
    """`x[:, *position] = values` for every example: `values` `(B, ...)` of `x[:, *position]`'s
    shape."""
    batch = tf.shape(x)[0]
    index = tf.stack([tf.range(batch)] + [tf.fill([batch], tf.cast(p, tf.int32))
                                           for p in position], axis=1)
    return tf.tensor_scatter_nd_update(x, index, tf.cast(values, x.dtype))


def _draw(draws, head, outputs, images, known, uniform, temperature, i, j, c):
    drawn = draws.draw(head, outputs[:, i, j, c], uniform[:, i, j, c], temperature)
    return tf.where(known[:, i, j, c], images[:, i, j, c], drawn)


def raster_sample(network, images, known, uniform, temperature, context=None, on_step=None, *,
                  head, draws):
    """Reference raster sampler: the full network once per sub-pixel, called from Python.

    Args:
      network: `(images int32 (B, H, W, C), context)` → the head's outputs
        `(B, H, W, C, head.num_params)`, causal in raster order; pass a function made once by
        `Loops.reference` (any callable works, eagerly and slowly).
      images: int32 `(B, H, W, C)`: given values where `known`, anything elsewhere.
      known: bool `(B, H, W, C)`: sub-pixels kept as given.
      uniform: float32 `(B, H, W, C)` noise from `draw_uniform`.
      temperature: float32 `(B,)`.
      context: the network's second argument (a tensor, or None), the same at every step.
      on_step: optional callback `(step, total)` for progress.
      head: the model's `spn_tf.distributions.Head`, which draws from the outputs.
      draws: the run's `Draws`.

    Returns:
      int32 `(B, H, W, C)`.
    """
    images = tf.where(known, images, tf.zeros_like(images))
    positions = _positions(images.shape)
    for step, (i, j, c) in enumerate(positions):
        value = _draw(draws, head, network(images, context), images, known, uniform,
                      temperature, i, j, c)
        images = _set_subpixel(images, i, j, c, value)
        if on_step is not None:
            on_step(step + 1, len(positions))
    return images


def compiled_raster_sample(network, images, known, uniform, temperature, context=None, *, head,
                           draws):
    """`raster_sample` as one `tf.while_loop` (trace it inside `tf.function(jit_compile=...)`):
    the naive baseline of `benchmarks/sampling.py`.

    Same arguments as `raster_sample`; the same images for the same noise wherever XLA's
    logits and the graph's do not round a draw across a CDF boundary (observed rates:
    `benchmarks/agreement.py`).
    """
    _, height, width, channels = images.shape
    images = tf.where(known, images, tf.zeros_like(images))

    def body(t, images):
        i, rest = t // (width * channels), t % (width * channels)
        j, c = rest // channels, rest % channels
        value = _draw(draws, head, network(images, context), images, known, uniform,
                      temperature, i, j, c)
        return t + 1, _set_subpixel(images, i, j, c, value)

    _, images = tf.while_loop(lambda t, _: t < height * width * channels, body,
                              (tf.constant(0), images))
    return images


def _set_pixel(x, i, j, values):
    """`x[:, i, j] = values` (`(B, D)`) for `x` float `(B, H, W, D)`."""
    return _set_at(x, [i, j], values)


def sample_raster(decoder, preprocess, images, known, uniform, temperature, context=None, *,
                  head, draws):
    """Raster sampling from `decoder` as the run's mode says: `raster_sample` over the
    reference network (`reference`), else `cached_raster_sample`.

    Args:
      decoder: a `spn_tf.layers.MaskedDecoder`; preprocess: int32 images → its float input.
      images, known, uniform, temperature, context, head, draws: as in `raster_sample`.

    Returns:
      int32 `(B, H, W, C)`.
    """
    if draws.mode.cached:
        return cached_raster_sample(decoder, preprocess, images, known, uniform, temperature,
                                    context, head=head, draws=draws)
    return raster_sample(draws.loops.reference(decoder, preprocess), images, known, uniform,
                         temperature, context, head=head, draws=draws)


def cached_raster_sample(decoder, preprocess, images, known, uniform, temperature,
                         context=None, *, head, draws):
    """Raster sampling from a `MaskedDecoder` that recomputes only what a new pixel changes.

    The decoder's vertical stack at row i sees rows above i only, and its horizontal stack at
    column j sees columns <= j of row i (plus the vertical stack there): both reach
    `R = decoder.receptive_field` rows / columns. So, per row i, the vertical stack runs once
    on the `R + 1` rows ending at i (full width) and its row i is kept; per sub-pixel
    `(i, j, c)`, the horizontal stack and head run on the `R + 1` columns of row i ending at j.
    A strip or window that would start above or left of the image starts at the image's edge
    instead (and the pixel is read further in): the convolutions' zero padding then falls
    where the full network has it, not between activations, which is what keeps the logits
    equal (zero out-of-image *activations*, not inputs). The first `R` rows/columns
    of a strip/window are wrong (padding where the full network sees activations) and are
    never read. Work per image: `H` strips of `(R+1) x W` plus `H*W*C` windows of `R+1`
    positions, against `H*W*C` full images for `raster_sample`.

    Attention layers see every earlier pixel, beyond any window, but only earlier pixels
    (`CausalSelfAttention` is shifted by one pixel): their output at a pixel is final before
    the pixel's first channel is drawn. So each attention layer keeps its keys and values of
    the drawn pixels and its outputs at every pixel so far; at the start of pixel p it takes
    its input at pixel p - 1 (from that pixel's last-channel window: features there do not
    see the last channel, so they are final) and computes one query over the cache
    (`CausalSelfAttention.step`); the windows read the stored outputs instead of running
    attention (`MaskedDecoder.horizontal_features`). Extra work per pixel: one query, key and
    value projection and one row of attention over the `H*W` cached positions. A one-row
    product rounds differently from the full score matrix's row, so with attention the
    logits match the full decoder's to float rounding (~1e-6 relative, the same order as
    between the decoder with and without XLA), not bit for bit; the sampled images were
    identical in every comparison (tests/test_sampling.py).

    In a mode with `one_row_matmul` (plain graphs), the one-row convolutions of the windows
    run as matrix products of weights gathered once, before the loops
    (`MaskedDecoder.one_row_weights`).

    Args:
      decoder: a `spn_tf.layers.MaskedDecoder`.
      preprocess: int32 images → the decoder's float input (e.g. `spn_tf.inputs.scale_images` at the model's bits).
      images, known, uniform, temperature, head, draws: as in `raster_sample`.
      context: the decoder's context: `(B, 1, 1, D)`, or `(B, H, W, D)` aligned with the
        pixels (cut into strips and windows with them), or None.

    Returns:
      int32 `(B, H, W, C)`, the same images as `raster_sample` for the same noise.
    """
    _, height, width, channels = images.shape
    batch = tf.shape(images)[0]  # a tensor: a signature's batch is unknown when traced
    reach = decoder.receptive_field
    rows, cols = min(height, reach + 1), min(width, reach + 1)
    spatial = context is not None and tuple(context.shape[1:3]) != (1, 1)
    images = tf.where(known, images, tf.zeros_like(images))
    weights = decoder.one_row_weights() if draws.mode.one_row_matmul else None
    features = [batch, height, width, decoder.filters]
    # Per attention layer: outputs at the pixels so far, key/value cache, input at the last
    # pixel drawn (zeros before the first: the shift's padding).
    dtype = decoder.compute_dtype
    attention = ([tf.zeros(features, dtype) for _ in decoder.attentions],
                 [layer.initial_cache(batch, height * width) for layer in decoder.attentions],
                 [tf.zeros([batch, decoder.filters], dtype) for _ in decoder.attentions])

    def cut(x, top, left, height, width):
        return tf.slice(x, [0, top, left, 0], [-1, height, width, x.shape[3]])

    def row_body(i, images, attention):
        top = tf.clip_by_value(i - reach, 0, height - rows)
        strip_context = cut(context, top, 0, rows, width) if spatial else context
        # Row i of each block's vertical term: (B, 1, W, 2F), fixed for the whole row.
        terms = [cut(term, i - top, 0, 1, width) for term in decoder.vertical_stack(
            preprocess(cut(images, top, 0, rows, width)), strip_context, weights)]

        def pixel_body(j, images, attention):
            outputs, caches, previous = (list(part) for part in attention)
            for k, layer in enumerate(decoder.attentions):
                out, caches[k] = layer.step(previous[k], i * width + j, caches[k])
                outputs[k] = _set_pixel(outputs[k], i, j, out)
            left = tf.clip_by_value(j - reach, 0, width - cols)
            window_context = cut(context, i, left, 1, cols) if spatial else context
            window_terms = [cut(term, 0, left, 1, cols) for term in terms]
            window_outputs = [cut(out, i, left, 1, cols) for out in outputs]
            for c in range(channels):
                h, inputs = decoder.horizontal_features(
                    preprocess(cut(images, i, left, 1, cols)), window_terms, window_context,
                    window_outputs, weights)
                params = tf.gather(decoder.head(h, weights)[:, 0], j - left, axis=1)[:, c]
                drawn = draws.draw(head, params, uniform[:, i, j, c], temperature)
                value = tf.where(known[:, i, j, c], images[:, i, j, c], drawn)
                images = _set_subpixel(images, i, j, c, value)
            # The last channel's window: features at (i, j) see channels < C - 1 only, all
            # drawn, so they are the full network's.
            previous = [tf.gather(x[:, 0], j - left, axis=1) for x in inputs]
            return j + 1, images, (outputs, caches, previous)

        _, images, attention = tf.while_loop(lambda j, *_: j < width, pixel_body,
                                             (tf.constant(0), images, attention))
        return i + 1, images, attention

    _, images, _ = tf.while_loop(lambda i, *_: i < height, row_body,
                                 (tf.constant(0), images, attention))
    return images


def channel_parallel_sample(outputs_fn, images, known, uniform, temperature, *, head, draws):
    """All positions at once, one channel after another: `C` calls of `outputs_fn`.

    Args:
      outputs_fn: int32 `(B, h, w, C)` → the head's outputs `(B, h, w, C, head.num_params)`;
        positions conditionally independent, channel c seeing channels < c of its own pixel
        only.
      images, known, uniform: `(B, h, w, C)` as in `raster_sample`; temperature `(B,)`;
        head, draws as in `raster_sample`.

    Returns:
      int32 `(B, h, w, C)`.
    """
    images = tf.where(known, images, tf.zeros_like(images))
    channels = images.shape[-1]
    t = temperature[:, None, None]
    for c in range(channels):
        drawn = draws.draw(head, outputs_fn(images)[..., c, :], uniform[..., c], t)
        drawn = tf.where(known[..., c], images[..., c], drawn)
        onehot = tf.one_hot(c, channels, on_value=True, off_value=False, dtype=tf.bool)
        images = tf.where(onehot, drawn[..., None], images)
    return images
