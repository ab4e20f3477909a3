"""A gRPC client of TF Serving's API for spn_tf SavedModels, and its CLI.

Works against `tensorflow_model_server` and against the local stand-in
(`python -m spn_tf.serving.server`) alike: it uses only `tensorflow_serving.apis`
(`PredictionService.Predict` / `GetModelMetadata`, `ModelService.GetModelStatus`).

Every call has a deadline (`timeout` seconds, retries included) and is retried with
exponential backoff while the server answers UNAVAILABLE (not started yet, restarting, a
connection lost) — and only then: any other status is the server's answer and is raised at
once as `ServingError`.

    python -m spn_tf.serving.client --server=localhost:8500 --model_name=quickstart \
        --signature=sample --num_samples=4 --seed=0 --out=samples.png
    python -m spn_tf.serving.client --server=localhost:8500 --model_name=quickstart \
        --signature=log_prob --images=a.png,b.png
    python -m spn_tf.serving.client --server=localhost:8500 --model_name=captioned \
        --signature=sample --captions="A red retina with dark veins." --num_samples=2

Captions (`cond={"text": [...]}`, `--captions`) travel as DT_STRING, UTF-8 bytes.

`rest=True` (`--rest --server=localhost:8501`) speaks TF Serving's REST API instead (JSON over
HTTP with `urllib`; the stand-in serves it with `--rest_api_port`): the same calls, results and
`ServingError`s, the HTTP status read back as the gRPC code TF Serving maps to it (400:
INVALID_ARGUMENT, 404: NOT_FOUND, 503: UNAVAILABLE, ...); a refused or lost connection is
UNAVAILABLE and retried like gRPC's. Predict answers name outputs only when there are several,
so the client reads each signature's outputs from the model's metadata once.

Seeds: `sample(num, seed)` asks for `num` rows, row i with the stateless seed
`(seed0, seed1 + i)`, where an int `seed` means `(0, seed)`. The exported `sample` signature
makes row i equal `model.sample(1, seed=(seed0, seed1 + i))` in process, so a request's images
do not depend on how many rows it has or on server-side batching.
"""

import base64
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import grpc
import numpy as np
import tensorflow as tf
from absl import app, flags
from google.protobuf import json_format
from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2,
                                     model_service_pb2_grpc, predict_pb2,
                                     prediction_service_pb2_grpc)

from spn_tf import cli
from spn_tf.grid import read_image, write_grid
from spn_tf.orderings import reduce_bits

FLAGS = flags.FLAGS
_STATE_NAMES = get_model_status_pb2.ModelVersionStatus.State.Name
# HTTP status → gRPC code: the first code TF Serving's `ToHTTPStatusCode` maps to the status.
_GRPC_CODES = {400: grpc.StatusCode.INVALID_ARGUMENT, 401: grpc.StatusCode.UNAUTHENTICATED,
               403: grpc.StatusCode.PERMISSION_DENIED, 404: grpc.StatusCode.NOT_FOUND,
               409: grpc.StatusCode.ALREADY_EXISTS, 429: grpc.StatusCode.RESOURCE_EXHAUSTED,
               499: grpc.StatusCode.CANCELLED, 500: grpc.StatusCode.UNKNOWN,
               501: grpc.StatusCode.UNIMPLEMENTED, 503: grpc.StatusCode.UNAVAILABLE,
               504: grpc.StatusCode.DEADLINE_EXCEEDED}


class ServingError(Exception):
    """A call the server refused, or that found no server.

    Attributes:
      code: the `grpc.StatusCode` (UNAVAILABLE once the retries are spent).
      details: the server's message.
    """

    def __init__(self, code, details, message=None):
        super().__init__(message or f"{code.name}: {details}")
        self.code = code
        self.details = details


