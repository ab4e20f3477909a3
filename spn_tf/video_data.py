"""Action-conditional clips as `tf.data` pipelines of `{"images": int32 (B, T, H, W, C),
"action": float32 (B, T-1, A)}`: action t moves frame t to frame t+1.

Names:
  * `camera` — offline, from the embedded photos: a camera window of `crop x crop` pixels
    moves across a photo; action t is its displacement `(dy, dx)` in pixels, divided by
    `max_step`, so the next frame is the previous one shifted, its new strip predictable only
    from the action. Training clips move over the left part of each photo, held-out clips over
    a disjoint strip on the right (`spn_tf.data.photo_columns`). Frames are area-resized to
    `image_size`.
  * `bair_robot_pushing_small` — the robot-pushing data of Reed et al. 2017's video
    experiments (TFDS: 30 frames of 64x64, a 4-d action per frame), read from prepared TFDS
    data only (a clear error with the `tfds build` command when it is not).
"""

import numpy as np
import tensorflow as tf

from spn_tf import data
from spn_tf.orderings import reduce_bits

CAMERA = "camera"
BAIR = "bair_robot_pushing_small"
ACTION_DIMS = {CAMERA: 2, BAIR: 4}


def camera_clips(split="train", image_size=16, num_frames=4, crop=32, max_step=4,
                 clips_per_photo=64, seed=0):
    """Clips of a camera moving over the embedded photos.

    Returns:
      `(clips uint8 (N, T, image_size, image_size, 3), actions float32 (N, T-1, 2),
      positions int (N, T, 2))`: the window's top-left corner per frame.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}.")
    rng = np.random.default_rng(seed + (0 if split == "train" else 1))
    clips, actions, positions = [], [], []
    for photo in data.embedded_photos():
        lo, hi = data.photo_columns(photo, split, crop)
        for _ in range(clips_per_photo):
            steps = rng.integers(-max_step, max_step + 1, (num_frames - 1, 2))
            start = np.array([rng.integers(0, photo.shape[0] - crop + 1),
                              rng.integers(lo, hi - crop + 1)])
            path = [start]
            for step in steps:  # clamped inside the split's region; the action is the move
                low, high = np.array([0, lo]), np.array([photo.shape[0] - crop, hi - crop])
                path.append(np.clip(path[-1] + step, low, high))
            path = np.stack(path)
            clips.append([photo[r:r + crop, c:c + crop] for r, c in path])
            actions.append(np.diff(path, axis=0) / max_step)
            positions.append(path)
    clips = np.asarray(clips, np.uint8)
    if image_size != crop:
        flat = clips.reshape((-1, crop, crop, 3)).astype(np.float32)
        flat = tf.image.resize(flat, (image_size, image_size), "area").numpy()
        clips = np.clip(np.round(flat), 0, 255).astype(np.uint8).reshape(
            clips.shape[:2] + (image_size, image_size, 3))
    return clips, np.asarray(actions, np.float32), np.asarray(positions)


def load(name=CAMERA, split="train", image_size=16, num_frames=4, bits=5, channels=3,
         batch_size=8, shuffle=True, repeat=False, data_dir=None, seed=0, shard=(1, 0),
         skip=0):
    """A batched pipeline of clips and actions (see the module doc); `shard` and `skip` as in
    `spn_tf.data.load` (a worker's share; examples passed over by a resumed run).

    Raises:
      data.DatasetNotPreparedError: BAIR is not prepared in `data_dir` (message says how).
      ValueError: unknown name or split.
    """
    if name == CAMERA:
        clips, actions, _ = camera_clips(split, image_size, num_frames, seed=seed)
        ds = tf.data.Dataset.from_tensor_slices((clips, actions))
    elif name == BAIR:
        ds = data.tfds_examples(BAIR, split, data_dir, seed).map(
            lambda ex: (tf.image.resize(ex["image_main"][:num_frames], (image_size, image_size),
                                        "area"), ex["action"][:num_frames - 1]))
    else:
        raise ValueError(f"unknown video dataset {name!r}; use {CAMERA!r} or {BAIR!r}.")

    def prepare(clip, action):
        clip = tf.cast(tf.clip_by_value(tf.round(tf.cast(clip, tf.float32)), 0, 255), tf.int32)
        if channels == 1:
            clip = tf.cast(tf.round(tf.image.rgb_to_grayscale(tf.cast(clip, tf.float32))),
                           tf.int32)
        return {"images": reduce_bits(clip, bits), "action": tf.cast(action, tf.float32)}

    ds = ds.shard(*shard).map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
    if shuffle:
        ds = ds.shuffle(4096, seed=seed)
    if repeat:
        ds = ds.repeat()
    return ds.skip(skip).batch(batch_size, drop_remainder=repeat).prefetch(tf.data.AUTOTUNE)
