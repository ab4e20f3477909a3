"""Sampling loops over a model's step function; they know orderings, never a model class.

All randomness is drawn once, before a loop, as uniform noise of the image's shape
(`draw_uniform`), and each sub-pixel is drawn by inverse CDF inside the loop (`head.draw` of
the model's head, `spn_tf.distributions`). So a loop run eagerly and the same loop compiled with
XLA consume the same noise (XLA's stateless RNG is another stream; NOTES.md) and give the same
images except where their logits, which differ in float rounding, put a CDF boundary on the
other side of a uniform draw: observed, not guaranteed (`benchmarks/agreement.py`).

Kinds of loop:
  * `raster_sample` — one sub-pixel per step in raster order; `network` is the whole network
    (the reference: one network call per sub-pixel, from Python; the models make the network
    a graph function once, with `reference_network`, so it traces once per shape). `compiled_raster_sample` is the
    same loop as one `tf.while_loop`, to trace inside `tf.function(jit_compile=True)`.
  * `cached_raster_sample` — the same images as `raster_sample` from a `MaskedDecoder`
    computing only what each step needs: its vertical stack on a strip of rows once per row,
    its horizontal stack on a window of one row per sub-pixel, attention as one query per
    pixel over cached keys and values.
  * `channel_parallel_sample` — all positions of a group at once, channels R, G, B in turn
    (the multiscale groups: one call per channel).

`compile_loop` wraps a loop in `tf.function(jit_compile=...)`; the models keep one such
function per sampler, traced once per (batch, shape): temperature and noise are tensors.

Coding: `spn_tf.codec` runs these loops with an entropy coder in place of randomness
(`coding`): the noise a loop reads becomes what the coder needs to know at each draw (the
encoder: the true value and the batch row of every sub-pixel; the decoder: the row), and every
draw becomes a host call to the coder with the head's value table (`draw`), which picks
the value: the encoder records the table and returns the true value, the decoder decodes the
value from its bit stream with the same table. So both directions run the same loop, in the
model's own order, as plain graphs (a host call cannot run inside XLA).

Progress: a compiled loop is one XLA call and cannot report from inside (a host callback
would break the compilation), but the samplers that run stages from Python (an SPN's slices,
a video's frames) call `report_progress` after each; `DensityModel.sample(progress=...)` sets
the callback for the duration of one call (`reporting_progress`).
"""

import contextlib
import contextvars
import threading

import tensorflow as tf

_PROGRESS = contextvars.ContextVar("spn_tf_sampling_progress", default=None)
# The coder of a coding run, read by `draw_uniform` (eagerly, in the caller's thread) ...
_CODER = contextvars.ContextVar("spn_tf_sampling_coder", default=None)
# ... and by the host calls of the traced loops, which TensorFlow runs on its own threads
# (where context variables do not reach): one coding run at a time per process.
_RUNNING_CODER = []
_CODING_LOCK = threading.Lock()
# Set while a "coding" loop is traced: draws become host calls to the running coder.
_HOST_DRAWS = contextvars.ContextVar("spn_tf_sampling_host_draws", default=False)
# A coder's noise carries `row * CARRIER_BASE + value` per sub-pixel (exact in float32 for
# rows below 2**16: 2**24 / 256).
CARRIER_BASE = 256
MAX_CODED_ROWS = 2 ** 16


@contextlib.contextmanager
def reporting_progress(callback):
    """Within the block, `report_progress(stage, done, total)` calls `callback` (or nothing
    when it is None)."""
    token = _PROGRESS.set(callback)
    try:
        yield
    finally:
        _PROGRESS.reset(token)


def report_progress(stage, done, total):
    """Tells the caller of `sample` that `done` of `total` host-side steps of `stage` (e.g.
    "slices", "frames") are finished. A no-op without a callback, and while tracing a graph
    (where it would fire once, at trace time)."""
    callback = _PROGRESS.get()
    if callback is not None and tf.executing_eagerly():
        callback(stage, done, total)


@contextlib.contextmanager
def coding(coder):
    """Within the block, samplers run with `coder` in place of randomness (module doc).

    `coder` has `noise(shape)` → float32 carriers of `shape` (`row * CARRIER_BASE + value`,
    the value 0 where the coder does not know it), called by `draw_uniform` in place of a
    draw, and `draw(logits, carriers)` → int32 values of `carriers`' shape, called from the
    host calls with the head's float32 value logits `(*carriers.shape, num_values)`. Only one
    coding run at a time in a process (others wait).
    """
    with _CODING_LOCK:
        token = _CODER.set(coder)
        _RUNNING_CODER.append(coder)
        try:
            yield
        finally:
            _RUNNING_CODER.pop()
            _CODER.reset(token)


