"""Datasets as `tf.data` pipelines of `{"images": int32 (B, H, W, C)[, "label": int32 (B,)]
[, "text": string (B,)]}`.

Names:
  * `embedded` — real photographs shipped in the package (`data_files/photos.npz`: ten public
    domain / CC0 photos from scikit-image, 128 pixels on the short side). Crops are cut
    deterministically: training crops from the left part of each photo, held-out crops from a
    disjoint strip on the right, so held-out bits/dim are measured on unseen pixels. The label
    is the source photo (10 classes); the text is one of that photo's captions
    (`data_files/captions.json`, short sentences written for spn_tf, each at most
    `CAPTION_LENGTH` UTF-8 bytes), taken in turn. Loads offline; serves the quickstart and the
    tests.
  * `folder:/path` — a user's images (PNG, JPEG, GIF, BMP): `/path/train` and `/path/test`
    when both exist, otherwise every tenth file (sorted by name) is held out. No labels.
    Each image is resized to the model's size.
  * `folder_crops:/path` — the same files at full resolution: each image gives random crops
    of the model's size (about one per `image_size**2` pixels, at least one; images smaller
    than a crop are left out). What a codec of full-size images (`spn_tf.codec`, which codes
    tiles of the model's size) trains on.
  * TFDS names (`imagenet_resized/32x32`, `imagenet_resized/64x64`, `celeb_a_hq/256`,
    `cifar10`, `mnist`, ...) — read from prepared TFDS data only. This package never starts a
    download: missing data fails at once with the command that prepares it.

Pipeline: decode → resize to `image_size` (area) → channels → bit reduction → optional random
horizontal flip → shuffle → repeat → batch → prefetch.
"""

import importlib.resources
import json
import os

import numpy as np
import tensorflow as tf

from spn_tf.orderings import reduce_bits

EMBEDDED = "embedded"
EMBEDDED_CROP = 32
# The longest embedded caption in UTF-8 bytes: a text model of the embedded photos is built
# with cond={"text": CAPTION_LENGTH}.
CAPTION_LENGTH = 64
NUM_CLASSES = {
    EMBEDDED: 10, "imagenet_resized/32x32": 1000, "imagenet_resized/64x64": 1000,
    "imagenet_resized/16x16": 1000, "imagenet_resized/8x8": 1000, "cifar10": 10, "mnist": 10,
    "celeb_a_hq/256": 0, "celeb_a_hq/128": 0, "celeb_a_hq/512": 0,
}
# How to prepare each TFDS dataset that needs more than `tfds build`.
PREPARE_HINTS = {
    "celeb_a_hq": "celeb_a_hq needs a manual download: put the CelebA-HQ tars in "
                  "<data_dir>/downloads/manual/ (see the TFDS catalog page), then run ",
    "imagenet_resized": "imagenet_resized downloads ~12 GB from image-net.org: on a machine with "
                        "network access run ",
}


class DatasetNotPreparedError(ValueError):
    """The named TFDS dataset is not prepared in `data_dir`; the message says how to prepare."""


def photo_crops(photos, split, crop, seed, crops_per_photo):
    """Deterministic crops of `photos` (uint8 `(h, w, C)` or `(h, w)` each), a split's from
    its strip (`photo_columns`): (images uint8 `(N, crop, crop[, C])`, labels = photo index)."""
    rng = np.random.default_rng(seed + (0 if split == "train" else 1))
    images, labels = [], []
    for label, photo in enumerate(photos):
        height = photo.shape[0]
        lo, hi = photo_columns(photo, split, crop)
        rows = rng.integers(0, height - crop + 1, crops_per_photo)
        cols = rng.integers(lo, hi - crop + 1, crops_per_photo)
        images += [photo[r:r + crop, c:c + crop] for r, c in zip(rows, cols)]
        labels += [label] * crops_per_photo
    return np.stack(images), np.asarray(labels, np.int32)


