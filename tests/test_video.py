"""Action-conditional video: exact clip likelihoods, causality across and within frames,
actions that matter, the first frame kept, export of clips, the camera clips, the train CLI."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from spn_tf import data, evaluate, export, models, orderings, run_folder, sample, video_data
import helpers as testing
from spn_tf.check import export_checks, model_checks
from spn_tf.layers import FrameEncoder

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FRAMES = testing.all_images(2, 2, 1, 1)  # every 2x2 binary frame


def _model(num_frames=3, **overrides):
    return models.build("multiscale_video", 2, channels=1, bits=1, preset="tiny",
                        cond={"action": 2}, num_frames=num_frames, base_size=1, **overrides)


def _actions(n, num_frames=3, sign=1.0):
    return np.tile(sign * np.array([[0.5, -0.25]], np.float32), (n, num_frames - 1, 1))


def test_every_clip_of_a_tiny_space_sums_to_one_given_its_first_frame():
    model = testing.sharpen(_model(), 2.0)
    x0 = FRAMES[6]
    clips = np.array([[x0, a, b] for a in FRAMES for b in FRAMES])  # 256 clips
    log_prob = model.log_prob(clips, {"action": _actions(len(clips))}).numpy()
    assert abs(np.exp(log_prob.astype(np.float64)).sum() - 1) < 1e-4
    # The actions condition the frames.
    other = model.log_prob(clips, {"action": _actions(len(clips), sign=-1.0)}).numpy()
    assert np.abs(other - log_prob).max() > 1e-3


def test_later_frames_never_change_earlier_terms_and_frames_keep_their_ordering():
    model = _model()
    rng = np.random.default_rng(0)
    clips = rng.integers(0, 2, (8, 3, 2, 2, 1)).astype(np.int32)
    changed = clips.copy()
    changed[:, 2] = 1 - changed[:, 2]  # every sub-pixel of the last frame
    cond = {"action": _actions(8)}
    before, after = (model.log_prob_map(x, cond).numpy() for x in (clips, changed))
    np.testing.assert_array_equal(before[:, :2], after[:, :2])
    assert (before[:, 0] == 0).all()  # the first frame is given
    np.testing.assert_allclose(before.sum(axis=(1, 2, 3, 4)), model.log_prob(clips, cond),
                               rtol=1e-5)
    # Within a frame: the frame model's multiscale ordering, probed bit for bit.
    verdicts = model_checks.causality("frame", model.frame_model, rng)
    assert not [v for v in verdicts if v.failed], verdicts


def test_sample_video_keeps_the_first_frame_it_is_given():
    # Its draws following log_prob, compiled == reference and the SavedModel's `sample` are
    # the harness's claims (tests/test_harness.py: "multiscale_video").
    model = _model(num_frames=2)
    x0 = np.repeat(FRAMES[9][None], 4, axis=0)
    clips = model.sample_video(x0, _actions(4, num_frames=2), seed=4).numpy()
    assert clips.shape == (4, 2, 2, 2, 1) and (clips[:, 0] == FRAMES[9]).all()


@pytest.mark.parametrize("name, value", [("encoder_aligned_layers", -1),
                                         ("encoder_layers", 0), ("encoder_filters", 0)])
def test_encoder_hyperparameters_are_refused_by_the_names_users_pass(name, value):
    with pytest.raises(ValueError, match=f"^{name}={value}"):
        _model(**{name: value})


def test_each_network_reads_the_aligned_features_at_its_own_pixels():
    model = models.build("multiscale", 8, channels=1, bits=1, preset="tiny", base_size=2)
    index = np.arange(64, dtype=np.float32).reshape(1, 8, 8, 1)  # feature = pixel index
    base, groups = orderings.multiscale_split(index, 2)
    np.testing.assert_array_equal(model._base_context(None, index), base)
    for scale in range(model.num_scales):
        for g in range(3):
            np.testing.assert_array_equal(model._group_context(None, index, scale, g),
                                          groups[scale][:, g])


def test_aligned_features_move_with_the_frame():
    encoder = FrameEncoder(4, filters=3, num_layers=1, aligned_layers=2)
    frames = np.random.default_rng(0).uniform(-1, 1, (1, 12, 12, 3)).astype(np.float32)
    actions = np.array([[0.5, -0.5]], np.float32)
    aligned = encoder(frames, actions)["aligned"].numpy()
    shifted = encoder(np.roll(frames, 1, axis=2), actions)["aligned"].numpy()
    assert aligned.shape == (1, 12, 12, 4)
    # Two 3x3 layers: away from the borders, moving the frame moves the features.
    np.testing.assert_allclose(shifted[:, 2:-2, 3:-2], aligned[:, 2:-2, 2:-3], atol=1e-6)
    assert "aligned" not in FrameEncoder(4, filters=3, num_layers=1)(frames, actions)


def test_keras_round_trip_and_clear_errors(tmp_path):
    model = _model()
    clips = np.zeros((2, 3, 2, 2, 1), np.int32)
    cond = {"action": _actions(2)}
    expected = model.log_prob(clips, cond)
    path = str(tmp_path / "video.keras")
    model.save(path)
    np.testing.assert_array_equal(keras.saving.load_model(path).log_prob(clips, cond), expected)
    with pytest.raises(ValueError, match="cond\\['action'\\] must be float32 \\(batch, 2, 2\\)"):
        model.log_prob(clips, {"action": np.zeros((2, 3, 2), np.float32)})
    with pytest.raises(ValueError, match="rank 5"):
        model.log_prob(clips[:, 0], cond)
    with pytest.raises(ValueError, match="values must be in \\[0, 2\\)"):
        model.log_prob(clips + 3, cond)


def test_export_takes_clips_and_actions_and_equals_the_in_process_model(tmp_path):
    model = testing.sharpen(_model(), 2.0)
    loaded = tf.saved_model.load(export.export_model(model, str(tmp_path / "1")))
    rng = np.random.default_rng(0)
    clips = rng.integers(0, 2, (3, 3, 2, 2, 1)).astype(np.int32)
    actions = rng.normal(size=(3, 2, 2)).astype(np.float32)
    want = model.log_prob(clips, {"action": actions}).numpy()
    for name, dtype in (("log_prob", tf.int32), ("log_prob_uint8", tf.uint8)):
        got = loaded.signatures[name](clips=tf.constant(clips, dtype), action=actions)
        np.testing.assert_allclose(got["log_prob"], want, rtol=1e-5)
    seeds, temperatures = np.array([[0, 1], [7, 2], [3, 9]], np.int32), np.array([1, .5, 0],
                                                                                np.float32)
    first = clips[:, 0]
    sampled = loaded.signatures["sample"](first_frames=first, seed=seeds,
                                          temperature=temperatures, action=actions)["clips"]
    for row in range(3):  # row i = the in-process model on row i alone
        one = model.sample(1, seeds[row], float(temperatures[row]),
                           {"action": actions[row:row + 1]}, {"frames": first[row:row + 1]})
        np.testing.assert_array_equal(sampled[row], one[0])
    bad = clips.copy()
    bad[0, 1, 0, 0, 0] = 2
    with pytest.raises(tf.errors.InvalidArgumentError, match="clips values must be in"):
        loaded.signatures["log_prob"](clips=bad, action=actions)
    with pytest.raises(tf.errors.InvalidArgumentError, match="action values must be finite"):
        loaded.signatures["sample"](first_frames=first, seed=seeds, temperature=temperatures,
                                    action=np.full_like(actions, np.nan))
    verdicts = export_checks.audit_export(str(tmp_path / "1"))
    assert not [v for v in verdicts if v.failed], verdicts


def test_camera_clips_move_by_their_actions_over_disjoint_regions():
    clips, actions, positions = video_data.camera_clips("train", image_size=32, num_frames=3,
                                                        clips_per_photo=4)
    photo = data.embedded_photos()[0]
    for clip, action, path in zip(clips[:4], actions[:4], positions[:4]):
        for frame, (r, c) in zip(clip, path):
            np.testing.assert_array_equal(frame, photo[r:r + 32, c:c + 32])
        np.testing.assert_allclose(action * 4, np.diff(path, axis=0))
    _, _, held_out = video_data.camera_clips("test", image_size=32, num_frames=3,
                                             clips_per_photo=4)
    lo, _ = data.photo_columns(photo, "test", 32)
    assert positions[:4, :, 1].max() + 32 <= lo <= held_out[:4, :, 1].min()


def test_bair_without_prepared_data_is_a_clear_error(tmp_path):
    with pytest.raises(data.DatasetNotPreparedError, match="tfds build bair_robot_pushing_small"):
        video_data.load(video_data.BAIR, data_dir=str(tmp_path))


def test_video_quickstart_config_trains_and_writes_truth_and_prediction_rows(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "spn_tf.train", "--config=video_quickstart", "--preset=tiny",
         "--image_size=4", "--steps=2", "--batch_size=4", "--eval_batches=1",
         "--num_samples=2", f"--model_dir={tmp_path}"], cwd=ROOT, capture_output=True,
        text=True, timeout=600, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "held-out bits/dim" in result.stdout
    # 2 clips x (truth, prediction) rows of 4 frames of 4x4, 1-pixel gaps, enlarged 4x.
    from spn_tf.grid import read_image
    assert read_image(str(tmp_path / "samples.png")).shape == (4 * 21, 4 * 21, 3)
    # The sample CLI predicts held-out clips of the run's data; evaluate maps every frame.
    model = keras.saving.load_model(str(tmp_path / "model.keras"))
    out = sample.run(str(tmp_path), 3, 16, 5, 1.0, None, None, "reference",
                     str(tmp_path / "clips.png"))
    truth = video_data.load("camera", "test", image_size=4, num_frames=4, bits=5, batch_size=3,
                            shuffle=False)
    truth = next(iter(truth))["images"].numpy()
    assert out.shape == (3 * 2 * 4, 4, 4, 3)
    np.testing.assert_array_equal(out.reshape(3, 2, 4, 4, 4, 3)[:, 0], truth)
    np.testing.assert_array_equal(out.reshape(3, 2, 4, 4, 4, 3)[:, 1, 0], truth[:, 0])
    side = lambda tiles: 4 * (5 * tiles + 1)  # 4x4 tiles, 1-pixel gaps, enlarged 4x
    assert read_image(str(tmp_path / "clips.png")).shape == (side(6), side(4), 3)
    evaluate.write_heatmap_of(model, run_folder.run_config(str(tmp_path)), str(tmp_path / "map.png"),
                              2)
    # 8 frames beside their maps, 4 pairs a row.
    assert read_image(str(tmp_path / "map.png")).shape == (side(2), side(8), 3)
    with pytest.raises(ValueError, match="--labels, --captions and --given do not apply"):
        sample.run(str(tmp_path), 1, 1, 0, 1.0, ["1"], None, "reference", str(tmp_path / "x.png"))
