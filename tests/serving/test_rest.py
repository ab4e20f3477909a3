"""TF Serving's REST API on the stand-in (`--rest_api_port`) answers what its gRPC API answers.

One server for the module (gRPC and REST): a class-conditional raster model, a captioned SPN,
and `quickstart` (the quickstart's signatures: 16x16x3 at 5 bits, unconditional; tiny preset)
whose version folder appears while the server runs, for the readiness probe. Every REST value
is compared with gRPC's on the same server; errors with TF Serving's texts and HTTP statuses.
"""

import base64
import json
import pathlib
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest
import tensorflow as tf

from conftest import (export_config, free_port, start_server, stop_server,
                      wait_until_available)
from spn_tf import models
from spn_tf.serving import client as client_module
from spn_tf.serving import rest
from spn_tf.serving.client import Client, ServingError, run

ROOT = pathlib.Path(__file__).resolve().parents[2]
MODELS = {
    "raster": dict(name="raster", image_size=4, channels=1, bits=2, cond={"label": 3}),
    "spn": dict(name="spn", image_size=4, channels=1, bits=2, cond={"text": 16}),
    "quickstart": dict(name="raster", image_size=16, channels=3, bits=5),
}


class Served:
    """The module's server: ports, models, and `publish()` (quickstart's version appears)."""

    def __init__(self, root, built, process, port, rest_port):
        self.root, self.built, self.process = root, built, process
        self.port, self.rest_port = port, rest_port

    def url(self, path):
        return f"http://127.0.0.1:{self.rest_port}{path}"

    def published(self):
        return (self.root / "quickstart" / "1").exists()

    def publish(self):
        """Moves quickstart's export into its base path and waits until it is AVAILABLE."""
        if not self.published():
            (self.root / "staged").rename(self.root / "quickstart" / "1")
        wait_until_available(self.port, ["quickstart"], self.process)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("rest")
    built = {key: models.build(preset="tiny", **args) for key, args in MODELS.items()}
    config_file = export_config(root, built)
    (root / "quickstart" / "1").rename(root / "staged")  # published by the probe test
    rest_port = free_port()
    process, port = start_server([f"--model_config_file={config_file}",
                                  f"--rest_api_port={rest_port}",
                                  "--file_system_poll_wait_seconds=1"], root / "server.log")
    try:
        wait_until_available(port, ["raster", "spn"], process)
        yield Served(root, built, process, port, rest_port)
    finally:
        assert stop_server(process) == 0


def http(served, method, path, body=None):
    """`(HTTP status, body text)` of one request to the REST API (`body`: bytes or JSON)."""
    if body is not None and not isinstance(body, bytes):
        body = json.dumps(body).encode()
    request = urllib.request.Request(served.url(path), data=body, method=method)
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def predict(served, model, body):
    status, text = http(served, "POST", f"/v1/models/{model}:predict", body)
    assert status == 200, text
    return json.loads(text)


def test_readiness_probe_of_kubernetes_yaml_is_404_then_200_once_available(served):
    yaml = (ROOT / "export" / "kubernetes.yaml").read_text()
    probe = re.search(r"readinessProbe:\s*httpGet:\s*path:\s*(\S+)\s*port:\s*(\d+)", yaml)
    assert probe and probe[2] == "8501", "the probe should ask the REST port"
    if not served.published():
        status, text = http(served, "GET", probe[1])
        assert status == 404
        assert json.loads(text) == {"error": "Could not find any versions of model quickstart"}
    served.publish()
    status, text = http(served, "GET", probe[1])
    assert status == 200
    assert json.loads(text) == {"model_version_status": [
        {"version": "1", "state": "AVAILABLE",
         "status": {"error_code": "OK", "error_message": ""}}]}


