"""gRPC through the stand-in server equals the in-process models; bad requests; load; the CLI.

One server for the module (`--model_config_file` with three tiny exported models); every
expected value comes from the in-process Keras model the export was made from.
"""

import subprocess
import sys

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from conftest import (export_config, free_port, run_in_threads, start_server, stop_server,
                      wait_until_available)
from spn_tf import models
from spn_tf.serving.client import Client, ServingError, run

# name → build arguments: conditional and not, every conditioning input (text included).
MODELS = {
    "raster": dict(name="raster", image_size=4, channels=1, bits=2, cond={"label": 3}),
    "spn": dict(name="spn", image_size=4, channels=1, bits=2, cond={"text": 16}),
    "multiscale": dict(name="multiscale", image_size=8, channels=1, bits=1,
                       cond={"embedding": 3}),
    "video": dict(name="multiscale_video", image_size=4, channels=1, bits=1,
                  cond={"action": 2}, num_frames=3, base_size=2),
}
IMAGE_MODELS = ("multiscale", "raster", "spn")


def _cond(model, rows, rng):
    spec = model.cond_spec
    cond = {}
    if "label" in spec:
        cond["label"] = rng.integers(0, spec["label"], rows).astype(np.int32)
    if "embedding" in spec:
        cond["embedding"] = rng.normal(size=(rows, spec["embedding"])).astype(np.float32)
    if "text" in spec:  # sent as DT_STRING; one caption with a multi-byte character
        cond["text"] = rng.choice(np.array(["a red square", "ciel bleu", "café"], object), rows)
    return cond or None


def _images(model, rows, rng):
    shape = (rows, model.image_size, model.image_size, model.channels)
    return rng.integers(0, 2 ** model.bits, shape).astype(np.int32)


def _rows(cond, i):
    return None if cond is None else {k: v[i:i + 1] for k, v in cond.items()}


def expected_samples(model, num, seed, temperature, cond):
    """In process, row by row: row i = `model.sample(1, (seed0, seed1 + i), temperature)`."""
    return np.concatenate([model.sample(1, [seed[0], seed[1] + i], temperature,
                                        _rows(cond, i)).numpy() for i in range(num)])


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """`(models, port)`: the tiny models, exported and served by one stand-in server."""
    root = tmp_path_factory.mktemp("serving")
    built = {key: models.build(preset="tiny", **args) for key, args in MODELS.items()}
    process, port = start_server([f"--model_config_file={export_config(root, built)}",
                                  "--file_system_poll_wait_seconds=0"], root / "server.log")
    try:
        wait_until_available(port, built, process)
        yield built, port
    finally:
        assert stop_server(process) == 0


@pytest.fixture(scope="module")
def raster(served):
    """`(model, client)` for the class-conditional raster model."""
    built, port = served
    with Client(f"127.0.0.1:{port}", "raster", timeout=60) as client:
        yield built["raster"], client


@pytest.mark.parametrize("key", IMAGE_MODELS)
def test_log_prob_and_sample_equal_the_in_process_model(served, key):
    built, port = served
    model, rng = built[key], np.random.default_rng(0)
    images, cond = _images(model, 3, rng), _cond(model, 3, rng)
    with Client(f"127.0.0.1:{port}", key, timeout=60) as client:
        got = client.log_prob(images, cond)
        want = model.log_prob(images, cond).numpy()
        np.testing.assert_allclose(got["log_prob"], want, rtol=1e-5)
        np.testing.assert_allclose(got["bits_per_dim"], model.bits_per_dim(images, cond),
                                   rtol=1e-5)
        samples = client.sample(3, seed=[4, 7], temperature=[1.0, 0.5, 0.0], cond=cond)
    assert samples.dtype == np.int32
    want = np.concatenate([model.sample(1, [4, 7 + i], t, _rows(cond, i)).numpy()
                           for i, t in enumerate([1.0, 0.5, 0.0])])
    np.testing.assert_array_equal(samples, want)


def test_multiscale_super_resolves_low_res_like_in_process(served):
    built, port = served
    model, rng = built["multiscale"], np.random.default_rng(1)
    low_res = rng.integers(0, 2, (2, 4, 4, 1)).astype(np.int32)
    cond = _cond(model, 2, rng)
    with Client(f"127.0.0.1:{port}", "multiscale", timeout=60) as client:
        got = client.predict({"low_res": low_res, "seed": np.array([[1, 2], [1, 3]], np.int32),
                              "temperature": np.ones(2, np.float32), **cond}, "super_resolve")
    want = expected_samples(model, 2, [1, 2], 1.0, {**cond, "low_res": low_res})
    np.testing.assert_array_equal(got["images"], want)


