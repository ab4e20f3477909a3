"""Checks and unpacks what users pass to models: images and conditioning.

Contract: images are int32 or uint8 `(batch, height, width, channels)` with values
in `[0, 2**bits)`; conditioning is `None` or a dict with any of `"label"` (int32 `(batch,)`),
`"embedding"` (float32 `(batch, dim)`), `"text"` (captions: strings `(batch,)`, encoded inside
the model), `"low_res"` (multiscale: the image at lower resolution), `"action"` (video: one per
frame) and `"msb"` (a depth-upscaling network: the most significant bits of the image).
Every error a user can cause here is a `ValueError` naming the bad value and what is allowed.
"""

import numpy as np
import tensorflow as tf

COND_KEYS = ("label", "embedding", "text", "low_res", "action", "msb")  # the codec's bit order


def scale_images(images, bits, dtype=tf.float32):
    """Integers in `[0, 2**bits)` → floats in `[-1, 1]` of `dtype`: the networks' input."""
    top = 2 ** bits - 1
    return tf.cast(images, dtype) * (2.0 / top) - 1.0


def split_inputs(inputs, cond=None):
    """`model(x)` accepts images or a dict `{"images": ..., <cond keys>}` (what `fit` feeds).

    Returns:
      `(images, cond)` with `cond` a dict (possibly empty), or `cond` unchanged when it is not
      a dict (for `check_cond` to refuse).
    """
    if cond is not None and not isinstance(cond, dict):
        return inputs, cond
    if isinstance(inputs, dict):
        unknown = set(inputs) - {"images", *COND_KEYS}
        if "images" not in inputs or unknown:
            raise ValueError(
                f"model inputs dict must hold 'images' and optionally {COND_KEYS}; got keys "
                f"{sorted(inputs)}.")
        cond = {**{k: v for k, v in inputs.items() if k != "images"}, **(cond or {})}
        inputs = inputs["images"]
    return inputs, dict(cond or {})


def _is_concrete(tensor):
    return tf.executing_eagerly() or not tf.is_tensor(tensor)


def check_images_spec(images, bits, channels=None, height=None, width=None, name="images"):
    """The dtype and shape half of `check_images`, for a tensor or a `tf.TensorSpec`."""
    if not images.dtype.is_integer:
        raise ValueError(
            f"{name} must be int32 or uint8 with values in [0, {2 ** bits}), got dtype "
            f"{images.dtype.name}; quantize first, e.g. tf.cast(tf.round(x * {2 ** bits - 1}), "
            f"tf.int32).")
    if images.shape.rank != 4:
        raise ValueError(
            f"{name} must have rank 4 (batch, height, width, channels), got shape "
            f"{images.shape}; add a batch axis with images[None] for a single image.")
    expected = (height, width, channels)
    for got, want in zip(images.shape[1:], expected):
        if want is not None and got is not None and got != want:
            raise ValueError(
                f"{name} shape {images.shape} does not match the model: expected "
                f"(batch, {height}, {width}, {channels}).")


def check_images(images, bits, channels=None, height=None, width=None, name="images"):
    """Validates an image batch and returns it as int32.

    Raises:
      ValueError: float dtype, wrong rank, wrong channels/size, values outside `[0, 2**bits)`.
    """
    if not tf.is_tensor(images):
        images = np.asarray(images)
        if images.dtype.kind == "f":
            raise ValueError(
                f"{name} must be integers in [0, {2 ** bits}) (int32 or uint8), got float "
                f"values; quantize first, e.g. np.round(x * {2 ** bits - 1}).astype('int32').")
        images = tf.convert_to_tensor(images)
    check_images_spec(images, bits, channels, height, width, name)
    images = tf.cast(images, tf.int32)
    if _is_concrete(images):
        values = images.numpy()
        if values.size and (values.min() < 0 or values.max() >= 2 ** bits):
            raise ValueError(
                f"{name} values must be in [0, {2 ** bits}) for bits={bits}; got min "
                f"{values.min()}, max {values.max()}. Reduce 8-bit data with "
                f"spn_tf.orderings.reduce_bits(images, {bits}).")
    else:
        # The checks gate the images themselves, so no op (e.g. a gather, which on an
        # accelerator may not check its indices) sees a value outside the range first.
        checks = [
            tf.debugging.assert_greater_equal(
                images, 0, message=f"{name} values must be >= 0"),
            tf.debugging.assert_less(
                images, 2 ** bits, message=f"{name} values must be < {2 ** bits} for "
                f"bits={bits}; reduce 8-bit data with spn_tf.orderings.reduce_bits"),
        ]
        with tf.control_dependencies(checks):
            images = tf.identity(images)
    return images