def test_row_and_columnar_predict_equal_grpc(served):
    model, rng = served.built["raster"], np.random.default_rng(0)
    images = rng.integers(0, 4, (3, 4, 4, 1)).astype(np.int32)
    labels = np.array([0, 2, 1], np.int32)
    seeds = np.array([[4, 7], [4, 8], [4, 9]], np.int32)
    temperature = np.array([1.0, 0.5, 0.0], np.float32)
    with Client(f"127.0.0.1:{served.port}", "raster", timeout=60) as grpc_client:
        log_prob = grpc_client.log_prob(images, {"label": labels})
        samples = grpc_client.sample(3, seed=[4, 7], temperature=temperature,
                                     cond={"label": labels})
    rows = predict(served, "raster", {"signature_name": "log_prob", "instances": [
        {"images": image.tolist(), "label": int(label)} for image, label in zip(images, labels)]})
    assert [sorted(row) for row in rows["predictions"]] == [["bits_per_dim", "log_prob"]] * 3
    for name in ("log_prob", "bits_per_dim"):  # floats written to round-trip exactly
        np.testing.assert_array_equal(
            np.float32([row[name] for row in rows["predictions"]]), log_prob[name])
    columns = predict(served, "raster", {"signature_name": "log_prob", "inputs": {
        "images": images.tolist(), "label": labels.tolist()}})
    np.testing.assert_array_equal(np.float32(columns["outputs"]["log_prob"]),
                                  log_prob["log_prob"])
    sampled = predict(served, "raster", {"signature_name": "sample", "inputs": {
        "seed": seeds.tolist(), "temperature": temperature.tolist(), "label": labels.tolist()}})
    np.testing.assert_array_equal(np.int32(sampled["outputs"]), samples)  # one output: bare
    sampled = predict(served, "raster", {"signature_name": "sample", "instances": [
        {"seed": s.tolist(), "temperature": float(t), "label": int(label)}
        for s, t, label in zip(seeds, temperature, labels)]})
    np.testing.assert_array_equal(np.int32(sampled["predictions"]), samples)
    np.testing.assert_array_equal(samples, np.concatenate([
        model.sample(1, [4, 7 + i], t, {"label": labels[i:i + 1]}).numpy()
        for i, t in enumerate(temperature)]))


def test_captions_as_strings_and_b64_equal_grpc(served):
    captions = ["a red square", "café"]
    images = np.random.default_rng(1).integers(0, 4, (2, 4, 4, 1)).astype(np.int32)
    with Client(f"127.0.0.1:{served.port}", "spn", timeout=60) as grpc_client, \
            Client(f"127.0.0.1:{served.rest_port}", "spn", timeout=60, rest=True) as rest_client:
        want = grpc_client.log_prob(images, {"text": captions})["log_prob"]
        got = rest_client.log_prob(images, {"text": captions})["log_prob"]  # b64 strings
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(rest_client.sample(2, 3, cond={"text": captions}),
                                      grpc_client.sample(2, 3, cond={"text": captions}))
    for text in (captions, [{"b64": base64.b64encode(c.encode()).decode()} for c in captions]):
        rows = predict(served, "spn", {"signature_name": "log_prob", "instances": [
            {"images": image.tolist(), "text": t} for image, t in zip(images, text)]})
        np.testing.assert_array_equal(
            np.float32([row["log_prob"] for row in rows["predictions"]]), want)


def test_status_and_metadata_equal_grpc(served):
    with Client(f"127.0.0.1:{served.port}", "raster") as grpc_client, \
            Client(f"127.0.0.1:{served.rest_port}", "raster", rest=True) as rest_client:
        assert rest_client.status() == grpc_client.status() == {1: ("AVAILABLE", "")}
        assert rest_client.metadata() == grpc_client.metadata()
    for path in ("/v1/models/raster/metadata", "/v1/models/raster/versions/1/metadata"):
        status, text = http(served, "GET", path)
        assert status == 200
        answer = json.loads(text)
        assert answer["model_spec"] == {"name": "raster", "version": "1", "signature_name": ""}
        inputs = answer["metadata"]["signature_def"]["signature_def"]["log_prob"]["inputs"]
        assert inputs["images"]["dtype"] == "DT_INT32"
        assert [d["size"] for d in inputs["images"]["tensor_shape"]["dim"]] == [
            "-1", "4", "4", "1"]
    assert http(served, "GET", "/v1/models/raster/versions/1")[0] == 200


