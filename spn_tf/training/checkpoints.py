"""`RunCheckpoints`: the run's `tf.train.CheckpointManager`, multi-worker aware.

Every worker saves (TF's multi-worker rule); the chief writes to `<model_dir>/checkpoints`,
the others to `<model_dir>/workertemp_<task_id>`, removed after each save. Every worker
restores the chief's latest checkpoint. TensorFlow writes the `checkpoint` index file last and
atomically, so a process killed mid-save leaves the previous checkpoint as the latest.
"""

import glob
import os

import tensorflow as tf


class RunCheckpoints:
    """Saves and restores the trackable `objects` (model, optimizer, ...).

    Args:
      directory: the chief's checkpoint directory.
      keep: checkpoints kept (the oldest are deleted).
      is_chief: this process writes the real checkpoints.
      task_id: this worker's index (names its temporary directory).
      **objects: what to checkpoint, as `tf.train.Checkpoint` keywords.
    """

    def __init__(self, directory, keep, is_chief=True, task_id=0, **objects):
        self.directory = directory
        self.checkpoint = tf.train.Checkpoint(**objects)
        self._is_chief = is_chief
        self._write_dir = directory if is_chief else os.path.join(
            os.path.dirname(directory), f"workertemp_{task_id}")
        self._manager = tf.train.CheckpointManager(self.checkpoint, self._write_dir,
                                                   max_to_keep=keep if is_chief else 1)

    def latest(self):
        """The chief's latest checkpoint prefix, or None."""
        try:
            return tf.train.latest_checkpoint(self.directory)
        except Exception as error:  # A damaged index file raises text-format parse errors.
            raise _unreadable(os.path.join(self.directory, "checkpoint"), error) from None

    def restore_latest(self):
        """Restores the latest checkpoint; returns its prefix, or None when there is none.

        Raises:
          ValueError: the checkpoint's files cannot be read or do not fit this run; the
            message names them.
        """
        path = self.latest()
        if path is None:
            return None
        try:
            self.checkpoint.restore(path).assert_existing_objects_matched()
        except (tf.errors.OpError, ValueError, AssertionError) as error:
            raise _unreadable(path, error) from None
        return path

    def save(self, step):
        """Writes the checkpoint of `step`; returns its prefix (None on other workers)."""
        path = self._manager.save(checkpoint_number=step)
        if not self._is_chief:
            tf.io.gfile.rmtree(self._write_dir)
            return None
        return path


def _unreadable(path, error):
    files = sorted(glob.glob(path + "*")) or [path]
    reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return ValueError(
        f"checkpoint {path} could not be read ({error.__class__.__name__}: {reason}); files: "
        f"{', '.join(files)}. Delete them to resume from the previous checkpoint, or pass "
        f"another --model_dir to start afresh.")