def test_video_clips_and_actions_equal_the_in_process_model(served):
    built, port = served
    model, rng = built["video"], np.random.default_rng(2)
    clips = rng.integers(0, 2, (2, 3, 4, 4, 1)).astype(np.int32)
    actions = rng.normal(size=(2, 2, 2)).astype(np.float32)
    seeds = np.array([[5, 0], [5, 1]], np.int32)
    with Client(f"127.0.0.1:{port}", "video", timeout=60) as client:
        got = client.predict({"clips": clips, "action": actions}, "log_prob")
        sampled = client.predict({"first_frames": clips[:, 0], "action": actions, "seed": seeds,
                                  "temperature": np.ones(2, np.float32)}, "sample")["clips"]
    np.testing.assert_allclose(got["log_prob"], model.log_prob(clips, {"action": actions}),
                               rtol=1e-5)
    want = np.concatenate([model.sample(1, seeds[i], 1.0, {"action": actions[i:i + 1]},
                                        {"frames": clips[i:i + 1, 0]}).numpy() for i in range(2)])
    np.testing.assert_array_equal(sampled, want)


def test_video_export_through_the_client_cli(served, tmp_path):
    built, port = served
    model, rng = built["video"], np.random.default_rng(4)
    clips = rng.integers(0, 2, (2, 3, 4, 4, 1)).astype(np.int32)
    actions = rng.normal(size=(2, 2, 2)).astype(np.float32)
    np.save(tmp_path / "actions.npy", actions)
    bits = model.bits
    firsts, strips = [], []
    for i, clip in enumerate(clips):  # 8-bit PNGs: first frames, and filmstrips of 3 frames
        firsts.append(str(tmp_path / f"first{i}.png"))
        tf.io.write_file(firsts[-1], tf.io.encode_png((clip[0] << (8 - bits)).astype(np.uint8)))
        strips.append(str(tmp_path / f"clip{i}.png"))
        strip = np.concatenate(list(clip), axis=1) << (8 - bits)
        tf.io.write_file(strips[-1], tf.io.encode_png(strip.astype(np.uint8)))
    with Client(f"127.0.0.1:{port}", "video", timeout=60) as client:
        assert client.describe() == {"bits": bits, "image_size": 4, "channels": 1,
                                     "num_frames": 3}
        lines = run(client, "log_prob", 0, 0, 1.0, None, None, strips,
                    actions_path=str(tmp_path / "actions.npy"))
        out = tmp_path / "clips.png"
        assert run(client, "sample", 0, 5, 1.0, None, str(out), firsts,
                   actions_path=str(tmp_path / "actions.npy")) == [
            f"wrote 2 clips of 3 frames to {out}"]
        drawn = client.sample_video(clips[:, 0], actions, seed=5)
        with pytest.raises(ValueError, match="needs --actions"):
            run(client, "sample", 0, 5, 1.0, None, str(out), firsts)
    want = model.bits_per_dim(clips, {"action": actions}).numpy()
    assert lines == [f"{p}: {v:.4f} bits/dim" for p, v in zip(strips, want)]
    np.testing.assert_array_equal(drawn[:, 0], clips[:, 0])
    assert out.read_bytes()[:4] == b"\x89PNG"


def test_metadata_and_status(raster):
    model, client = raster
    signatures = client.metadata()
    assert {"serving_default", "log_prob", "sample"} <= set(signatures)
    assert set(signatures["log_prob"].inputs) == {"images", "label"}
    assert set(signatures["log_prob"].outputs) == {"log_prob", "bits_per_dim"}
    assert client.image_shape() == (model.image_size, model.image_size, model.channels)
    assert client.status() == {1: ("AVAILABLE", "")}


def _request(signature, **inputs):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = inputs.pop("model", "raster")
    if "version" in inputs:
        request.model_spec.version.value = inputs.pop("version")
    request.model_spec.signature_name = signature
    for name, value in inputs.items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
    return request


