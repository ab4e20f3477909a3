"""Version folders and version policies, as TF Serving's file system source reads them."""

import pytest
from tensorflow_serving.config import file_system_storage_path_source_pb2, model_server_config_pb2

from spn_tf.serving.servables import Model, RequestError, version_folders, wanted_versions

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