@contextlib.contextmanager
def host_draws():
    """Loops traced within the block draw through the running coder (`coding`)."""
    token = _HOST_DRAWS.set(True)
    try:
        yield
    finally:
        _HOST_DRAWS.reset(token)


def _run_coder(logits, carriers):
    return _RUNNING_CODER[-1].draw(logits, carriers).astype("int32")


def draw(head, params, uniform, temperature):
    """`head.draw(params, uniform, temperature)`; in a loop traced under `host_draws`, the
    running coder's value at each sub-pixel instead (a host call with the value table)."""
    if not _HOST_DRAWS.get():
        return head.draw(params, uniform, temperature)
    values = tf.numpy_function(_run_coder, [head.value_logits(params), uniform], tf.int32,
                               stateful=True)
    return tf.reshape(values, tf.shape(uniform))


def draw_uniform(seed, shape):
    """float32 noise in `[0, 1)` of `shape` `(B, ...)`; during `coding`, the coder's
    carriers instead.

    Args:
      seed: int32 `(2,)`, one stateless seed for the whole batch (the rows are consecutive
        parts of one stream), or int32 `(B, 2)`, one seed per row: row i is then the noise
        that `seed[i]` alone gives a batch of one, whatever the other rows are. Both agree at
        B = 1: a stream's first `prod(shape[1:])` numbers do not depend on the shape asked.
      shape: the noise's shape; `shape[0]` may be a scalar tensor (a signature's batch).
    """
    coder = _CODER.get()
    if coder is not None:
        return tf.convert_to_tensor(coder.noise(tuple(int(n) for n in shape)), tf.float32)
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


def _draw(head, outputs, images, known, uniform, temperature, i, j, c):
    drawn = draw(head, outputs[:, i, j, c], uniform[:, i, j, c], temperature)
    return tf.where(known[:, i, j, c], images[:, i, j, c], drawn)


def reference_network(network):
    """`network(images, context)` as a graph function (no XLA), for `raster_sample`.

    Make it once per model and network (a `functools.cached_property`) and pass it to every
    `raster_sample` call: it traces once per input shape and context, and a trace costs far
    more than a call (0.2-0.5 s against ~40 ms for a `small` model), so a function made per
    call would dominate the reference sampler's time.
    """
    return tf.function(network, autograph=False)


def raster_sample(network, images, known, uniform, temperature, context=None, on_step=None, *,
                  head):
    """Reference raster sampler: the full network once per sub-pixel, called from Python.

    Args:
      network: `(images int32 (B, H, W, C), context)` → the head's outputs
        `(B, H, W, C, head.num_params)`, causal in raster order; pass a function made once by
        `reference_network` (any callable works, eagerly and slowly).
      images: int32 `(B, H, W, C)`: given values where `known`, anything elsewhere.
      known: bool `(B, H, W, C)`: sub-pixels kept as given.
      uniform: float32 `(B, H, W, C)` noise from `draw_uniform`.
      temperature: float32 `(B,)`.
      context: the network's second argument (a tensor, or None), the same at every step.
      on_step: optional callback `(step, total)` for progress.
      head: the model's `spn_tf.distributions.Head`, which draws from the outputs.

    Returns:
      int32 `(B, H, W, C)`.
    """
    images = tf.where(known, images, tf.zeros_like(images))
    positions = _positions(images.shape)
    for step, (i, j, c) in enumerate(positions):
        value = _draw(head, network(images, context), images, known, uniform, temperature, i, j,
                      c)
        images = _set_subpixel(images, i, j, c, value)
        if on_step is not None:
            on_step(step + 1, len(positions))
    return images


def compiled_raster_sample(network, images, known, uniform, temperature, context=None, *, head):
    """`raster_sample` as one `tf.while_loop` (trace it inside `tf.function(jit_compile=...)`).

    Same arguments as `raster_sample`; the same images for the same noise wherever XLA's
    logits and the graph's do not round a draw across a CDF boundary (observed rates:
    `benchmarks/agreement.py`).
    """
    _, height, width, channels = images.shape
    images = tf.where(known, images, tf.zeros_like(images))

    def body(t, images):
        i, rest = t // (width * channels), t % (width * channels)
        j, c = rest // channels, rest % channels
        value = _draw(head, network(images, context), images, known, uniform, temperature, i, j,
                      c)
        return t + 1, _set_subpixel(images, i, j, c, value)

    _, images = tf.while_loop(lambda t, _: t < height * width * channels, body,
                              (tf.constant(0), images))
    return images