def row_seeds(num, seed):
    """int32 `(num, 2)` stateless seeds, row i = `(seed0, seed1 + i)`; an int means `(0, seed)`.

    Raises:
      ValueError: a seed that is not an int or a pair of ints.
    """
    pair = np.array([0, seed] if np.isscalar(seed) else seed)
    if pair.shape != (2,) or pair.dtype.kind not in "iu":
        raise ValueError(f"seed must be an int or a pair of ints, got {seed!r}.")
    seeds = np.repeat(pair[None].astype(np.int64), num, axis=0)
    seeds[:, 1] += np.arange(num)
    return seeds.astype(np.int32)


def _text_array(captions):
    """Captions (str or bytes) → a numpy object array of UTF-8 bytes (sent as DT_STRING)."""
    return np.array([c.encode("utf-8") if isinstance(c, str) else bytes(c) for c in captions],
                    object)


def _to_json(array):
    """A numpy array as TF Serving's JSON: nested lists, bytes as `{"b64": ...}`."""
    if array.dtype.kind in "OSU":
        return np.vectorize(lambda v: {"b64": base64.b64encode(
            v.encode("utf-8") if isinstance(v, str) else bytes(v)).decode()},
            otypes=[object])(array).tolist()
    return array.tolist()


def _from_json(value, dtype):
    """TF Serving's JSON value as a numpy array of `dtype` (a `DataType` enum)."""
    dtype = tf.dtypes.as_dtype(dtype)
    if dtype != tf.string:
        return np.array(value, dtype.as_numpy_dtype)

    def to_bytes(item):
        if isinstance(item, list):
            return [to_bytes(v) for v in item]
        return base64.b64decode(item["b64"]) if isinstance(item, dict) else item.encode()

    value = to_bytes(value)
    array = np.empty(np.shape(value), object)
    array[...] = value
    return array


def _cond_arrays(cond):
    dtypes = {"label": np.int32, "embedding": np.float32, "low_res": np.int32,
              "msb": np.int32, "action": np.float32}
    unknown = set(cond or {}) - set(dtypes) - {"text"}
    if unknown:
        raise ValueError(f"unknown conditioning {sorted(unknown)}; allowed: "
                         f"{sorted([*dtypes, 'text'])}.")
    return {k: _text_array(v) if k == "text" else np.asarray(v, dtypes[k])
            for k, v in (cond or {}).items()}


def _refusal(code, details, timeout):
    """The `ServingError` message for a refusal whose gRPC text does not say what to do (None:
    `CODE: details` says it)."""
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return (f"DEADLINE_EXCEEDED: {details}: no answer within the call's timeout of "
                f"{timeout:.3g} s (Client(timeout=...), the client CLI's --timeout); not retried: "
                f"give it a longer timeout or ask for fewer rows.")
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED and "larger than max" in details:
        return (f"RESOURCE_EXHAUSTED: {details}: the request is larger than the server takes "
                f"(the stand-in's --grpc_max_message_bytes; TF Serving's "
                f"--grpc_channel_arguments=grpc.max_receive_message_length=N): send fewer rows "
                f"per call.")
    return None


