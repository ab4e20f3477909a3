"""TensorBoard event files of a run: `<model_dir>/train` and `<model_dir>/eval`.

Written with `tf.summary.write` and TensorBoard's plugin metadata (`scalars`, `images`), so
training needs no `tensorboard` package (`tf.summary.scalar` does); viewing does.
"""

import os

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import summary_pb2


def _metadata(plugin):
    return summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name=plugin)
    ).SerializeToString()


class RunSummaries:
    """Writes scalars and sample grids for TensorBoard (`tensorboard --logdir=<model_dir>`).

    Args:
      model_dir: the run's directory.
      enabled: False on non-chief workers (nothing is written).
    """

    def __init__(self, model_dir, enabled=True):
        self.enabled = enabled
        self._writers = {}
        if enabled:
            self._writers = {name: tf.summary.create_file_writer(os.path.join(model_dir, name))
                             for name in ("train", "eval")}

    def scalars(self, split, step, **values):
        """`values` (name → float) at `step` under `split` (`train` or `eval`)."""
        if split not in self._writers:
            return
        with self._writers[split].as_default(step=step):
            for name, value in values.items():
                tf.summary.write(name, tf.constant(value, tf.float32),
                                 metadata=_metadata("scalars"))
        self._writers[split].flush()

    def samples(self, step, images, bits):
        """A batch of int images in `[0, 2**bits)` as an image summary."""
        if "eval" not in self._writers:
            return
        images = np.asarray(images)
        scaled = np.round(images * (255.0 / (2 ** bits - 1))).astype(np.uint8)
        height, width = images.shape[1:3]
        # TensorBoard's image format: [width, height, png, png, ...] as strings.
        content = [str(width).encode(), str(height).encode()]
        content += [tf.io.encode_png(image).numpy() for image in scaled]
        with self._writers["eval"].as_default(step=step):
            tf.summary.write("samples", tf.constant(content), metadata=_metadata("images"))
        self._writers["eval"].flush()