_IMAGE = [[[1]] * 4] * 4
_ROW = {"images": _IMAGE, "label": 1}
BAD = {  # method, path, body → HTTP status, TF Serving's error text (a part of it)
    "unknown_model": ("POST", "/v1/models/nope:predict", {"instances": [_ROW]}, 404,
                      "Servable not found for request: Latest(nope)"),
    "unknown_model_status": ("GET", "/v1/models/nope", None, 404,
                             "Could not find any versions of model nope"),
    "unknown_version": ("GET", "/v1/models/raster/versions/9/metadata", None, 404,
                        "Servable not found for request: Specific(raster, 9)"),
    "unknown_label": ("POST", "/v1/models/raster/labels/beta:predict", {"instances": [_ROW]},
                      400, "Unrecognized servable version label: beta"),
    "unknown_signature": ("POST", "/v1/models/raster:predict",
                          {"signature_name": "nope", "instances": [_ROW]}, 400,
                          'Serving signature name: "nope" not found in signature def'),
    "ragged_rows": ("POST", "/v1/models/raster:predict",
                    {"instances": [{"images": [[[1]] * 4] * 3 + [[[1]] * 3], "label": 1}]}, 400,
                    "Failed to process element: 0 key: images of 'instances' list. Error: "
                    "INVALID_ARGUMENT: Encountered list at unexpected size: 3 at level: 1 "
                    "expected size: 4"),
    "rows_of_two_shapes": ("POST", "/v1/models/raster:predict",
                           {"instances": [_ROW, {"images": [[[1]] * 4] * 2, "label": 1}]}, 400,
                           "Expecting tensor size: 16 but got: 8"),
    "bad_shape": ("POST", "/v1/models/raster:predict",
                  {"inputs": {"images": [[[[1]] * 4] * 3], "label": [1]}}, 400,
                  "input 'images' has shape [1, 3, 4, 1], but signature 'serving_default'"),
    "float_pixel": ("POST", "/v1/models/raster:predict",
                    {"inputs": {"images": [[[[1.5]] * 4] * 4], "label": [1]}}, 400,
                    "JSON Value: 1.5 Type: Number is not of expected type: int32"),
    "string_pixel": ("POST", "/v1/models/raster:predict",
                     {"instances": [{"images": [[["a"]] * 4] * 4, "label": 1}]}, 400,
                     'JSON Value: "a" Type: String is not of expected type: int32'),
    "pixel_out_of_range": ("POST", "/v1/models/raster:predict",
                           {"instances": [{"images": [[[7]] * 4] * 4, "label": 1}]}, 400,
                           "images values must be in [0, 4) (bits=2); got 7 at row 0"),
    "missing_input_row": ("POST", "/v1/models/raster:predict",
                          {"instances": [{"images": _IMAGE}]}, 400,
                          "keys must be equal to: images,label"),
    "missing_input_columns": ("POST", "/v1/models/raster:predict",
                              {"inputs": {"images": [_IMAGE]}}, 400,
                              "Missing named input: label in 'inputs' object."),
    "extra_input": ("POST", "/v1/models/raster:predict",
                    {"instances": [{**_ROW, "embedding": [1.0]}]}, 400,
                    "JSON object: does not have named input: embedding"),
    "plain_rows_for_two_inputs": ("POST", "/v1/models/raster:predict",
                                  {"instances": [_IMAGE]}, 400,
                                  "instances is a plain list, but expecting list of objects"),
    "no_rows": ("POST", "/v1/models/raster:predict", {"instances": []}, 400,
                "No values in 'instances' array"),
    "no_inputs": ("POST", "/v1/models/raster:predict", {"signature_name": "log_prob"}, 400,
                  "Missing 'inputs' or 'instances' key"),
    "malformed_json": ("POST", "/v1/models/raster:predict", b'{"instances": [1,', 400,
                       "JSON Parse error: Invalid value. at offset: 17"),
    "empty_body": ("POST", "/v1/models/raster:predict", b"", 400,
                   "JSON Parse error: The document is empty"),
    "not_an_object": ("POST", "/v1/models/raster:predict", b"[1, 2]", 400,
                      "JSON Value: [1, 2] Is not object"),
    "unknown_api_path": ("GET", "/v1/models/raster/nope", None, 400,
                         "Malformed request: GET /v1/models/raster/nope"),
    "unknown_method": ("DELETE", "/v1/models/raster", None, 400,
                       "Malformed request: DELETE /v1/models/raster"),
    "unknown_path": ("GET", "/healthz", None, 404, "Not Found: GET /healthz"),
    "classify": ("POST", "/v1/models/raster:classify", {"examples": []}, 501,
                 "Method not implemented!"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_request_answers_tf_servings_status_and_json_error(served, case):
    method, path, body, want_status, message = BAD[case]
    status, text = http(served, method, path, body)
    assert status == want_status, text
    assert message in json.loads(text)["error"]
    assert "Graph execution error" not in text


def test_client_errors_and_http_status_mapping_match_grpc(served):
    """The REST client raises what the gRPC client raises; its HTTP → gRPC table inverts
    TF Serving's."""
    for status, code in client_module._GRPC_CODES.items():
        assert rest.HTTP_STATUS[code] == status
    assert set(rest.HTTP_STATUS.values()) - {200} == set(client_module._GRPC_CODES)
    bad = np.full([1, 4, 4, 1], 5, np.int32)
    errors = []
    for port, is_rest in ((served.port, False), (served.rest_port, True)):
        for model, call in (("raster", lambda c: c.log_prob(bad, {"label": [0]})),
                            ("nope", lambda c: c.status())):
            with Client(f"127.0.0.1:{port}", model, rest=is_rest) as client:
                with pytest.raises(ServingError) as error:
                    call(client)
            errors.append((error.value.code, error.value.details))
    assert errors[:2] == errors[2:]
    assert errors[0][0] == grpc.StatusCode.INVALID_ARGUMENT
    with Client(f"127.0.0.1:{free_port()}", "raster", timeout=1.0, rest=True) as nobody:
        started = time.monotonic()
        with pytest.raises(ServingError, match="unavailable after [2-9] attempt") as error:
            nobody.status()
    assert error.value.code == grpc.StatusCode.UNAVAILABLE
    assert time.monotonic() - started < 5


def test_client_cli_with_rest_prints_and_writes_what_grpc_does(served, tmp_path):
    images = np.random.default_rng(3).integers(0, 4, (2, 4, 4, 1))
    paths = []
    for i, image in enumerate(images):  # 2-bit values as 8-bit PNGs: x * 64
        paths.append(str(tmp_path / f"{i}.png"))
        tf.io.write_file(paths[-1], tf.io.encode_png((image * 64).astype(np.uint8)))
    outputs = {}
    for port, is_rest in ((served.port, False), (served.rest_port, True)):
        with Client(f"127.0.0.1:{port}", "raster", timeout=60, rest=is_rest) as client:
            out = tmp_path / f"samples_{is_rest}.png"
            lines = run(client, "sample", 3, 0, 1.0, [1], str(out), None)
            lines += run(client, "log_prob", 0, 0, 1.0, [2], None, paths)
        outputs[is_rest] = (lines[1:], out.read_bytes())
    assert outputs[True] == outputs[False]
    commands = [[sys.executable, "-m", "spn_tf.serving.client", f"--server=127.0.0.1:{port}",
                 "--model_name=raster", "--labels=1", "--signature=log_prob",
                 f"--images={','.join(paths)}", *flag]
                for port, flag in ((served.port, []), (served.rest_port, ["--rest"]))]
    processes = [subprocess.Popen(c, stdout=subprocess.PIPE, text=True) for c in commands]
    printed = [p.communicate(timeout=120)[0] for p in processes]
    assert [p.returncode for p in processes] == [0, 0]
    assert printed[0] == printed[1] and printed[0].count("bits/dim") == 2


def test_curl_lines_of_docs_serving_md_work(served):
    if shutil.which("curl") is None:
        pytest.skip("no curl on this machine")
    served.publish()
    doc = (ROOT / "docs" / "serving.md").read_text()
    section = doc[doc.index("### REST API"):]
    block = section[section.index("```bash"):section.index("```\n", section.index("```bash") + 7)]
    lines = [line for line in block.splitlines() if "curl " in line]
    assert len(lines) == 4
    answers = []
    for line in lines:
        command = re.sub(r"^python ", f"{sys.executable} ", line.replace(
            "localhost:8501", f"127.0.0.1:{served.rest_port}"))
        result = subprocess.run(["bash", "-c", command], capture_output=True, text=True,
                                timeout=120, check=True)
        answers.append(json.loads(result.stdout))
    assert answers[0]["model_version_status"][0]["state"] == "AVAILABLE"
    assert "sample" in answers[1]["metadata"]["signature_def"]["signature_def"]
    model = served.built["quickstart"]
    np.testing.assert_array_equal(np.int32(answers[2]["outputs"]), np.concatenate(
        [model.sample(1, [0, i]).numpy() for i in range(2)]))
    (log_prob,) = answers[3]["predictions"]
    np.testing.assert_allclose(log_prob["log_prob"],
                               model.log_prob(np.zeros([1, 16, 16, 3], np.int32)), rtol=1e-5)


def test_a_body_over_the_limit_is_refused_unread_naming_the_flag():
    server = rest.RestServer(manager=None, port=free_port(), max_body_bytes=1000).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/v1/models/m:predict"
        body = json.dumps({"instances": [[0] * 600]}).encode()
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(urllib.request.Request(url, body, method="POST"), timeout=10)
        assert refused.value.code == 429
        message = json.loads(refused.value.read())["error"]
        assert f"{len(body)} bytes is over this server's limit of 1000 bytes" in message
        assert "--rest_max_body_bytes=1000" in message
    finally:
        server.stop(1.0)