class Client:
    """Calls one model of a TF Serving (or stand-in) server.

    Args:
      server: `host:port` of the gRPC API.
      model: the model name the server serves.
      version: a version number to ask for (default: the server's newest).
      version_label: a version label (`stable`, `canary`, ...) instead of a number.
      timeout: seconds each call may take, retries included.
      max_attempts: attempts per call while the server answers UNAVAILABLE.
      initial_backoff: seconds before the first retry; doubled after each.
      rest: speak TF Serving's REST API (`server` is then `host:port` of it, e.g. 8501).

    Example:
      >>> with Client("localhost:8500", "quickstart") as client:
      ...     images = client.sample(4, seed=0)            # int32 (4, H, W, C)
      ...     client.log_prob(images)["bits_per_dim"]      # float32 (4,)
    """

    def __init__(self, server, model, version=None, version_label=None, timeout=30.0,
                 max_attempts=5, initial_backoff=0.1, rest=False):
        if version is not None and version_label:
            raise ValueError("give a version or a version_label, not both.")
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {max_attempts}.")
        self.server = server
        self.model = model
        self.version = version
        self.version_label = version_label
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.initial_backoff = initial_backoff
        self.rest = rest
        self._signatures = {}  # REST: signature defs from metadata, for output names/dtypes
        if rest:
            self._channel = None
            return
        # Answers as large as the rows asked for (gRPC's default would cut them at 4 MiB);
        # the server's --max_batch_rows bounds them.
        self._channel = grpc.insecure_channel(
            server, options=[("grpc.max_receive_message_length", -1)])
        self._predict = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self._models = model_service_pb2_grpc.ModelServiceStub(self._channel)

    def close(self):
        if self._channel is not None:
            self._channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _model_spec(self, spec, signature=None):
        spec.name = self.model
        if self.version is not None:
            spec.version.value = self.version
        if self.version_label:
            spec.version_label = self.version_label
        if signature:
            spec.signature_name = signature

    def _call(self, rpc, request):
        """`rpc(request)` under one deadline, retried with backoff on UNAVAILABLE only."""
        start = time.monotonic()
        deadline = start + self.timeout
        for attempt in range(1, self.max_attempts + 1):
            try:
                return rpc(request, timeout=max(deadline - time.monotonic(), 1e-3))
            except grpc.RpcError as error:
                code, details = error.code(), error.details()
            except ServingError as error:  # from `_http`
                code, details = error.code, error.details
            if code != grpc.StatusCode.UNAVAILABLE:
                raise ServingError(code, details, _refusal(code, details, self.timeout)) from None
            pause = self.initial_backoff * 2 ** (attempt - 1)
            if attempt == self.max_attempts or time.monotonic() + pause >= deadline:
                break
            time.sleep(pause)
        raise ServingError(
            code, details,
            f"server {self.server} unavailable after {attempt} attempt(s) over "
            f"{time.monotonic() - start:.1f} s: {details}") from None

    def _path(self, suffix=""):
        """`/v1/models/{model}[/versions/{v}|/labels/{l}]{suffix}` (REST)."""
        path = f"/v1/models/{urllib.parse.quote(self.model, safe='')}"
        if self.version is not None:
            path += f"/versions/{self.version}"
        if self.version_label:
            path += f"/labels/{urllib.parse.quote(self.version_label, safe='')}"
        return path + suffix

    def _http(self, request, timeout):
        """One REST call, `request` = `(path, JSON body or None for GET)`; the answer's JSON.

        Raises:
          ServingError: the server's `{"error": ...}` with the gRPC code of its HTTP status;
            UNAVAILABLE for a refused or lost connection, DEADLINE_EXCEEDED past `timeout`.
        """
        path, body = request
        data = None if body is None else json.dumps(body).encode()
        http = urllib.request.Request(f"http://{self.server}{path}", data=data,
                                      headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(http, timeout=timeout) as answer:
                return json.loads(answer.read())
        except urllib.error.HTTPError as error:
            text = error.read().decode("utf-8", "replace")
            try:
                details = json.loads(text)["error"]
            except (ValueError, TypeError, KeyError):
                details = text or error.reason
            raise ServingError(_GRPC_CODES.get(error.code, grpc.StatusCode.UNKNOWN),
                               details) from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            if isinstance(reason, TimeoutError):
                raise ServingError(grpc.StatusCode.DEADLINE_EXCEEDED,
                                   "Deadline Exceeded") from None
            raise ServingError(grpc.StatusCode.UNAVAILABLE,
                               f"failed to connect to http://{self.server}: {reason}") from None

    def _rest_predict(self, inputs, signature):
        body = {"signature_name": signature,
                "inputs": {name: _to_json(np.asarray(value)) for name, value in inputs.items()}}
        answer = self._call(self._http, (self._path(":predict"), body))["outputs"]
        if signature not in self._signatures:
            self._signatures = self.metadata()
        outputs = self._signatures[signature].outputs
        if len(outputs) == 1:  # TF Serving names outputs only when there are several
            answer = {next(iter(outputs)): answer}
        return {name: _from_json(value, outputs[name].dtype) for name, value in answer.items()}

    def predict(self, inputs, signature="serving_default"):
        """Calls `signature` with `inputs` (name → array); returns name → numpy array."""
        if self.rest:
            return self._rest_predict(inputs, signature)
        request = predict_pb2.PredictRequest()
        self._model_spec(request.model_spec, signature)
        for name, value in inputs.items():
            request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
        response = self._call(self._predict.Predict, request)
        return {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}

    def log_prob(self, images, cond=None):
        """`{"log_prob", "bits_per_dim"}`, float32 `(batch,)`, of int `(batch, H, W, C)` images.

        Args:
          images: integers in `[0, 2**bits)`, sent as int32.
          cond: `None` or a dict with `label` / `embedding` / `low_res` / `msb`, batched like images.

        Raises:
          ValueError: images that are not integers (floats are refused, never truncated, as
            `model.log_prob` refuses them).
        """
        images = np.asarray(images)
        if images.dtype.kind not in "iu":
            raise ValueError(
                f"images must be integers (int32 or uint8) in [0, 2**bits), got "
                f"{images.dtype.name}; quantize first: np.round(x * (2**bits - 1)) for floats "
                f"in [0, 1].")
        inputs = {"images": images.astype(np.int32), **_cond_arrays(cond)}
        return self.predict(inputs, "log_prob")

    def sample(self, num, seed=0, temperature=1.0, cond=None):
        """int32 `(num, H, W, C)` images; row i drawn with seed `(seed0, seed1 + i)`.

        Args:
          num: number of images.
          seed: an int (meaning `(0, seed)`) or a pair of ints.
          temperature: a float, or one per row.
          cond: `None` or a dict with `label` / `embedding` / `low_res` / `msb`, `num` rows each.
        """
        temperature = np.broadcast_to(np.asarray(temperature, np.float32), (num,))
        inputs = {"seed": row_seeds(num, seed), "temperature": temperature,
                  **_cond_arrays(cond)}
        return self.predict(inputs, "sample")["images"]

    def sample_video(self, first_frames, actions, seed=0, temperature=1.0):
        """int32 clips `(B, T, H, W, C)` a video export predicts from int `(B, H, W, C)` first
        frames and float `(B, T - 1, A)` actions; row i drawn with seed `(seed0, seed1 + i)`."""
        first_frames = np.asarray(first_frames, np.int32)
        num = len(first_frames)
        temperature = np.broadcast_to(np.asarray(temperature, np.float32), (num,))
        inputs = {"first_frames": first_frames, "seed": row_seeds(num, seed),
                  "temperature": temperature, **_cond_arrays({"action": actions})}
        return self.predict(inputs, "sample")["clips"]

    def describe(self):
        """`{"bits", "image_size", "channels", "num_frames"}` of the served model, from its
        `describe` signature (what a client needs before it sends or shows pixels).

        Raises:
          ValueError: the export has no `describe` signature (made before it existed, or not
            by spn_tf): pass the bit depth yourself (`--bits`).
        """
        try:
            answer = self.predict({"rows": np.zeros([1], np.int32)}, "describe")
        except ServingError as error:
            # TF Serving's answer to an unknown signature key (gRPC; REST: INVALID_ARGUMENT).
            if (error.code not in (grpc.StatusCode.FAILED_PRECONDITION,
                                   grpc.StatusCode.INVALID_ARGUMENT)
                    or '"describe" not found' not in error.details):
                raise
            raise ValueError(f"model {self.model!r} on {self.server} has no 'describe' "
                             f"signature (an older or foreign export): pass --bits.") from None
        return {name: int(value[0]) for name, value in answer.items()}

    def metadata(self):
        """signature name → `SignatureDef` proto, from `GetModelMetadata`."""
        if self.rest:
            answer = self._call(self._http, (self._path("/metadata"), None))
            signature_map = json_format.ParseDict(answer["metadata"]["signature_def"],
                                                  get_model_metadata_pb2.SignatureDefMap())
            return dict(signature_map.signature_def)
        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        self._model_spec(request.model_spec)
        response = self._call(self._predict.GetModelMetadata, request)
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signature_map)
        return dict(signature_map.signature_def)

    def status(self):
        """version → `(state name, error message)`, from `GetModelStatus`."""
        if self.rest:
            response = json_format.ParseDict(self._call(self._http, (self._path(), None)),
                                             get_model_status_pb2.GetModelStatusResponse())
        else:
            request = get_model_status_pb2.GetModelStatusRequest()
            self._model_spec(request.model_spec)
            response = self._call(self._models.GetModelStatus, request)
        return {s.version: (_STATE_NAMES(s.state), s.status.error_message)
                for s in response.model_version_status}

    def image_shape(self, signature="log_prob", name="images"):
        """`(height, width, channels)` of the `name` input (or output) of `signature` (from
        metadata)."""
        signature_def = self.metadata()[signature]
        tensor = signature_def.inputs.get(name) or signature_def.outputs[name]
        return tuple(d.size for d in tensor.tensor_shape.dim[1:])

    def is_video(self):
        """Whether the served model predicts clips (its `sample` takes `first_frames`)."""
        return "first_frames" in self.metadata()["sample"].inputs


