"""The data a run's config names: its training stream, held-out split, the training sample
its train bits/dim are measured on, and held-out clips for a video model's predictions.

Images go through `spn_tf.data.load`, clips through `spn_tf.video_data.load`, with the
config's data arguments.
"""

import numpy as np

from spn_tf import data, video_data
from spn_tf.run_folder import is_video


def data_args(config):
    return dict(image_size=config.image_size, bits=config.bits, channels=config.channels,
                with_labels=bool(config.num_classes), with_text=config.text_conditional,
                data_dir=config.data_dir or None,
                seed=config.seed)


def train_dataset(config, strategy, start_step):
    """One pipeline per worker (its shard), per-replica batches, after `start_step` steps.

    Consecutive per-replica batches go to consecutive replicas, so N replicas see the same
    examples per step as one device at the same global batch. The streams are deterministic
    from the seed: a resumed run passes over the examples of the steps already taken.
    """

    def dataset_fn(context):
        per_replica = context.get_per_replica_batch_size(config.batch_size)
        local_replicas = strategy.num_replicas_in_sync // context.num_input_pipelines
        return load(config, "train", batch_size=per_replica, shuffle=True, repeat=True,
                     flip=config.flip,
                     shard=(context.num_input_pipelines, context.input_pipeline_id),
                     skip=start_step * per_replica * local_replicas)

    return strategy.distribute_datasets_from_function(dataset_fn)


def load(config, split, **kwargs):
    """`data.load`, or `video_data.load` for the video model, with the config's data args."""
    if not is_video(config):
        return data.load(config.dataset, split, **kwargs, **data_args(config))
    if kwargs.pop("flip", False):
        raise ValueError("--flip would mirror a clip but not its actions: leave it off for "
                         "--model=multiscale_video.")
    return video_data.load(config.dataset, split, image_size=config.image_size,
                           num_frames=config.hparams.get("num_frames", 4), bits=config.bits,
                           channels=config.channels, data_dir=config.data_dir or None,
                           seed=config.seed, **kwargs)


def held_out_batch(config, num):
    """The first `num` held-out examples as one batch: `{"images": ..., <conditioning>}`
    (video: `images` are clips, with their `action`)."""
    return next(iter(load(config, "test", batch_size=num, shuffle=False)))


def held_out_dataset(config):
    """The test split the config names: `eval_batches` batches, or all of it."""
    test = load(config, "test", batch_size=config.batch_size, shuffle=False)
    return test.take(config.eval_batches) if config.eval_batches else test


# Batches of the training subset when the held-out split's size is unknown.
TRAIN_SUBSET_BATCHES = 8


def train_subset(config):
    """A fixed sample of the training split, as many batches as the held-out evaluation.

    Drawn from `config.seed` (shuffled without flips; TFDS files in a seeded order; under
    the global seed the run sets from it, `keras.utils.set_random_seed`), so the
    same run measures the same examples, spread over the split rather than the first photos
    in stored order: in-memory data (embedded, folders) are shuffled whole; a TFDS split is
    sampled through its seeded file order and a 4,096-example shuffle buffer.
    """
    batches = int(held_out_dataset(config).cardinality())
    if batches < 0:  # unknown or infinite
        batches = TRAIN_SUBSET_BATCHES
    train = load(config, "train", batch_size=config.batch_size, shuffle=True)
    return train.take(batches)


def predict_held_out_clips(config, model, num, seed, temperature, mode="xla", progress=None):
    """The first `num` held-out clips, each row of frames followed by the row `model`
    predicts from its first frame and actions.

    Returns:
      `(frames int (2 * num * T, H, W, C), T)`: the frames in grid order, and the columns.
    """
    batch = held_out_batch(config, num)
    truth = batch["images"].numpy()
    predicted = model.sample_video(truth[:, 0], batch["action"], seed, temperature,
                                   mode, progress).numpy()
    rows = np.stack([truth, predicted], axis=1)  # (n, 2, T, H, W, C)
    return rows.reshape((-1,) + rows.shape[3:]), truth.shape[1]
