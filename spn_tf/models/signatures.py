"""What a model serves: SavedModel signature inputs and bodies, for `spn_tf.export`.

A model kind lists its signatures in its export module (`ExportModule`, extended in
`spn_tf/models/<kind>/export.py`) as `{name: (body, [tf.TensorSpec inputs])}`, with
`body(model, inputs, xla)` → a dict of named outputs; `spn_tf.export` wraps them with input
checks and writes them, knowing no kind. The pieces every kind shares are here: input specs,
the conditioning a signature passes on, the `log_prob`, `sample`, `complete` and `describe`
bodies, and the base `ExportModule`.
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


def log_prob(model, inputs, xla):
    """`log_prob` / `log_prob_uint8`: `{log_prob, bits_per_dim}` of `images` (or `clips`)."""
    del xla  # one network call: nothing to compile
    pixels = inputs["clips"] if "clips" in inputs else inputs["images"]
    value = model.log_prob(tf.cast(pixels, tf.int32), cond_of(inputs))
    return {"log_prob": value, "bits_per_dim": bits_per_dim(value, model.num_dims)}


def sampler(given_fn, output="images"):
    """A sampling signature's body: `given_fn(model, inputs)` → `(cond, given)`; rows drawn
    with `model.run_sampler` (row i from `seed[i]` alone), its loops XLA-compiled or a
    plain graph as `xla` says."""
    def body(model, inputs, xla):
        cond, given = given_fn(model, inputs)
        return {output: model.run_sampler(inputs["seed"], inputs["temperature"], cond, given,
                                          mode="xla" if xla else "graph")}
    return body


# `sample` (and `super_resolve` / a depth SPN's `upscale_depth`: their image input is conditioning).
sample = sampler(lambda model, inputs: (cond_of(inputs), None))
# `complete`: the masked sub-pixels of `images` kept.
complete = sampler(lambda model, inputs: (cond_of(inputs), {
    "images": inputs["images"], "mask": tf.cast(inputs["mask"], tf.bool)}))


def describe(model, inputs, xla):
    """`describe`: what a client needs to know before calling, one row per request row."""
    del xla
    rows = tf.shape(inputs["rows"])[:1]
    shape = model.example_shape
    facts = {"bits": model.bits, "image_size": model.image_size, "channels": model.channels,
             "num_frames": shape[0] if len(shape) == 4 else 1}
    return {name: tf.fill(rows, value) for name, value in facts.items()}


def describe_spec():
    """`describe` takes `rows` int32 `(B,)`: TF Serving's batching needs a batched input."""
    return [tf.TensorSpec([None], tf.int32, name="rows")]


class ExportModule:
    """What a model kind serves and how a served image is read: one per kind, in
    `spn_tf/models/<kind>/export.py`, reached as `model.export_module`.

    `spn_tf.export` writes `signatures()` with input checks from `input_value_bits` and
    `metadata()`; `spn_tf.sample` reads `given_from_image`, `reference_sampler_calls` and
    `produces_clips`. This base serves `log_prob`, `log_prob_uint8`, `sample` and `describe`
    of an image model; a kind extends it.

    Args:
      model: the `DensityModel` exported.
    """

    # Sampler calls below which a one-shot run (`spn_tf.sample --sampler=auto`) uses the
    # reference sampler rather than compiling (0: always compile).
    reference_sampler_calls = 0
    produces_clips = False  # `sample` draws clips from first frames (video kinds)

    def __init__(self, model):
        self.model = model

    def signatures(self):
        """`{name: (body, [tf.TensorSpec inputs])}` of the SavedModel (module doc)."""
        model, cond = self.model, self.cond_specs()
        return {
            "log_prob": (log_prob, [image_spec("images", model)] + cond),
            "log_prob_uint8": (log_prob, [image_spec("images", model, dtype=tf.uint8)] + cond),
            "sample": (sample, draw_specs() + cond),
            "describe": (describe, describe_spec()),
        }

    def cond_specs(self):
        """Signature inputs for the conditioning the model takes."""
        return cond_specs(self.model.cond_spec)

    def input_value_bits(self, name):
        """Bits of the image-valued signature input `name`: its values lie in
        `[0, 2**bits)` (`mask`: 1)."""
        return 1 if name == "mask" else self.model.bits

    def metadata(self):
        """Kind-specific facts for the export's metadata file (e.g. the subscale factor)."""
        return {}

    def given_from_image(self, images):
        """`(given, cond)` for `model.sample` from int `(B, h, w, C)` copies of one image at
        the model's bits (`spn_tf.sample --given`).

        Raises:
          ValueError: the model takes no image of that size (the message says which).
        """
        raise ValueError(f"{type(self.model).__name__} takes no --given image.")