def read_images(paths, shape, bits):
    """int32 `(len(paths), H, W, C)` at `bits` from 8-bit PNG/JPEG files of shape `shape`.

    Raises:
      ValueError: a missing or undecodable file, or an image whose size is not `shape`.
    """
    images = []
    for path in paths:
        try:
            image = read_image(path)
        except tf.errors.InvalidArgumentError:
            raise ValueError(f"{path!r} is not a PNG/JPEG/GIF/BMP image.") from None
        if image.shape != tuple(shape):
            raise ValueError(f"{path!r} is {'x'.join(map(str, image.shape))} (HxWxC); the "
                             f"model takes {'x'.join(map(str, shape))} images.")
        images.append(reduce_bits(image, bits).numpy())
    return np.stack(images).astype(np.int32)


def read_actions(path, rows, frames):
    """float32 `(rows, frames - 1, A)` actions from a `.npy` file holding `(frames - 1, A)`
    (the same for every row) or `(rows, frames - 1, A)`."""
    if not path:
        raise ValueError("a video model needs --actions=actions.npy: float (T-1, A) or "
                         "(clips, T-1, A) actions.")
    try:
        actions = np.load(path, allow_pickle=False).astype(np.float32)
    except (OSError, ValueError) as error:
        raise ValueError(f"--actions={path} could not be read as a .npy array ({error}).") from None
    if actions.ndim == 2:
        actions = np.broadcast_to(actions, (rows,) + actions.shape)
    if actions.ndim != 3 or actions.shape[:2] != (rows, frames - 1):
        raise ValueError(f"--actions={path} holds shape {list(actions.shape)}; this model takes "
                         f"({frames - 1}, A) or ({rows}, {frames - 1}, A).")
    return actions


