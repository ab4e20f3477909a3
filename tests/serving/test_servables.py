"""Version folders, version policies and warm-up at load, as TF Serving's file system source
and manager handle them."""

import time

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2
from tensorflow_serving.config import file_system_storage_path_source_pb2, model_server_config_pb2

from spn_tf import models, warmup
from spn_tf.export import export_model
from spn_tf.serving.servables import (Model, ModelManager, RequestError, State,
                                      version_folders, wanted_versions)

Policy = file_system_storage_path_source_pb2.FileSystemStoragePathSourceConfig \
    .ServableVersionPolicy


def test_version_folders_are_numeric_folders_holding_a_saved_model(tmp_path):
    for name in ["1", "2", "10", "tmp", "3"]:
        (tmp_path / name).mkdir()
    for name in ["1", "10", "tmp"]:
        (tmp_path / name / "saved_model.pb").write_bytes(b"")
    assert version_folders(str(tmp_path)) == {1: str(tmp_path / "1"), 10: str(tmp_path / "10")}
    assert version_folders(str(tmp_path / "missing")) == {}


def test_version_policies():
    available = {1, 2, 5, 7}
    assert wanted_versions(Policy(), available) == {7}
    assert wanted_versions(Policy(latest=Policy.Latest(num_versions=2)), available) == {5, 7}
    assert wanted_versions(Policy(all=Policy.All()), available) == available
    assert wanted_versions(Policy(specific=Policy.Specific(versions=[2, 3])), available) == {2}


def test_requests_for_missing_versions_and_labels_get_tf_serving_errors(tmp_path):
    config = model_server_config_pb2.ModelConfig(name="m", base_path=str(tmp_path),
                                                 version_labels={"stable": 3})
    model = Model(config)
    model.poll()  # an empty base path: nothing to serve yet
    for version, label, code, message in [
            (None, None, "NOT_FOUND", "Servable not found for request: Latest(m)"),
            (2, None, "NOT_FOUND", "Servable not found for request: Specific(m, 2)"),
            (None, "stable", "NOT_FOUND", "Servable not found for request: Specific(m, 3)"),
            (None, "canary", "INVALID_ARGUMENT", "Unrecognized servable version label: canary")]:
        with pytest.raises(RequestError) as error:
            model.servable(version, label)
        assert (error.value.code.name, error.value.message) == (code, message)
    assert model.states() == {}


def test_warm_up_is_replayed_and_a_failed_load_or_vanished_base_path_keeps_the_old_version(
        tmp_path):
    model = models.build("raster", 2, channels=1, bits=1, preset="tiny", cond={"label": 2})
    export_model(model, str(tmp_path / "1"), warmup_batch_sizes=(1, 3))
    config = model_server_config_pb2.ModelConfig(name="m", base_path=str(tmp_path))
    served = Model(config)
    served.poll()
    assert served.servable().version == 1
    # A warm-up request the graph refuses (label 5 of 2 classes): TF Serving does not load
    # such a version, and neither does the stand-in; version 1 keeps serving.
    export_model(model, str(tmp_path / "2"), warmup_batch_sizes=(1,))
    path = tmp_path / "2" / warmup.WARMUP_FILE
    logs = [prediction_log_pb2.PredictionLog.FromString(record)
            for record in tf.data.TFRecordDataset(str(path)).as_numpy_iterator()]
    logs[0].predict_log.request.inputs["label"].CopyFrom(tf.make_tensor_proto(np.int32([5])))
    with tf.io.TFRecordWriter(str(path)) as writer:
        for log in logs:
            writer.write(log.SerializeToString())
    images = {"images": tf.zeros([2, 2, 2, 1], tf.int32), "label": tf.constant([0, 1])}
    before = served.servable().signatures["log_prob"](**images)["log_prob"].numpy()
    served.poll()
    state, error = served.states()[2]
    assert State.Name(state) == "END" and "warm-up request for signature" in error
    assert "label values must be class ids in [0, 2)" in error
    # A corrupt new version does not load either; a vanished base path unloads nothing.
    (tmp_path / "3").mkdir()
    (tmp_path / "3" / "saved_model.pb").write_bytes(b"not a SavedModel")
    served.poll()
    assert State.Name(served.states()[3][0]) == "END" and served.states()[3][1]
    tmp_path.rename(tmp_path.with_name(tmp_path.name + "-moved"))
    served.poll()
    assert served.servable().version == 1
    np.testing.assert_array_equal(
        served.servable().signatures["log_prob"](**images)["log_prob"].numpy(), before)


def test_the_poller_survives_a_failed_poll(tmp_path, monkeypatch):
    model = models.build("raster", 2, channels=1, bits=1, preset="tiny")
    manager = ModelManager(model_server_config_pb2.ModelServerConfig(
        model_config_list=model_server_config_pb2.ModelConfigList(config=[
            model_server_config_pb2.ModelConfig(name="m", base_path=str(tmp_path))])))
    polls, real_poll = [], Model.poll

    def poll(self):
        polls.append(1)
        if len(polls) == 1:
            raise OSError("the file system hiccuped")
        real_poll(self)

    monkeypatch.setattr(Model, "poll", poll)
    export_model(model, str(tmp_path / "1"), warmup_batch_sizes=())
    manager.start_polling(0.05)
    try:
        deadline = time.monotonic() + 60
        while not manager.model("m").states() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        manager.stop_polling()
    assert len(polls) >= 2 and manager.model("m").servable().version == 1