_TOO_LARGE, _NEGATIVE = np.full([2, 4, 4, 1], 4, np.int32), np.full([2, 4, 4, 1], -1, np.int32)
_GOOD = dict(images=np.ones([2, 4, 4, 1], np.int32), label=np.array([0, 2], np.int32))
_SEED = dict(seed=np.array([[0, 1]], np.int32), temperature=np.ones([1], np.float32),
             label=np.zeros([1], np.int32))
BAD_REQUESTS = {
    "rank": (_request("log_prob", **{**_GOOD, "images": np.ones([4, 4, 1], np.int32)}),
             "INVALID_ARGUMENT", "'images'"),
    "shape": (_request("log_prob", **{**_GOOD, "images": np.ones([2, 4, 3, 1], np.int32)}),
              "INVALID_ARGUMENT", "'images' has shape [2, 4, 3, 1]"),
    "dtype": (_request("log_prob", **{**_GOOD, "images": np.ones([2, 4, 4, 1], np.float32)}),
              "INVALID_ARGUMENT", "('images') to be int32 but float32"),
    "pixel_too_large": (_request("log_prob", **{**_GOOD, "images": _TOO_LARGE}),
                        "INVALID_ARGUMENT",
                        "images values must be in [0, 4) (bits=2); got 4 at row 0"),
    "pixel_negative": (_request("log_prob", **{**_GOOD, "images": _NEGATIVE}),
                       "INVALID_ARGUMENT",
                       "images values must be in [0, 4) (bits=2); got -1 at row 0"),
    "label_out_of_range": (_request("log_prob", **{**_GOOD, "label": np.int32([0, 9])}),
                           "INVALID_ARGUMENT",
                           "label values must be class ids in [0, 3); got 9 at row 1"),
    "empty_batch": (_request("log_prob", images=np.zeros([0, 4, 4, 1], np.int32),
                             label=np.zeros([0], np.int32)),
                    "INVALID_ARGUMENT", "empty batch: images has no rows; send at least one"),
    "batch_mismatch": (_request("log_prob", **{**_GOOD, "label": np.zeros([3], np.int32)}),
                       "INVALID_ARGUMENT", "batch mismatch: label and images"),
    "seed_shape": (_request("sample", **{**_SEED, "seed": np.zeros([1, 3], np.int32)}),
                   "INVALID_ARGUMENT", "'seed' has shape [1, 3]"),
    "missing_input": (_request("log_prob", images=_GOOD["images"]),
                      "INVALID_ARGUMENT", "Missing but required: {label}"),
    "extra_input": (_request("log_prob", **_GOOD, embedding=np.zeros([2, 3], np.float32)),
                    "INVALID_ARGUMENT", "Sent extra: {embedding}"),
    "unknown_signature": (_request("nope", **_GOOD), "FAILED_PRECONDITION",
                          'Serving signature key "nope" not found.'),
    "unknown_model": (_request("log_prob", model="nope", **_GOOD), "NOT_FOUND",
                      "Servable not found for request: Latest(nope)"),
    "unknown_version": (_request("log_prob", version=9, **_GOOD), "NOT_FOUND",
                        "Servable not found for request: Specific(raster, 9)"),
}


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_bad_request_is_refused_and_the_server_keeps_answering(raster, case):
    model, client = raster
    request, code, message = BAD_REQUESTS[case]
    with grpc.insecure_channel(client.server) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        with pytest.raises(grpc.RpcError) as error:
            stub.Predict(request, timeout=60)
    assert error.value.code() == getattr(grpc.StatusCode, code)
    assert message in error.value.details()
    assert "Graph execution error" not in error.value.details()
    assert "[[" not in error.value.details() and "Op:" not in error.value.details()
    got = client.log_prob(_GOOD["images"], {"label": _GOOD["label"]})["log_prob"]
    np.testing.assert_allclose(got, model.log_prob(_GOOD["images"], {"label": _GOOD["label"]}),
                               rtol=1e-5)


def test_eight_clients_mixed_requests_each_get_their_own_answer(raster):
    model, client = raster
    rng = np.random.default_rng(2)
    requests = []  # (kind, arguments, expected)
    for k in range(6):
        images, cond = _images(model, 2, rng), _cond(model, 2, rng)
        requests.append(("log_prob", (images, cond), model.log_prob(images, cond).numpy()))
        cond, seed = _cond(model, 2, rng), [k, 100 * k]
        requests.append(("sample", (2, seed, 1.0, cond),
                         expected_samples(model, 2, seed, 1.0, cond)))
    failures, done = [], []

    def calls(worker):
        with Client(client.server, "raster", timeout=60) as own:
            for j in range(100):
                kind, args, want = requests[(worker * 7 + j) % len(requests)]
                try:
                    if kind == "log_prob":
                        np.testing.assert_allclose(own.log_prob(*args)["log_prob"], want,
                                                   rtol=1e-5)
                    else:
                        np.testing.assert_array_equal(own.sample(*args), want)
                except (AssertionError, ServingError) as error:
                    failures.append(f"worker {worker} call {j} ({kind}): {error}")
                done.append(1)

    run_in_threads(calls, 8, 240)
    assert not failures, failures[:3]
    assert len(done) == 800