def define_flags():
    flags.DEFINE_string("server", "localhost:8500", "host:port of the gRPC API (with --rest: "
                        "of the REST API, e.g. localhost:8501).")
    flags.DEFINE_bool("rest", False, "Speak TF Serving's REST API (JSON over HTTP) instead of "
                      "gRPC.")
    cli.model_name_flag(required=True)
    flags.DEFINE_integer("version", None, "Model version (default: the newest).")
    flags.DEFINE_enum("signature", "sample", ["sample", "log_prob"], "What to call.")
    cli.sampling_flags(num_samples=4)  # row i of a request: the seed (0, seed + i)
    cli.cond_flags()  # captions travel as DT_STRING
    flags.DEFINE_string("out", "samples.png", "sample: output PNG grid (video: one row of "
                        "frames per clip).")
    flags.DEFINE_list("images", None, "log_prob: 8-bit PNG files at the model's size (video: "
                      "each file a filmstrip of the clip's T frames side by side); video "
                      "sample: the first frames.")
    flags.DEFINE_string("actions", None, "Video models: a .npy of float actions, (T-1, A) for "
                        "every clip or (clips, T-1, A).")
    flags.DEFINE_integer("bits", None, "Bits per sub-pixel (default: what the server's "
                         "'describe' signature says; needed only for exports without it).",
                         lower_bound=1, upper_bound=8)
    flags.DEFINE_float("timeout", 30.0, "Seconds per call, retries included.")


