"""What a model serves: SavedModel signature inputs and bodies, for `spn_tf.export`.

A model kind lists its signatures (`DensityModel.serving_signatures`) as
`{name: (body, [tf.TensorSpec inputs])}`, with `body(model, inputs, jit_compile)` → a dict of
named outputs; `spn_tf.export` wraps them with input checks and writes them, knowing no kind.
The pieces every kind shares are here: input specs, the conditioning a signature passes on,
and the `log_prob`, `sample`, `complete` and `describe` bodies.
"""

import tensorflow as tf

from spn_tf.distributions import bits_per_dim
from spn_tf.inputs import COND_KEYS  # the signature inputs that are conditioning



def image_spec(name, model, side=None, dtype=tf.int32):
    """`(None, side, side, C)` images (`side`: the model's image size by default)."""
    side = side or model.image_size
    return tf.TensorSpec([None, side, side, model.channels], dtype, name=name)


def draw_specs():
    """The `seed` `(B, 2)` and `temperature` `(B,)` inputs of every sampling signature."""
    return [tf.TensorSpec([None, 2], tf.int32, name="seed"),
            tf.TensorSpec([None], tf.float32, name="temperature")]


def cond_specs(cond_spec):
    """Signature inputs for the label / embedding / text conditioning in `cond_spec`."""
    specs = []
    if "label" in cond_spec:
        specs.append(tf.TensorSpec([None], tf.int32, name="label"))
    if "embedding" in cond_spec:
        specs.append(tf.TensorSpec([None, cond_spec["embedding"]], tf.float32,
                                   name="embedding"))
    if "text" in cond_spec:
        specs.append(tf.TensorSpec([None], tf.string, name="text"))
    return specs


def cond_of(inputs, given=()):
    """The conditioning inputs of a signature call, less those that are `given` content."""
    return {key: inputs[key] for key in COND_KEYS if key in inputs and key not in given}


def log_prob(model, inputs, jit_compile):
    """`log_prob` / `log_prob_uint8`: `{log_prob, bits_per_dim}` of `images` (or `clips`)."""
    del jit_compile  # one network call: nothing to compile
    pixels = inputs["clips"] if "clips" in inputs else inputs["images"]
    value = model.log_prob(tf.cast(pixels, tf.int32), cond_of(inputs))
    return {"log_prob": value, "bits_per_dim": bits_per_dim(value, model.num_dims)}


def sampler(given_fn, output="images"):
    """A sampling signature's body: `given_fn(model, inputs)` → `(cond, given)`; rows drawn
    with `model.sample_rows` (row i from `seed[i]` alone)."""
    def body(model, inputs, jit_compile):
        cond, given = given_fn(model, inputs)
        return {output: model.sample_rows(inputs["seed"], inputs["temperature"], cond, given,
                                          jit_compile=jit_compile)}
    return body


# `sample` (and `super_resolve` / a depth SPN's `upscale_depth`: their image input is conditioning).
sample = sampler(lambda model, inputs: (cond_of(inputs), None))
# `complete`: the masked sub-pixels of `images` kept.
complete = sampler(lambda model, inputs: (cond_of(inputs), {
    "images": inputs["images"], "mask": tf.cast(inputs["mask"], tf.bool)}))


def describe(model, inputs, jit_compile):
    """`describe`: what a client needs to know before calling, one row per request row."""
    del jit_compile
    rows = tf.shape(inputs["rows"])[:1]
    shape = model.example_shape
    facts = {"bits": model.bits, "image_size": model.image_size, "channels": model.channels,
             "num_frames": shape[0] if len(shape) == 4 else 1}
    return {name: tf.fill(rows, value) for name, value in facts.items()}


def describe_spec():
    """`describe` takes `rows` int32 `(B,)`: TF Serving's batching needs a batched input."""
    return [tf.TensorSpec([None], tf.int32, name="rows")]