def check_cond(cond, cond_spec, batch_size=None):
    """Validates a conditioning dict against what a model was built to take.

    Args:
      cond: `None` or a dict with keys in `COND_KEYS`.
      cond_spec: the model's `cond` argument, e.g. `{"label": 10}` (number of classes) or
        `{"embedding": 384}` (vector size) or `{"text": 64}` (longest caption in UTF-8 bytes);
        empty for an unconditional model.

    Returns:
      A dict with `label` as int32, `embedding` as float32 and `text` as tf.string.
    """
    if cond is not None and not isinstance(cond, dict):
        raise ValueError(
            f"cond must be None or a dict such as {{'label': labels}}, got "
            f"{type(cond).__name__}; this model takes {sorted(cond_spec or {}) or 'none'}.")
    cond = dict(cond or {})
    cond_spec = dict(cond_spec or {})
    if set(cond) != set(cond_spec):
        raise ValueError(
            f"this model takes conditioning {sorted(cond_spec) or 'none'} "
            f"(built with cond={cond_spec}); got {sorted(cond) or 'none'}.")
    out = {}
    if "label" in cond:
        label = cond["label"]
        if not tf.is_tensor(label):
            label = np.asarray(label)
            if label.dtype.kind not in "iu":
                raise ValueError(f"cond['label'] must be integer class ids, got {label.dtype}.")
        label = tf.convert_to_tensor(label)
        if not label.dtype.is_integer or label.shape.rank != 1:
            raise ValueError(
                f"cond['label'] must be int32 of shape (batch,), got {label.dtype.name} "
                f"{label.shape}.")
        label = tf.cast(label, tf.int32)
        classes = cond_spec["label"]
        if _is_concrete(label):
            values = label.numpy()
            if values.size and (values.min() < 0 or values.max() >= classes):
                raise ValueError(
                    f"cond['label'] values must be in [0, {classes}); got "
                    f"{values.min()}..{values.max()}.")
        else:  # gated, as images are: the embedding's gather never sees a bad id first
            message = f"cond['label'] values must be in [0, {classes})"
            checks = [tf.debugging.assert_greater_equal(label, 0, message=message),
                      tf.debugging.assert_less(label, classes, message=message)]
            with tf.control_dependencies(checks):
                label = tf.identity(label)
        out["label"] = label
    if "embedding" in cond:
        embedding = tf.convert_to_tensor(cond["embedding"], tf.float32)
        if embedding.shape.rank != 2 or embedding.shape[1] != cond_spec["embedding"]:
            raise ValueError(
                f"cond['embedding'] must be float32 of shape (batch, {cond_spec['embedding']}), "
                f"got {embedding.shape}.")
        out["embedding"] = embedding
    if "low_res" in cond:
        out["low_res"] = cond["low_res"]
    if "text" in cond:
        out["text"] = check_text(cond["text"], cond_spec["text"])
    if batch_size is not None:
        for key, value in out.items():
            if tf.is_tensor(value) and value.shape[0] is not None and isinstance(
                    batch_size, int) and value.shape[0] != batch_size:
                raise ValueError(
                    f"cond['{key}'] has batch {value.shape[0]} but the images have {batch_size}.")
    return out


