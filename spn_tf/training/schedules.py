"""Learning rate: linear warm-up, then constant, linear or cosine decay to the last step."""

import math

import keras
import tensorflow as tf

DECAYS = ("constant", "linear", "cosine")


@keras.saving.register_keras_serializable(package="spn_tf")
class WarmupThenDecay(keras.optimizers.schedules.LearningRateSchedule):
    """`learning_rate * (step + 1) / warmup_steps` during warm-up, then the decay.

    After warm-up, `cosine` equals `keras.optimizers.schedules.CosineDecay` (tested). Kept
    because Keras's warm-up (CosineDecay only) starts at its initial rate, so with 0 the
    first step does not move the weights, and Keras has no warm-up before a constant or
    linear decay.

    Args:
      learning_rate: the peak rate, reached at the end of warm-up.
      total_steps: the run's last step; the decay reaches `final_learning_rate` there.
      warmup_steps: steps of linear warm-up (0: none).
      decay: `constant`, `linear` or `cosine` (half a cosine period).
      final_learning_rate: the rate at `total_steps` for `linear` and `cosine`.
    """

    def __init__(self, learning_rate, total_steps, warmup_steps=0, decay="constant",
                 final_learning_rate=0.0):
        if decay not in DECAYS:
            raise ValueError(f"decay must be one of {DECAYS}, got {decay!r}.")
        if not 0 <= warmup_steps <= total_steps:
            raise ValueError(f"warmup_steps must be in [0, total_steps={total_steps}], got "
                             f"{warmup_steps}.")
        self.learning_rate = float(learning_rate)
        self.total_steps = int(total_steps)
        self.warmup_steps = int(warmup_steps)
        self.decay = decay
        self.final_learning_rate = float(final_learning_rate)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        peak, final = self.learning_rate, self.final_learning_rate
        progress = tf.clip_by_value(
            (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps), 0.0, 1.0)
        if self.decay == "linear":
            rate = peak + (final - peak) * progress
        elif self.decay == "cosine":
            rate = final + (peak - final) * 0.5 * (1.0 + tf.cos(math.pi * progress))
        else:
            rate = tf.constant(peak)
        if self.warmup_steps:
            rate = tf.where(step < self.warmup_steps, peak * (step + 1) / self.warmup_steps, rate)
        return rate

    def get_config(self):
        return {"learning_rate": self.learning_rate, "total_steps": self.total_steps,
                "warmup_steps": self.warmup_steps, "decay": self.decay,
                "final_learning_rate": self.final_learning_rate}
