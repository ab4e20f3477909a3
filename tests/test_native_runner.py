"""The native runner (TensorFlow's C++ loader, no Python) and its check have power.

Every kind, head and conditioning runs through it in `test_harness.py` (the `saved_model`
claim); here: a tampered export is caught, an XLA export agrees too, the runner's refusals
say what is wrong, and `spn_tf.check --saved_model` says in one line when there is no compiler.
"""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

import harness
from spn_tf import export
from spn_tf.check import FAIL, PASS, native_checks
from spn_tf.serving import native

CASE = dict(kind="raster", image_size=4, channels=1, bits=2, cond={"label": 3})


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """`(folder, loaded)` of a tiny label-conditioned raster export with warm-up records."""
    path = export.export_model(harness.make_model(**CASE, seed=0),
                               str(tmp_path_factory.mktemp("export") / "1"),
                               warmup_batch_sizes=(1, 2))
    return path, tf.saved_model.load(path)


def _tampered(path, tmp_path, change):
    copy = str(tmp_path / "tampered" / "1")
    shutil.copytree(path, copy)
    change(os.path.join(copy, "variables"))
    return copy


def _statuses(verdicts):
    return [v.status for v in verdicts]


def test_the_untampered_export_agrees(exported):
    path, loaded = exported
    assert _statuses(native_checks.agreement(loaded, path)) == [PASS, PASS]


def test_changed_weights_in_the_variable_files_are_caught(exported, tmp_path):
    path, loaded = exported

    def rewrite(variables):  # every float weight x1.5, written back as a valid checkpoint
        prefix = os.path.join(variables, "variables")
        reader = tf.train.load_checkpoint(prefix)
        names = sorted(reader.get_variable_to_shape_map())
        tensors = [reader.get_tensor(name) for name in names]
        tensors = [t * 1.5 if getattr(t, "dtype", None) == np.float32 else t for t in tensors]
        for name in os.listdir(variables):
            os.remove(os.path.join(variables, name))
        tf.raw_ops.SaveV2(prefix=prefix, tensor_names=names, shape_and_slices=[""] * len(names),
                          tensors=tensors)

    verdicts = native_checks.agreement(loaded, path,
                                       native_path=_tampered(path, tmp_path, rewrite))
    assert _statuses(verdicts) == [FAIL, FAIL], verdicts
    assert "log_prob: max |difference|" in verdicts[0].detail
    assert "rows identical" in verdicts[0].detail  # the sampled images differ too


def test_a_flipped_byte_in_the_variable_data_is_caught(exported, tmp_path):
    path, loaded = exported

    def flip(variables):
        data = next(os.path.join(variables, n) for n in os.listdir(variables) if ".data-" in n)
        raw = bytearray(open(data, "rb").read())
        raw[len(raw) // 2] ^= 0x40
        open(data, "wb").write(bytes(raw))

    verdicts = native_checks.agreement(loaded, path, native_path=_tampered(path, tmp_path, flip))
    assert _statuses(verdicts) == [FAIL, FAIL], verdicts


def test_an_xla_export_agrees_in_the_cpp_loader(tmp_path):
    model = harness.make_model(kind="spn", image_size=4, channels=1, bits=2, subscale_factor=2)
    path = export.export_model(model, str(tmp_path / "1"), xla=True, warmup_batch_sizes=(1,))
    verdicts = native_checks.agreement(tf.saved_model.load(path), path)
    assert _statuses(verdicts) == [PASS, PASS], verdicts


def test_the_runner_refuses_bad_requests_saying_what_is_wrong(exported):
    path, _ = exported
    runner = native.build()
    images = np.zeros((2, 4, 4, 1), np.int32)
    label = np.zeros(2, np.int32)
    cases = [
        (("nope", {"images": images, "label": label}), 'signature key "nope" not found'),
        (("log_prob", {"images": images}), "input label is missing"),
        (("log_prob", {"images": images, "label": label, "x": label}), "an extra"),
        (("log_prob", {"images": images.astype(np.float32), "label": label}),
         "input images holds TF_DataType 1, the signature takes 3"),
        (("log_prob", {"images": images + 7, "label": label}), "images values must be in"),
    ]
    for request, message in cases:
        with pytest.raises(native.NativeError, match=message):
            native.run(runner, path, [request])
    with pytest.raises(native.NativeError, match="TF_LoadSessionFromSavedModel"):
        native.run(runner, os.path.dirname(path), [("log_prob", {})])


def test_prediction_log_records_go_in_as_tf_serving_replays_them(exported, tmp_path):
    path, loaded = exported
    rng = np.random.default_rng(0)
    images = rng.integers(0, 4, (3, 4, 4, 1)).astype(np.int32)
    label = np.arange(3, dtype=np.int32)
    request = predict_pb2.PredictRequest()
    request.model_spec.signature_name = "log_prob"
    request.inputs["images"].CopyFrom(tf.make_tensor_proto(images))
    request.inputs["label"].CopyFrom(tf.make_tensor_proto(label))
    log = prediction_log_pb2.PredictionLog(
        predict_log=prediction_log_pb2.PredictLog(request=request)).SerializeToString()
    records = str(tmp_path / "requests.tfrecord")
    with tf.io.TFRecordWriter(records) as writer:
        writer.write(log)
        writer.write(log)
    runner = native.build()
    got = native.replay_warmup(runner, path, records)
    want = loaded.signatures["log_prob"](images=images, label=label)["log_prob"].numpy()
    assert len(got) == 2
    np.testing.assert_allclose(got[1]["log_prob"], want, rtol=native_checks.RTOL)
    raw = bytearray(open(records, "rb").read())
    raw[20] ^= 1  # inside the first record's data: its CRC no longer matches
    open(records, "wb").write(bytes(raw))
    with pytest.raises(native.NativeError, match="record 0: corrupt data"):
        native.replay_warmup(runner, path, records)


def _check_cli(path, **env):
    # As a user runs it: no TF_CPP_MIN_LOG_LEVEL, so the CLI's own quieting is what is tested.
    user = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    return subprocess.run([sys.executable, "-m", "spn_tf.check", f"--saved_model={path}"],
                          capture_output=True, text=True, env=dict(user, **env))


def test_check_cli_runs_the_cpp_loader_or_says_there_is_no_compiler(exported):
    path, _ = exported
    ran = _check_cli(path)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert ran.stdout.count("C++ loader (TF C API, no Python) = Python load") == 2
    without = _check_cli(path, CC="/nonexistent/cc")
    assert without.returncode == 0, without.stdout + without.stderr
    lines = [line for line in without.stdout.splitlines() if "C++ loader" in line]
    assert len(lines) == 1 and "n/a" in lines[0] and "no C compiler found" in lines[0], lines
    assert "all passed" in without.stdout and without.stderr == ""
