"""`MultiscaleVideoPixelCNN`: action-conditional video, one multiscale frame at a time."""

import keras
import numpy as np
import tensorflow as tf

from spn_tf import hparams, sampling
from spn_tf import inputs as inputs_lib
from spn_tf.layers import FrameEncoder
from spn_tf.models.base import CodingPlan, DensityModel
from spn_tf.models.video import presets
from spn_tf.models.video.export import VideoExport
from spn_tf.models.multiscale.model import ALIGNED, MultiscalePixelCNN

@keras.saving.register_keras_serializable(package="spn_tf")
class MultiscaleVideoPixelCNN(DensityModel):
    """Clips generated frame after frame, each frame by a Parallel Multiscale PixelCNN
    conditioned on the previous frame and the action taken from it (Reed et al. 2017, §4).

    A clip is int `(B, T, H, W, C)`; its first frame is given (the context a prediction starts
    from) and `cond["action"]` float32 `(B, T-1, A)` holds the action from frame t to t+1.
    `log p(x_1..x_{T-1} | x_0, a) = sum_t log p(x_t | x_{t-1}, a_{t-1})`, each term the frame
    model's exact multiscale likelihood given `FrameEncoder(x_{t-1}, a_{t-1})`: a pooled
    vector (its `cond["embedding"]`) and, with `encoder_aligned_layers > 0` (every preset),
    features spatially aligned with the frame (its `cond["aligned"]`, read by each network at
    its own pixels), as the paper conditions frames on aligned features of the previous one.
    Neither depends on the frame being predicted, so the clip's likelihood is exact and
    normalized over the predicted frames; bits/dim are per predicted sub-pixel.

    Args:
      image_size, channels, bits: one frame's space.
      head, num_mixtures: the frame model's likelihood head (see `DensityModel`).
      cond: `{"action": A}`, the size of an action vector (required).
      num_frames: `T`, frames per clip (the first given).
      encoder_filters, encoder_layers, encoder_aligned_layers: the `FrameEncoder` (its
        `filters`, `num_layers`, `aligned_layers`; 0 aligned layers = the vector only, as
        files saved before the aligned path load).
      **frame_hparams: the frame model's `MultiscalePixelCNN` hyperparameters.

    Verbs: `log_prob(clips, cond)` float32 `(B,)`; `log_prob_map` `(B, T, H, W, C)` (zeros on
    the given first frame); `sample(B, seed, temperature, cond, given={"frames": first})` and
    `sample_video(first_frames, actions, seed)` → int32 clips.
    """

    kind = "multiscale_video"

    preset = staticmethod(presets.preset)
    export_class = VideoExport

    def __init__(self, image_size, channels=3, bits=8, cond=None, num_frames=4,
                 encoder_filters=32, encoder_layers=3, encoder_aligned_layers=0,
                 **frame_hparams):
        own = {k: frame_hparams.pop(k) for k in ("name", "dtype", "trainable", "head",
                                                 "num_mixtures") if k in frame_hparams}
        super().__init__(image_size, channels, bits, None, **own)
        if set(cond or {}) != {"action"}:
            raise ValueError(f"a video model takes cond={{'action': A}} (the size of an action "
                             f"vector), got cond={cond}.")
        hparams.check_positive("cond['action']", cond["action"])
        if not hparams.is_int(num_frames) or num_frames < 2:
            raise ValueError(f"num_frames must be an int >= 2 (the first frame is given), got "
                             f"{num_frames!r}.")
        # The encoder's arguments as users pass them (the layer checks them under its names).
        hparams.check_positive("encoder_filters", encoder_filters)
        hparams.check_positive("encoder_layers", encoder_layers)
        hparams.check_non_negative("encoder_aligned_layers", encoder_aligned_layers)
        self.action_dims = int(cond["action"])
        self.cond_spec = {"action": self.action_dims}
        self.num_frames = int(num_frames)
        self.encoder_filters, self.encoder_layers = encoder_filters, encoder_layers
        self.encoder_aligned_layers = encoder_aligned_layers
        self.frame_hparams = frame_hparams
        units = frame_hparams.get("filters", 48)
        self.frame_encoder = FrameEncoder(units, encoder_filters, encoder_layers,
                                          encoder_aligned_layers, name="frame_encoder")
        self.frame_model = MultiscalePixelCNN(image_size, channels, bits,
                                              cond={"embedding": units}, head=self.head,
                                              num_mixtures=self.num_mixtures,
                                              name="frame_model", **frame_hparams)
        # One clip `(T, H, W, C)`; the frames after the first are modelled.
        self._set_example_shape((self.num_frames,) + self.frame_model.example_shape,
                                (self.num_frames - 1) * self.frame_model.num_dims)

    def _dummy_inputs(self, batch_size=1):
        clips = tf.zeros([batch_size, self.num_frames, self.image_size, self.image_size,
                          self.channels], tf.int32)
        return clips, {"action": tf.zeros([batch_size, self.num_frames - 1, self.action_dims])}

    def check_inputs(self, clips, cond):
        clips = _as_clips(clips)
        frames = inputs_lib.check_images(
            tf.reshape(clips, [-1] + clips.shape[2:].as_list()), self.bits, self.channels,
            self.image_size, self.image_size, "clip frames")
        return tf.reshape(frames, tf.shape(clips)), self.check_cond(cond, clips.shape[0])

    def check_cond(self, cond, batch_size=None):
        if not isinstance(cond, dict) or set(cond) != {"action"}:
            raise ValueError(f"this video model takes cond={{'action': float32 (batch, "
                             f"{self.num_frames - 1}, {self.action_dims})}}; got "
                             f"{sorted(cond) if isinstance(cond, dict) else type(cond).__name__}.")
        action = tf.convert_to_tensor(cond["action"], tf.float32)
        want = (self.num_frames - 1, self.action_dims)
        if action.shape.rank != 3 or tuple(action.shape[1:]) != want or (
                isinstance(batch_size, int) and action.shape[0] not in (None, batch_size)):
            raise ValueError(f"cond['action'] must be float32 (batch, {want[0]}, {want[1]}) "
                             f"(one action per predicted frame), got {action.shape}.")
        return {"action": action}

    def _check_data(self, x):
        if isinstance(x, tf.data.Dataset):
            return  # element values are checked in graph by `model(x)`
        super()._check_data(x)

    def _frame_pairs(self, clips, cond):
        """Folds time into the batch: previous frames, target frames, their conditioning."""
        shape = [-1, self.image_size, self.image_size, self.channels]
        previous = tf.reshape(clips[:, :-1], shape)
        targets = tf.reshape(clips[:, 1:], shape)
        actions = tf.reshape(cond["action"], [-1, self.action_dims])
        return targets, self._frame_cond(previous, actions)

    def _frame_cond(self, previous, actions):
        """The frame model's conditioning from the previous frames and actions."""
        encoded = self.frame_encoder(self._scale(previous), actions)
        frame_cond = {"embedding": encoded["embedding"]}
        if "aligned" in encoded:
            frame_cond[ALIGNED] = encoded["aligned"]
        return frame_cond

    def _outputs(self, clips, cond, training):
        targets, frame_cond = self._frame_pairs(clips, cond)
        return {"frames": self.frame_model.call(targets, frame_cond, training),
                "frame_cond": frame_cond}

    def _log_prob_from_outputs(self, clips, cond, outputs):
        targets = tf.reshape(clips[:, 1:], [-1, self.image_size, self.image_size, self.channels])
        per_frame = self.frame_model.log_prob_from_outputs(targets, outputs["frame_cond"],
                                                           outputs["frames"])
        return tf.reduce_sum(tf.reshape(per_frame, [-1, self.num_frames - 1]), axis=1)

    def _log_prob_map_from_outputs(self, clips, cond, outputs):
        targets = tf.reshape(clips[:, 1:], [-1, self.image_size, self.image_size, self.channels])
        maps = self.frame_model.log_prob_from_outputs(targets, outputs["frame_cond"],
                                                      outputs["frames"], per_subpixel=True)
        maps = tf.reshape(maps, tf.concat([[-1, self.num_frames - 1], tf.shape(maps)[1:]], 0))
        return tf.concat([tf.zeros_like(maps[:, :1]), maps], axis=1)

    def sample_video(self, first_frames, actions, seed, temperature=1.0, mode="xla",
                     progress=None):
        """Predicts clips from their first frames and actions.

        Args:
          first_frames: int `(B, H, W, C)` in `[0, 2**bits)`.
          actions: float32 `(B, T-1, A)`.
          seed: int or int32 `(2,)`; frame t draws from `fold_in(seed, t)`.
          mode: each frame by the frame model's sampler in this mode (`sample`: the same
            clips up to rare rounding flips, as for images).
          progress: None or `progress("frames", done, total)` after each frame (`sample`).

        Returns:
          int32 `(B, T, H, W, C)`, the first frame unchanged.
        """
        first = inputs_lib.check_images(first_frames, self.bits, self.channels,
                                        self.image_size, self.image_size, "first_frames")
        return self.sample(first.shape[0], seed, temperature, {"action": actions},
                           {"frames": first}, mode, progress)

    def _sample(self, batch_size, seed, temperature, cond, given, draws):
        if not isinstance(given, dict) or set(given) != {"frames"}:
            raise ValueError("a video model samples from given={'frames': int (B, H, W, C)}, "
                             "the first frame of each clip (or use sample_video).")
        frames = [inputs_lib.check_images(given["frames"], self.bits, self.channels,
                                          self.image_size, self.image_size, "given['frames']")]
        for t in range(1, self.num_frames):
            frame_cond = self._frame_cond(frames[-1], cond["action"][:, t - 1])
            frame_seed = sampling.fold_in_seed(seed, t)
            frames.append(self.frame_model.run_sampler(
                frame_seed, temperature, frame_cond, mode=draws.mode, coder=draws.coder,
                progress=draws.progress))
            draws.report("frames", t, self.num_frames - 1)
        return tf.stack(frames, axis=1)

    @property
    def coding_plan(self):
        """The first frames coded raw (the model is given them), then each later frame."""
        return CodingPlan(
            parts=lambda clips: (clips[:, 0], [clips[:, t] for t in range(1, self.num_frames)]),
            given=lambda raw: {"frames": raw})

    @property
    def ordering(self):
        """The first frame given (a random one, the same for every row, in `check`), then
        each frame in the frame model's order."""
        frame = self.frame_model.ordering
        steps = int(frame.order.max()) + 1
        order = np.stack([np.full_like(frame.order, -1)] + [
            frame.order + t * steps for t in range(self.num_frames - 1)])

        def conditioning(batch, rng):
            action = rng.normal(size=(batch, self.num_frames - 1, self.action_dims))
            first = rng.integers(0, 2 ** self.bits, (1,) + self.example_shape[1:])
            return ({"action": action.astype(np.float32)},
                    {"frames": np.repeat(first.astype(np.int32), batch, axis=0)})

        return self._ordering(
            order, f"{self.num_frames} frames, the first given, each then by a multiscale "
            f"model ({frame.description}) given the previous frame and action",
            tiny_overrides={"base_size": 1, "num_frames": 2}, conditioning=conditioning)

    def get_config(self):
        return {"name": self.name, "image_size": self.image_size, "channels": self.channels,
                "bits": self.bits, "cond": {"action": self.action_dims}, "head": self.head,
                "num_mixtures": self.num_mixtures, "num_frames": self.num_frames,
                "encoder_filters": self.encoder_filters, "encoder_layers": self.encoder_layers,
                "encoder_aligned_layers": self.encoder_aligned_layers, **self.frame_hparams}


def _as_clips(clips):
    if not tf.is_tensor(clips):
        clips = np.asarray(clips)
        if clips.dtype.kind == "f":
            raise ValueError("clips must be integers (int32 or uint8), got float values; "
                             "quantize first.")
    clips = tf.convert_to_tensor(clips)
    if clips.shape.rank != 5:
        raise ValueError(f"clips must have rank 5 (batch, frames, height, width, channels), got "
                         f"shape {clips.shape}.")
    return clips