def _set_pixel(x, i, j, values):
    """`x[:, i, j] = values` (`(B, D)`) for `x` float `(B, H, W, D)`."""
    return _set_at(x, [i, j], values)


def cached_raster_sample(decoder, preprocess, images, known, uniform, temperature,
                         context=None, *, head):
    """Raster sampling from a `MaskedDecoder` that recomputes only what a new pixel changes.

    The decoder's vertical stack at row i sees rows above i only, and its horizontal stack at
    column j sees columns <= j of row i (plus the vertical stack there): both reach
    `R = decoder.receptive_field` rows / columns. So, per row i, the vertical stack runs once
    on the `R + 1` rows ending at i (full width) and its row i is kept; per sub-pixel
    `(i, j, c)`, the horizontal stack and head run on the `R + 1` columns of row i ending at j.
    A strip or window that would start above or left of the image starts at the image's edge
    instead (and the pixel is read further in): the convolutions' zero padding then falls
    where the full network has it, not between activations, which is what keeps the logits
    equal (NOTES.md: zero out-of-image *activations*, not inputs). The first `R` rows/columns
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

    Args:
      decoder: a `spn_tf.layers.MaskedDecoder`.
      preprocess: int32 images → the decoder's float input (e.g. `model.scale`).
      images, known, uniform, temperature, head: as in `raster_sample`.
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
    features = [batch, height, width, decoder.filters]
    # Per attention layer: outputs at the pixels so far, key/value cache, input at the last
    # pixel drawn (zeros before the first: the shift's padding).
    attention = ([tf.zeros(features) for _ in decoder.attentions],
                 [layer.initial_cache(batch, height * width) for layer in decoder.attentions],
                 [tf.zeros([batch, decoder.filters]) for _ in decoder.attentions])

    def cut(x, top, left, height, width):
        return tf.slice(x, [0, top, left, 0], [-1, height, width, x.shape[3]])

    def row_body(i, images, attention):
        top = tf.clip_by_value(i - reach, 0, height - rows)
        strip_context = cut(context, top, 0, rows, width) if spatial else context
        # Row i of each block's vertical term: (B, 1, W, 2F), fixed for the whole row.
        terms = [cut(term, i - top, 0, 1, width) for term in decoder.vertical_stack(
            preprocess(cut(images, top, 0, rows, width)), strip_context)]

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
                    window_outputs)
                params = tf.gather(decoder.head(h)[:, 0], j - left, axis=1)[:, c]
                drawn = draw(head, params, uniform[:, i, j, c], temperature)
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


def compile_loop(loop, jit_compile=True):
    """`loop` as a `tf.function` (XLA-compiled by default), traced once per input shape.

    Call the result with tensors only (temperature as a `(B,)` tensor, not a float), so that
    repeated calls with the same shapes reuse one trace.
    """
    return tf.function(loop, jit_compile=jit_compile, autograph=False)


def channel_parallel_sample(outputs_fn, images, known, uniform, temperature, *, head):
    """All positions at once, one channel after another: `C` calls of `outputs_fn`.

    Args:
      outputs_fn: int32 `(B, h, w, C)` → the head's outputs `(B, h, w, C, head.num_params)`;
        positions conditionally independent, channel c seeing channels < c of its own pixel
        only.
      images, known, uniform: `(B, h, w, C)` as in `raster_sample`; temperature `(B,)`;
        head as in `raster_sample`.

    Returns:
      int32 `(B, h, w, C)`.
    """
    images = tf.where(known, images, tf.zeros_like(images))
    channels = images.shape[-1]
    t = temperature[:, None, None]
    for c in range(channels):
        drawn = draw(head, outputs_fn(images)[..., c, :], uniform[..., c], t)
        drawn = tf.where(known[..., c], images[..., c], drawn)
        onehot = tf.one_hot(c, channels, on_value=True, off_value=False, dtype=tf.bool)
        images = tf.where(onehot, drawn[..., None], images)
    return images