def embedded_photos():
    """The embedded photos, uint8 `(h, w, 3)` each, in label (file name) order."""
    path = importlib.resources.files("spn_tf") / "data_files" / "photos.npz"
    with importlib.resources.as_file(path) as file, np.load(file) as photos:
        return [photos[name] for name in sorted(photos.files)]


def photo_columns(photo, split, crop):
    """`[lo, hi)`: the columns of `photo` a split's crops come from; training from the left,
    held out from a disjoint strip on the right (at least `crop` and a quarter wide)."""
    width = photo.shape[1]
    test_width = max(crop, width // 4)
    return (0, width - test_width) if split == "train" else (width - test_width, width)


def embedded_captions():
    """`{photo name: [captions]}` of the embedded photos (`data_files/captions.json`)."""
    path = importlib.resources.files("spn_tf") / "data_files" / "captions.json"
    return json.loads(path.read_text(encoding="utf-8"))


def _caption_table():
    """Every caption in photo (label) order, and each photo's first index and count."""
    captions = embedded_captions()
    names = sorted(captions)
    counts = [len(captions[name]) for name in names]
    flat = [caption for name in names for caption in captions[name]]
    return (tf.constant(flat), tf.constant(np.cumsum([0] + counts[:-1]), tf.int64),
            tf.constant(counts, tf.int64))


def embedded_arrays(split="train", image_size=32, seed=0):
    """The embedded photo crops as numpy: uint8 `(N, image_size, image_size, 3)`, labels."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test' for the embedded data, got {split!r}.")
    if image_size > 64:
        raise ValueError(f"the embedded photos give crops up to 64x64, got image_size={image_size}.")
    crop = max(image_size, EMBEDDED_CROP)
    images, labels = photo_crops(embedded_photos(), split, crop, seed,
                                 256 if split == "train" else 32)
    if image_size < crop:
        images = tf.image.resize(images.astype(np.float32), (image_size, image_size), "area")
        images = np.clip(np.round(images.numpy()), 0, 255).astype(np.uint8)
    return images, labels


# Held out from a TFDS dataset that has only a train split (e.g. celeb_a_hq): its last 5%.
HELD_OUT_PERCENT = 5


def tfds_split(name, split, available):
    """The TFDS split to read for our `train` / `test` split.

    `test` is the dataset's `test` split, else its `validation` split; a dataset with only a
    `train` split is cut: `train[:95%]` to train on, `train[95%:]` held out, disjoint.
    `available` is empty for a dataset TFDS has not prepared (it then reports the error).
    """
    if available == ["train"]:
        cut = 100 - HELD_OUT_PERCENT
        return f"train[:{cut}%]" if split == "train" else f"train[{cut}%:]"
    if not available or split in available:
        return split
    if split == "test" and "validation" in available:
        return "validation"
    raise ValueError(f"dataset {name!r} has splits {available}, not {split!r}.")


def _tfds_dataset(name, split, data_dir, seed):
    ds = tfds_examples(name, split, data_dir, seed)
    return ds.map(lambda ex: (ex["image"], ex.get("label", tf.constant(0, tf.int64))),
                  num_parallel_calls=tf.data.AUTOTUNE)


def tfds_examples(name, split, data_dir, seed=0):
    """A prepared TFDS dataset's examples (dicts), or `DatasetNotPreparedError` saying how to
    prepare it; never downloads.

    Training splits are read with their files in an order drawn from `seed` (and interleaved
    deterministically): the same seed reads the same examples in the same order, which exact
    resume and the fixed training subset rely on.
    """
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except Exception:  # TFDS raises its own DatasetNotFoundError subclasses.
        raise ValueError(
            f"unknown dataset {name!r}: use 'embedded' or a TFDS name such as "
            f"{sorted(n for n in NUM_CLASSES if n != EMBEDDED)}.") from None
    # Empty until prepared (or mocked): then TFDS decides below.
    split = tfds_split(name, split, sorted(builder.info.splits))
    try:
        # TFDS itself decides whether the data is there (so `tfds.testing.mock_data` works);
        # it raises AssertionError before reading anything when it is not.
        ds = builder.as_dataset(split=split, shuffle_files=split.startswith("train"),
                                read_config=tfds.ReadConfig(shuffle_seed=seed))
    except AssertionError as error:
        family = name.split("/")[0]
        target = data_dir or "~/tensorflow_datasets"
        raise DatasetNotPreparedError(
            f"dataset {name!r} is not prepared in {target} and spn_tf does not download. "
            f"{PREPARE_HINTS.get(family, 'Prepare it with ')}`tfds build {name} "
            f"--data_dir={target}` and pass --data_dir={target} (or use --dataset=embedded)."
        ) from error
    return ds


FOLDER = "folder:"
FOLDER_CROPS = "folder_crops:"
IMAGE_PATTERNS = ("*.png", "*.jpg", "*.jpeg", "*.gif", "*.bmp", "*.PNG", "*.JPG", "*.JPEG")


def _folder_dataset(path, split, prefix=FOLDER):
    """`(image uint8 (h, w, 3), label 0)` pairs of the image files of a folder split."""
    if not tf.io.gfile.isdir(path):
        raise ValueError(f"--dataset={prefix}{path}: {path} is not a directory of images.")
    split_dir = os.path.join(path, split)
    both = all(tf.io.gfile.isdir(os.path.join(path, s)) for s in ("train", "test"))
    files = sorted(f for pattern in IMAGE_PATTERNS
                   for f in tf.io.gfile.glob(os.path.join(split_dir if both else path, pattern)))
    if not both:
        files = [f for i, f in enumerate(files) if (i % 10 == 0) == (split == "test")]
    if not files:
        where = split_dir if both else path
        raise ValueError(f"--dataset={prefix}{path} has no {split} images in {where} "
                         f"({', '.join(IMAGE_PATTERNS)}).")
    decode = lambda f: (tf.io.decode_image(tf.io.read_file(f), channels=3,
                                           expand_animations=False), tf.constant(0, tf.int64))
    return tf.data.Dataset.from_tensor_slices(files).map(decode)


def _crops(ds, size, seed):
    """Random `size x size` crops of each image of `ds` (full resolution; module doc)."""
    def crops(index, example):
        image, label = example
        shape = tf.shape(image)
        count = tf.maximum(1, shape[0] * shape[1] // (size * size))
        seeds = tf.random.experimental.stateless_split(
            tf.random.experimental.stateless_fold_in(tf.constant([seed, 7], tf.int64), index),
            count)
        cut = lambda s: tf.image.stateless_random_crop(image, [size, size, 3], s)
        return tf.data.Dataset.from_tensor_slices((tf.map_fn(
            cut, seeds, fn_output_signature=image.dtype), tf.fill([count], label)))
    big = lambda image, label: tf.reduce_all(tf.shape(image)[:2] >= size)
    return ds.filter(big).enumerate().flat_map(crops)


def num_classes(name):
    """Classes of a dataset's labels (0 when it has none)."""
    if name.startswith((FOLDER, FOLDER_CROPS)):
        return 0
    if name not in NUM_CLASSES:
        raise ValueError(f"unknown dataset {name!r}; known: {sorted(NUM_CLASSES)}.")
    return NUM_CLASSES[name]


def load(name=EMBEDDED, split="train", image_size=32, bits=8, channels=3, batch_size=16,
         shuffle=True, repeat=False, with_labels=False, flip=False, data_dir=None, seed=0,
         drop_remainder=None, shard=(1, 0), skip=0, with_text=False):
    """A batched pipeline of images (and labels).

    Args:
      name: `embedded` or a TFDS name.
      split: `train` or `test` (`validation` is used where a TFDS dataset has no test split).
      image_size: output height = width; images are area-resized to it.
      bits: bits per sub-pixel of the output (`[0, 2**bits)`).
      channels: 3, or 1 for luminance.
      batch_size: examples per batch.
      shuffle, repeat: for training.
      with_labels: add `"label"` int32 `(B,)` (class-conditional models).
      with_text: add `"text"` string `(B,)`, a caption of each crop's photo (text-conditional
        models; `embedded` only).
      flip: random horizontal flips (augmentation).
      data_dir: where prepared TFDS data lives.
      seed: shuffle order (with TFDS, file order too) and flips: the same seed gives the same
        stream under the same global seed (tf.data combines the two for its shuffles;
        `spn_tf.train` sets the global seed from `--seed`). Flips are stateless.
      drop_remainder: defaults to `repeat` (static batch shapes for training, XLA and TPUs).
      shard: `(num_shards, index)`: this input pipeline's share of the examples (one per
        worker under multi-worker training); its flips draw from their own stream.
      skip: examples of the (shuffled, repeated) stream to pass over before preparing any:
        a resumed run continues where it stopped.

    Returns:
      `tf.data.Dataset` of dicts `{"images": int32 (B, H, W, C)[, "label": int32 (B,)]
      [, "text": string (B,)]}`.

    Raises:
      DatasetNotPreparedError: a TFDS dataset that is not prepared (message says how).
      ValueError: unknown name, split or sizes.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}.")
    num_shards, shard_index = shard
    if with_text and name != EMBEDDED:
        raise ValueError(f"captions ship only with the embedded photos: with_text needs "
                         f"name={EMBEDDED!r}, got {name!r}.")
    if with_text:
        captions, first, count = _caption_table()
    if name == EMBEDDED:
        images, labels = embedded_arrays(split, image_size, seed)
        ds = tf.data.Dataset.from_tensor_slices((images, labels))
    elif name.startswith(FOLDER):
        ds = _folder_dataset(name[len(FOLDER):], split)
    elif name.startswith(FOLDER_CROPS):
        ds = _crops(_folder_dataset(name[len(FOLDER_CROPS):], split, FOLDER_CROPS),
                    image_size, seed)
    else:
        ds = _tfds_dataset(name, split, data_dir, seed)

    def prepare(index, example):
        image, label = example
        image = tf.convert_to_tensor(image)
        if image.shape[-1] not in (None, 1, 3):
            image = image[..., :3]
        if image.shape[0] != image_size or image.shape[1] != image_size:
            image = tf.image.resize(tf.cast(image, tf.float32), (image_size, image_size), "area")
            image = tf.clip_by_value(tf.round(image), 0, 255)
        image = tf.cast(image, tf.float32)
        if channels == 1 and image.shape[-1] != 1:
            image = tf.round(tf.image.rgb_to_grayscale(image))
        elif channels == 3 and image.shape[-1] == 1:
            image = tf.image.grayscale_to_rgb(image)
        image = reduce_bits(tf.cast(image, tf.int32), bits)
        if flip:
            flip_seed = tf.random.experimental.stateless_fold_in(
                tf.constant([seed, shard_index], tf.int64), index)
            image = tf.image.stateless_random_flip_left_right(image, flip_seed)
        example = {"images": image}
        if with_labels:
            example["label"] = tf.cast(label, tf.int32)
        if with_text:  # the photo's captions in turn, by position in the stream
            label = tf.cast(label, tf.int64)
            example["text"] = tf.gather(captions, first[label] + index % count[label])
        return example

    if num_shards > 1:
        ds = ds.shard(num_shards, shard_index)
    if shuffle:
        ds = ds.shuffle(4096, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    # The element index seeds its flip: the same stream whatever the parallelism.
    ds = ds.enumerate().skip(skip).map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
    drop = repeat if drop_remainder is None else drop_remainder
    return ds.batch(batch_size, drop_remainder=drop).prefetch(tf.data.AUTOTUNE)
