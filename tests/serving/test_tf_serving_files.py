"""export/: the TF Serving deployment files parse as TF Serving parses them and agree."""

import os
import pathlib
import posixpath
import re
import subprocess

import pytest
import yaml
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from spn_tf import warmup
from tf_serving_protos import BatchingParameters, MonitoringConfig

EXPORT = pathlib.Path(__file__).resolve().parents[2] / "export"


def _parse(name, message):
    return text_format.Parse((EXPORT / name).read_text(), message)


@pytest.fixture(scope="module")
def model_config():
    config = _parse("models.config", model_server_config_pb2.ModelServerConfig())
    (model,) = config.model_config_list.config
    return model


@pytest.fixture(scope="module")
def k8s():
    documents = list(yaml.safe_load_all((EXPORT / "kubernetes.yaml").read_text()))
    return {doc["kind"]: doc for doc in documents}


def _container(k8s):
    (container,) = k8s["Deployment"]["spec"]["template"]["spec"]["containers"]
    return container


def test_models_config_is_a_model_server_config(model_config):
    assert model_config.name == "quickstart"
    assert model_config.base_path == "/models/quickstart"
    assert model_config.model_platform == "tensorflow"
    assert model_config.model_version_policy.WhichOneof("policy_choice") == "latest"
    assert model_config.model_version_policy.latest.num_versions == 1


def test_batching_and_monitoring_configs_parse():
    batching = _parse("batching_parameters.txt", BatchingParameters())
    assert batching.max_batch_size.value >= 32  # the largest batch the benchmark sends
    # Every batch shape the server runs is warmed by the exports' warm-up requests.
    assert tuple(batching.allowed_batch_sizes) == warmup.BATCH_SIZES
    assert batching.allowed_batch_sizes[-1] == batching.max_batch_size.value
    assert batching.num_batch_threads.value >= 1
    assert batching.max_enqueued_batches.value >= 1
    monitoring = _parse("monitoring.config", MonitoringConfig())
    assert monitoring.prometheus_config.enable
    assert monitoring.prometheus_config.path.startswith("/")


def test_config_parsers_reject_a_misspelt_field():
    with pytest.raises(text_format.ParseError, match="max_batch_sise"):
        text_format.Parse("max_batch_sise { value: 8 }", BatchingParameters())


def test_kubernetes_manifest_agrees_with_the_configs(model_config, k8s):
    container = _container(k8s)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"grpc": 8500, "http": 8501}
    probe = container["readinessProbe"]["httpGet"]
    assert probe == {"path": f"/v1/models/{model_config.name}", "port": ports["http"]}
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in k8s["Deployment"]["spec"]["template"]["spec"]["volumes"]}
    assert mounts["exports"]["readOnly"] and volumes["exports"]["persistentVolumeClaim"][
        "readOnly"]
    assert mounts["exports"]["mountPath"] == posixpath.dirname(model_config.base_path)
    args = dict(a.lstrip("-").split("=", 1) for a in container["args"])
    for flag, name in [("model_config_file", "models.config"),
                       ("batching_parameters_file", "batching_parameters.txt"),
                       ("monitoring_config_file", "monitoring.config")]:
        assert args[flag] == posixpath.join(mounts["config"]["mountPath"], name)
        assert (EXPORT / name).exists()
    assert args["enable_batching"] == "true"
    assert k8s["Deployment"]["spec"]["replicas"] >= 2
    assert {"cpu", "memory"} <= set(container["resources"]["limits"])
    service = k8s["Service"]
    assert service["spec"]["selector"] == k8s["Deployment"]["spec"]["selector"]["matchLabels"]
    assert {p["port"]: p["targetPort"] for p in service["spec"]["ports"]} == {
        8500: "grpc", 8501: "http"}


def test_launch_script_runs_the_container_with_the_same_flags(k8s):
    script = (EXPORT / "run_tf_serving.sh").read_text()
    subprocess.run(["bash", "-n", str(EXPORT / "run_tf_serving.sh")], check=True)
    assert os.access(EXPORT / "run_tf_serving.sh", os.X_OK)
    assert "-p 8500:8500" in script and "-p 8501:8501" in script
    assert "target=/models,readonly" in script and "target=/config,readonly" in script
    script_args = re.findall(r"^  (--\w+=\S+)$", script, re.M)
    assert script_args == _container(k8s)["args"]
    assert re.search(r"^# args\+=\(--xla_cpu_compilation_enabled=true\)$", script, re.M)
