"""`spn_tf.check` catches each way exactness breaks, passes the presets' layer patterns, and its
CLI and export audit work. (Every kind passing each claim: tests/test_harness.py.)"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from spn_tf import export, hparams, models
from spn_tf.check import export_checks, model_checks
from spn_tf.layers import causal_self_attention, group_predictor, masked_conv2d
from spn_tf.models import video
from spn_tf.models.raster import GatedPixelCNN

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KINDS = {
    "raster": ("raster", {}),
    "spn": ("spn", {"attention_layers": (0,)}),
    "multiscale_a": ("multiscale", {"base_size": 2}),
}


def _build(kind, **overrides):
    name, defaults = KINDS[kind]
    return models.build(name, 4, channels=3, bits=2, preset="tiny", cond={"label": 3},
                        **{**defaults, **overrides})


def _failed(verdicts):
    return sorted(v.check.split(" [")[0] for v in verdicts if v.failed)


# The layer pattern of a preset (depth, kernel sizes, attention positions, heads, patches) at
# test widths: exactness depends on the pattern, not on how many units a layer has.
NARROW = {
    "raster": dict(filters=6),
    "spn": dict(filters=12, embedder_filters=8, key_dim=4),
    "upscaling": dict(filters=12, embedder_filters=8, key_dim=4),
    "multiscale": dict(filters=6, base_filters=6, group_pixelcnn_filters=6),
}


@pytest.mark.parametrize("name", list(NARROW))
def test_small_and_paper_layer_patterns_pass_on_their_tiny_copies(name):
    rng = np.random.default_rng(0)
    # The upscaling networks are SPNs (the `spn` case checks the paper pattern): small only.
    for preset in ("small",) if name == "upscaling" else ("small", "paper"):
        model = models.build(name, 32, channels=3, bits=5, preset=preset, **NARROW[name])
        for part, network in model.ordering.units:
            tiny = model_checks.tiny_copy(network)
            assert type(tiny) is type(network) and tiny.image_size == 2
            verdicts = model_checks.normalization(part, network, rng)
            if name != "upscaling":  # its networks are SPNs: the layer pattern of `spn`
                verdicts += model_checks.causality(preset, tiny, rng)
            assert [v.status for v in verdicts] == ["pass"] * len(verdicts), verdicts


def test_an_even_kernel_is_caught(monkeypatch):
    monkeypatch.setattr(hparams, "check_odd_kernel", lambda *args, **kwargs: None)
    model = _build("raster", kernel_size=4, first_kernel_size=4)
    rng = np.random.default_rng(0)
    assert _failed(model_checks.causality("x", model, rng)) == ["causality"]
    assert _failed(model_checks.normalization("x", model, rng)) == ["normalization"]


def test_an_unmasked_centre_tap_is_caught(monkeypatch):
    causal_mask = masked_conv2d.causal_mask

    def leaky(kernel_size, *args, **kwargs):  # a mask A whose centre tap sees its own channel
        mask = causal_mask(kernel_size, *args, **kwargs)
        mask[kernel_size[0] // 2, kernel_size[1] // 2] = 1.0
        return mask

    monkeypatch.setattr(masked_conv2d, "causal_mask", leaky)
    rng = np.random.default_rng(0)
    model = _build("raster")
    assert _failed(model_checks.conditionals("x", model, rng)) == ["conditionals sum to 1"]
    assert _failed(model_checks.normalization("x", model, rng)) == ["normalization"]


def test_attention_without_the_shift_is_caught(monkeypatch):
    def unshifted(self, inputs):  # `CausalSelfAttention.call` with the one-pixel shift left out
        batch = ops.shape(inputs)[0]
        height, width, depth = inputs.shape[1], inputs.shape[2], inputs.shape[3]
        seq = self.norm(ops.reshape(inputs, (batch, height * width, depth)))
        mask = ops.tril(ops.ones((height * width, height * width), dtype="bool"))
        out = self.attend(self.attention.query_dense(seq), self.attention.key_dense(seq),
                          self.attention.value_dense(seq), mask[None, None])
        return ops.reshape(out, (batch, height, width, depth))

    monkeypatch.setattr(causal_self_attention.CausalSelfAttention, "call", unshifted)
    model = _build("spn", subscale_factor=1, slice_range=(0, 1))
    assert "causality" in _failed(model_checks.causality("x", model, np.random.default_rng(0)))


def test_a_multiscale_group_that_reads_its_own_group_is_caught(monkeypatch):
    head = group_predictor.GroupPredictor.head

    def reads_itself(self, features, pixels):  # every channel sees all of its own pixel
        self.pixels_in._mask = np.ones_like(self.pixels_in._mask)
        return head(self, features, pixels)

    monkeypatch.setattr(group_predictor.GroupPredictor, "head", reads_itself)
    model = _build("multiscale_a")
    rng = np.random.default_rng(0)
    assert _failed(model_checks.conditionals("x", model, rng)) == ["conditionals sum to 1"]
    assert _failed(model_checks.normalization("x", model, rng)) == ["normalization"]


def test_a_sampler_at_the_wrong_temperature_is_caught(monkeypatch):
    sample = GatedPixelCNN._sample

    def hot(self, batch_size, seed, temperature, *args):
        return sample(self, batch_size, seed, temperature * 1.5, *args)

    monkeypatch.setattr(GatedPixelCNN, "_sample", hot)
    verdicts = model_checks.samples_follow("x", _build("raster"), np.random.default_rng(0))
    assert _failed(verdicts) == ["samples follow log_prob"]


def test_exports_pass_and_one_ignoring_per_row_seeds_is_caught(tmp_path):
    good = export.export_model(_build("raster"), str(tmp_path / "good" / "1"))
    assert not _failed(export_checks.audit_export(good))

    class SharedSeed(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.int32, name="seed"),
                                      tf.TensorSpec([None], tf.float32, name="temperature")])
        def sample(self, seed, temperature):  # every row drawn from the first row's seed
            shape = tf.stack([tf.shape(seed)[0], 2, 2, 1])
            uniform = tf.random.stateless_uniform(shape[1:], seed[0])
            return {"images": tf.tile(tf.cast(uniform * 2, tf.int32)[None], [shape[0], 1, 1, 1])}

        @tf.function(input_signature=[tf.TensorSpec([None, 2, 2, 1], tf.int32, name="images")])
        def log_prob(self, images):
            tf.debugging.assert_less(images, 2)
            tf.debugging.assert_greater_equal(images, 0)
            return {"log_prob": tf.fill([tf.shape(images)[0]], -4 * np.log(2.0))}

    module = SharedSeed()
    bad = str(tmp_path / "bad")
    tf.saved_model.save(module, bad, signatures={
        "sample": module.sample, "log_prob": module.log_prob, "serving_default": module.log_prob})
    os.makedirs(os.path.join(bad, "assets.extra"))
    with open(os.path.join(bad, export_checks.METADATA_FILE), "w") as f:
        json.dump({"image_size": 2, "channels": 1, "bits": 1}, f)
    assert _failed(export_checks.audit_export(bad)) == ["sample: row i = 1-row request, seed i"]


def test_missing_and_corrupt_inputs_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="no SavedModel at"):
        export_checks.load(str(tmp_path))
    (tmp_path / "saved_model.pb").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="could not be loaded"):
        export_checks.load(str(tmp_path))
    result = subprocess.run(
        [sys.executable, "-m", "spn_tf.check", f"--model_dir={tmp_path / 'empty'}"], cwd=ROOT,
        capture_output=True, text=True, timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 2 and "no checkpoint in" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_prints_json_and_exits_zero_on_a_passing_configuration():
    result = subprocess.run(
        [sys.executable, "-m", "spn_tf.check", "--model=multiscale", "--preset=tiny",
         "--image_size=4", "--bits=2", "--hparams=base_size=2", "--agreement_seeds=1", "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stderr[-2000:]
    verdicts = json.loads(result.stdout)
    assert {v["status"] for v in verdicts} <= {"pass", "n/a"} and len(verdicts) == 7


def test_video_passes_and_a_frame_conditioned_on_itself_is_caught(monkeypatch):
    model = models.build("multiscale_video", 4, channels=1, bits=2, preset="tiny",
                         cond={"action": 2}, num_frames=3, base_size=2)
    verdicts = model_checks.audit_model(model, agreement_seeds=1, gtest_samples=2000)
    assert not _failed(verdicts), [v for v in verdicts if v.failed]

    def leaky(self, clips, cond):  # the encoder reads the frame it conditions, not the one before
        targets = tf.reshape(clips[:, 1:], [-1, self.image_size, self.image_size, self.channels])
        return targets, self._frame_cond(targets, tf.reshape(cond["action"],
                                                             [-1, self.action_dims]))

    monkeypatch.setattr(video.MultiscaleVideoPixelCNN, "_frame_pairs", leaky)
    assert "causality" in _failed(model_checks.causality("x", model, np.random.default_rng(0)))