def _cli_cond(labels, captions, rows):
    """The CLI's conditioning for `rows` images: labels and captions cycled, or None."""
    cond = {}
    if labels:
        cond["label"] = np.resize(np.array(labels, np.int32), rows)
    if captions:
        cond["text"] = np.resize(np.array(captions, object), rows)
    return cond or None


def _filmstrips(paths, facts, bits):
    """int32 clips `(len(paths), T, H, W, C)` from PNG filmstrips `(H, T * W, C)`."""
    frames, size, channels = facts["num_frames"], facts["image_size"], facts["channels"]
    strips = read_images(paths, (size, frames * size, channels), bits)
    return strips.reshape(len(paths), size, frames, size, channels).transpose(0, 2, 1, 3, 4)


def _run_video(client, signature, seed, temperature, out, image_paths, facts, bits,
               actions_path):
    if not image_paths:
        raise ValueError(f"a video model needs --images: first frames (sample) or filmstrips "
                         f"of {facts['num_frames']} frames (log_prob).")
    frames = facts["num_frames"]
    actions = read_actions(actions_path, len(image_paths), frames)
    if signature == "sample":
        first = read_images(image_paths, client.image_shape("sample", "first_frames"), bits)
        clips = client.sample_video(first, actions, seed, temperature)
        write_grid(clips.reshape((-1,) + clips.shape[2:]), bits, out, columns=frames)
        return [f"wrote {len(clips)} clips of {frames} frames to {out}"]
    clips = _filmstrips(image_paths, facts, bits)
    bits_per_dim = client.predict({"clips": clips, "action": actions}, "log_prob")[
        "bits_per_dim"]
    return [f"{path}: {value:.4f} bits/dim" for path, value in zip(image_paths, bits_per_dim)]


def run(client, signature, num, seed, temperature, labels, out, image_paths, bits=None,
        captions=None, actions_path=None):
    """Runs the CLI's call with `client`; returns the lines it prints. `bits=None` asks the
    server (`describe`); a video export is driven by first frames and actions."""
    video = client.is_video()
    facts = client.describe() if bits is None or video else {}
    bits = bits or facts["bits"]
    if video:
        if labels or captions:
            raise ValueError("a video model is conditioned on actions: --labels and "
                             "--captions do not apply.")
        return _run_video(client, signature, seed, temperature, out, image_paths, facts, bits,
                          actions_path)
    if signature == "sample":
        images = client.sample(num, seed, temperature, _cli_cond(labels, captions, num))
        write_grid(images, bits, out)
        return [f"wrote {num} samples {'x'.join(map(str, images.shape[1:]))} to {out}"]
    if not image_paths:
        raise ValueError("--signature=log_prob needs --images=a.png,b.png,...")
    images = read_images(image_paths, client.image_shape(), bits)
    bits_per_dim = client.log_prob(images, _cli_cond(labels, captions, len(images)))[
        "bits_per_dim"]
    return [f"{path}: {value:.4f} bits/dim" for path, value in zip(image_paths, bits_per_dim)]


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}; all options are --flags.")
    labels = [int(v) for v in FLAGS.labels] if FLAGS.labels else None
    try:
        with Client(FLAGS.server, FLAGS.model_name, FLAGS.version,
                    timeout=FLAGS.timeout, rest=FLAGS.rest) as client:
            for line in run(client, FLAGS.signature, FLAGS.num_samples, FLAGS.seed,
                            FLAGS.temperature,
                            labels, FLAGS.out, FLAGS.images, FLAGS.bits, FLAGS.captions,
                            FLAGS.actions):
                print(line)
    except (ServingError, ValueError) as error:
        sys.exit(f"spn_tf.serving.client: error: {error}")


if __name__ == "__main__":
    cli.run(main, define_flags)