def check_text(text, max_length):
    """Validates captions: strings `(batch,)`, each non-empty valid UTF-8 of at most
    `max_length` bytes (a longer caption is refused, not truncated).

    Args:
      text: a list of str/bytes, a numpy array of str/bytes, or a tf.string tensor `(batch,)`.
      max_length: the model's `cond["text"]`.

    Returns:
      tf.string `(batch,)`. Symbolic tensors are checked in the graph by
      `spn_tf.layers.text_encoder.text_to_bytes` when the model encodes them. Captions that
      `text_to_bytes` already encoded (int32 byte ids `(batch, max_length)`, what the training
      step feeds: XLA has no strings) pass through; it checked them.
    """
    if (tf.is_tensor(text) and text.dtype == tf.int32 and text.shape.rank == 2
            and text.shape[1] == max_length):
        return text
    if not tf.is_tensor(text):
        array = np.asarray(text, dtype=object if isinstance(text, (list, tuple)) else None)
        if array.dtype.kind == "O" and all(isinstance(t, (str, bytes)) for t in array.flat):
            array = np.array([t.encode("utf-8") if isinstance(t, str) else t
                              for t in array.flat], object).reshape(array.shape)
        elif array.dtype.kind not in "US":
            raise ValueError(
                f"cond['text'] must be captions (str or bytes), got {array.dtype} values; pass "
                f"e.g. ['a red square', 'a blue square'].")
        text = tf.convert_to_tensor(array, tf.string)
    if text.dtype != tf.string:
        raise ValueError(f"cond['text'] must be tf.string captions, got {text.dtype.name}.")
    if text.shape.rank != 1:
        raise ValueError(
            f"cond['text'] must have shape (batch,), one caption per image, got {text.shape}; "
            f"for one caption pass [caption].")
    if _is_concrete(text):
        for index, caption in enumerate(text.numpy()):
            if not caption:
                raise ValueError(f"cond['text'][{index}] is empty; give every image a caption.")
            if len(caption) > max_length:
                raise ValueError(
                    f"cond['text'][{index}] is {len(caption)} UTF-8 bytes, more than this "
                    f"model's max_length={max_length} (cond={{'text': {max_length}}}); shorten "
                    f"it (captions are never truncated): {caption[:max_length]!r}...")
            try:
                caption.decode("utf-8")
            except UnicodeDecodeError as error:
                raise ValueError(f"cond['text'][{index}] is not valid UTF-8 ({error}): "
                                 f"{caption!r}.") from None
    return text


def check_seed(seed):
    """A stateless seed: int32 `(2,)`. Python ints are accepted and expanded to `(0, seed)`."""
    if seed is None or isinstance(seed, (bool, float, str)):
        raise ValueError(f"seed must be an int (e.g. seed=0) or int32 of shape (2,), got "
                         f"{seed!r}; the same seed gives the same images.")
    if isinstance(seed, (int, np.integer)):
        return tf.constant([0, int(seed)], tf.int32)
    seed = tf.convert_to_tensor(seed)
    if seed.dtype not in (tf.int32, tf.int64) or seed.shape != (2,):
        raise ValueError(
            f"seed must be an int or int32 of shape (2,), got {seed.dtype.name} {seed.shape}.")
    return tf.cast(seed, tf.int32)


def check_batch_size(batch_size):
    if not isinstance(batch_size, (int, np.integer)) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}.")
    return int(batch_size)


def batch_differs(batch, expected):
    """Whether a tensor's static batch `batch` contradicts `expected` (an int, or a scalar
    tensor while a signature is traced: then only the graph knows, and it checks)."""
    return isinstance(batch, int) and isinstance(expected, int) and batch != expected


def check_given_pixels(given, shape, bits):
    """`given={"images", "mask"}` → `(images int32, known bool)` of `shape`; zeros if None.

    `mask` marks the sub-pixels to keep (e.g. the top half of an image for completion).
    """
    if given is None:
        return tf.zeros(shape, tf.int32), tf.zeros(shape, tf.bool)
    if not isinstance(given, dict) or set(given) != {"images", "mask"}:
        raise ValueError("given must be a dict {'images': int (B, H, W, C), 'mask': bool of the "
                         "same shape} marking the sub-pixels to keep.")
    images = check_images(given["images"], bits, shape[3], shape[1], shape[2], "given['images']")
    mask = tf.convert_to_tensor(given["mask"])
    if (mask.dtype != tf.bool or tuple(mask.shape[1:]) != tuple(shape[1:])
            or batch_differs(mask.shape[0], shape[0])
            or batch_differs(images.shape[0], shape[0])):
        raise ValueError(f"given['mask'] must be bool of shape {tuple(shape)} and "
                         f"given['images'] of the same shape; got {mask.dtype.name} "
                         f"{tuple(mask.shape)} and {tuple(images.shape)}.")
    return images, mask
