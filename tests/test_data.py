import time

import numpy as np
import pytest

from spn_tf import data


def test_embedded_photos_are_real_and_split_disjointly():
    train, train_labels = data.embedded_arrays("train", 32)
    test, test_labels = data.embedded_arrays("test", 32)
    assert train.shape == (2560, 32, 32, 3) and test.shape == (320, 32, 32, 3)
    assert set(train_labels) == set(test_labels) == set(range(10))
    # Natural photos: neighbouring pixels are strongly correlated (noise would be ~0).
    x = train.astype(np.float64)
    corr = np.corrcoef(x[:, :, :-1].ravel(), x[:, :, 1:].ravel())[0, 1]
    assert corr > 0.8
    np.testing.assert_array_equal(train, data.embedded_arrays("train", 32)[0])


@pytest.mark.parametrize("size,bits,channels", [(8, 3, 1), (16, 5, 3), (32, 8, 3)])
def test_pipeline_shapes_ranges_and_labels(size, bits, channels):
    ds = data.load("embedded", "test", image_size=size, bits=bits, channels=channels,
                   batch_size=4, with_labels=True, flip=True)
    batch = next(iter(ds))
    assert batch["images"].shape == (4, size, size, channels)
    assert batch["images"].dtype.name == "int32" and batch["label"].shape == (4,)
    values = batch["images"].numpy()
    assert values.min() >= 0 and values.max() < 2 ** bits


def test_missing_tfds_data_fails_at_once_with_the_command(tmp_path):
    start = time.time()
    with pytest.raises(data.DatasetNotPreparedError, match="tfds build imagenet_resized/32x32"):
        data.load("imagenet_resized/32x32", data_dir=str(tmp_path))
    assert time.time() - start < 30


def test_unknown_dataset_and_bad_arguments():
    with pytest.raises(ValueError, match="unknown dataset"):
        data.load("imagenet_typo", data_dir="/nonexistent")
    with pytest.raises(ValueError, match="split"):
        data.load("embedded", "validation")
    with pytest.raises(ValueError, match="channels"):
        data.load("embedded", channels=2)


def test_shards_are_disjoint_flips_reproducible_and_skip_resumes_the_stream():
    def images(**kwargs):
        ds = data.load("embedded", "test", image_size=4, bits=8, batch_size=8, shuffle=False,
                       flip=True, seed=3, **kwargs)
        return np.concatenate([b["images"].numpy() for b in ds])

    whole = images()
    np.testing.assert_array_equal(images(), whole)  # stateless flips: the same stream
    first, second = images(shard=(2, 0)), images(shard=(2, 1))
    assert len(first) + len(second) == len(whole)
    np.testing.assert_array_equal(images(skip=5), whole[5:])
    unflipped = data.load("embedded", "test", image_size=4, bits=8, batch_size=len(whole),
                          shuffle=False, seed=3)
    plain = next(iter(unflipped))["images"].numpy()
    flipped = (whole != plain).reshape(len(whole), -1).any(axis=1)
    assert 0.2 < flipped.mean() < 0.8
    np.testing.assert_array_equal(whole[flipped], plain[flipped][:, :, ::-1])


def test_folder_of_images_is_a_dataset(tmp_path):
    import tensorflow as tf

    rng = np.random.default_rng(0)
    for i in range(12):
        image = rng.integers(0, 256, (10 + i, 12, 3)).astype(np.uint8)
        (tmp_path / f"im{i:02d}.png").write_bytes(tf.io.encode_png(image).numpy())
    name = f"folder:{tmp_path}"
    assert data.num_classes(name) == 0
    train = data.load(name, "train", image_size=4, bits=3, batch_size=16, shuffle=False)
    test = data.load(name, "test", image_size=4, bits=3, batch_size=16, shuffle=False)
    train_images, test_images = next(iter(train))["images"], next(iter(test))["images"]
    assert train_images.shape == (10, 4, 4, 3) and test_images.shape == (2, 4, 4, 3)
    assert int(tf.reduce_max(train_images)) < 8
    with pytest.raises(ValueError, match="not a directory"):
        data.load(f"folder:{tmp_path}/missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="has no train images"):
        data.load(f"folder:{tmp_path}/empty")


def test_folder_crops_are_full_resolution_windows(tmp_path):
    """`folder_crops:` cuts random model-size windows of each image, pixel for pixel (no
    resizing), about one per image_size**2 pixels; an image smaller than a crop is left out."""
    import tensorflow as tf

    rng = np.random.default_rng(1)
    big = rng.integers(0, 256, (20, 13, 3)).astype(np.uint8)
    for name, image in (("a.png", big), ("small.png", big[:3, :3])):
        (tmp_path / "train").mkdir(exist_ok=True)
        (tmp_path / "train" / name).write_bytes(tf.io.encode_png(image).numpy())
    (tmp_path / "test").mkdir()
    (tmp_path / "test" / "t.png").write_bytes(tf.io.encode_png(big).numpy())
    name = f"folder_crops:{tmp_path}"
    assert data.num_classes(name) == 0
    crops = next(iter(data.load(name, "train", image_size=8, bits=8, batch_size=64,
                                shuffle=False)))["images"].numpy()
    assert crops.shape == (20 * 13 // 64, 8, 8, 3)
    windows = {big[i:i + 8, j:j + 8].tobytes() for i in range(13) for j in range(6)}
    assert all(crop.astype(np.uint8).tobytes() in windows for crop in crops)
    assert len({crop.tobytes() for crop in crops}) > 1  # random, not one window repeated
    with pytest.raises(ValueError, match="--dataset=folder_crops:.* is not a directory"):
        data.load(f"folder_crops:{tmp_path}/missing")


def test_tfds_splits_hold_out_a_slice_when_there_is_only_train():
    assert data.tfds_split("mnist", "test", ["test", "train"]) == "test"
    assert data.tfds_split("imagenet_resized/32x32", "test", ["train", "validation"]) == (
        "validation")
    # celeb_a_hq has only `train`: two disjoint slices of it.
    assert data.tfds_split("celeb_a_hq/256", "train", ["train"]) == "train[:95%]"
    assert data.tfds_split("celeb_a_hq/256", "test", ["train"]) == "train[95%:]"
    assert data.tfds_split("x", "test", []) == "test"  # not prepared: TFDS reports it
    with pytest.raises(ValueError, match="has splits"):
        data.tfds_split("x", "test", ["extra", "train"])