def test_client_cli_writes_samples_png_and_prints_bits_per_dim(raster, tmp_path):
    model, client = raster
    base = [sys.executable, "-m", "spn_tf.serving.client", f"--server={client.server}",
            "--model_name=raster", "--labels=1"]  # no --bits: the client asks `describe`
    out = tmp_path / "samples.png"
    subprocess.run(base + ["--signature=sample", "--num_samples=4", "--seed=0", f"--out={out}"],
                   check=True, timeout=120)
    grid = tf.io.decode_png(tf.io.read_file(str(out))).numpy()
    assert grid.shape[2] == 1 and grid.shape[0] > 2 * 4
    rng = np.random.default_rng(3)
    images = _images(model, 2, rng)
    paths = []
    for i, image in enumerate(images):  # 2-bit values as 8-bit PNGs: x * 64
        paths.append(str(tmp_path / f"{i}.png"))
        tf.io.write_file(paths[-1], tf.io.encode_png((image * 64).astype(np.uint8)))
    result = subprocess.run(base + ["--signature=log_prob", f"--images={','.join(paths)}"],
                            check=True, timeout=120, capture_output=True, text=True)
    want = model.bits_per_dim(images, {"label": np.ones(2, np.int32)}).numpy()
    assert result.stdout.splitlines() == [f"{p}: {v:.4f} bits/dim" for p, v in zip(paths, want)]


def test_client_cli_errors_name_the_problem(raster, tmp_path):
    model, client = raster
    (tmp_path / "bad.png").write_bytes(b"not a png")
    tf.io.write_file(str(tmp_path / "big.png"), tf.io.encode_png(np.zeros([8, 8, 1], np.uint8)))
    log_prob = dict(num=1, seed=0, temperature=1.0, labels=[0], out=None, bits=2)
    with pytest.raises(ValueError, match="bad.png' could not be read as a PNG"):
        run(client, "log_prob", image_paths=[str(tmp_path / "bad.png")], **log_prob)
    with pytest.raises(ValueError, match="big.png' is 8x8x1 .*takes 4x4x1"):
        run(client, "log_prob", image_paths=[str(tmp_path / "big.png")], **log_prob)
    with Client(client.server, "nope") as unknown:
        with pytest.raises(ServingError, match="NOT_FOUND.*Latest\\(nope\\)"):
            run(unknown, "sample", 1, 0, 1.0, None, str(tmp_path / "x.png"), None, 2)
    result = subprocess.run(
        [sys.executable, "-m", "spn_tf.serving.client", f"--server=127.0.0.1:{free_port()}",
         "--model_name=raster", "--bits=2", "--timeout=2", f"--out={tmp_path / 'x.png'}"],
        timeout=120, capture_output=True, text=True)
    assert result.returncode == 1
    assert "spn_tf.serving.client: error: server 127.0.0.1:" in result.stderr
    assert "unavailable after" in result.stderr


def test_captions_through_the_client_and_bad_captions_are_invalid_argument(served, tmp_path):
    built, port = served
    model = built["spn"]
    captions = ["a red square", "café"]
    with Client(f"127.0.0.1:{port}", "spn", timeout=60) as client:
        run(client, "sample", 3, 0, 1.0, None, str(tmp_path / "s.png"), None, 2,
            captions=captions)
        got = client.sample(3, seed=0, cond={"text": captions + captions[:1]})
        with pytest.raises(ServingError, match="captions must be at most 16 UTF-8 bytes") as error:
            client.log_prob(np.zeros([1, 4, 4, 1], np.int32), {"text": ["x" * 17]})
    assert error.value.code == grpc.StatusCode.INVALID_ARGUMENT
    np.testing.assert_array_equal(got, expected_samples(
        model, 3, [0, 0], 1.0, {"text": np.array(captions + captions[:1], object)}))
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"
