"""What a video model serves: `log_prob` of clips, `sample` of clips from first frames and
actions, `describe`."""

import tensorflow as tf

from spn_tf.models import signatures


class VideoExport(signatures.ExportModule):

    produces_clips = True

    def cond_specs(self):
        model = self.model
        return [tf.TensorSpec([None, model.num_frames - 1, model.action_dims], tf.float32,
                              name="action")]

    def signatures(self):
        model, cond = self.model, self.cond_specs()
        clips = lambda dtype: tf.TensorSpec((None,) + model.example_shape, dtype,  # noqa: E731
                                            name="clips")
        return {
            "log_prob": (signatures.log_prob, [clips(tf.int32)] + cond),
            "log_prob_uint8": (signatures.log_prob, [clips(tf.uint8)] + cond),
            "sample": (signatures.sampler(lambda model, inputs: (signatures.cond_of(inputs), {
                "frames": inputs["first_frames"]}), output="clips"),
                [signatures.image_spec("first_frames", model)] + signatures.draw_specs()
                + cond),
            "describe": (signatures.describe, signatures.describe_spec()),
        }

    def metadata(self):
        return {"num_frames": self.model.num_frames,
                **self.model.frame_model.export_module.metadata()}
