"""A local/dev stand-in for TF Serving: TF Serving's gRPC API in Python, on `tf.saved_model.load`.

This is **not** TF Serving (`tensorflow_model_server`, which cannot be installed here): it is
a small gRPC server built on the servicer base classes of `tensorflow-serving-api`, for tests
and local development. It takes `tensorflow_model_server`'s flag names, so a command line moves
from one to the other:

    python -m spn_tf.serving.server --port=8500 --model_name=quickstart \
        --model_base_path=exports/quickstart
    python -m spn_tf.serving.server --port=8500 --model_config_file=my_models.config
    python -m spn_tf.serving.server --port=8500 --rest_api_port=8501 --model_name=quickstart \
        --model_base_path=exports/quickstart

It answers `PredictionService.Predict` and `ModelService.GetModelStatus` / `GetModelMetadata`
with TF Serving's status codes and messages: NOT_FOUND for an unknown model or version,
FAILED_PRECONDITION for an unknown signature (TF Serving's code for it), INVALID_ARGUMENT for
missing or extra inputs, a wrong dtype or shape, and for errors raised by the graph's own checks
(pixel values out of range, batch sizes that disagree). It serves the newest version (or the
requested `version` / `version_label`), loads a new version folder within
`--file_system_poll_wait_seconds` without a restart, and on SIGTERM stops accepting calls,
finishes those in flight (up to `--shutdown_grace_seconds`) and exits 0. It binds 127.0.0.1
only (a dev server); there is no server-side batching. With `--rest_api_port` (0: off, TF
Serving's default) it also answers TF Serving's REST API (`/v1/models/...` status, metadata and
`:predict`, `spn_tf.serving.rest`) through the same handlers, so every check above holds there
too, with TF Serving's JSON and HTTP statuses.
"""

import re
import signal
import sys
import threading
from concurrent import futures

import grpc
import numpy as np
import tensorflow as tf
from absl import app, flags, logging
from google.protobuf import text_format
from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2,
                                     model_service_pb2_grpc, predict_pb2,
                                     prediction_service_pb2_grpc)
from tensorflow_serving.config import model_server_config_pb2

from spn_tf import cli
from spn_tf.serving import rest
from spn_tf.serving.servables import MAX_BATCH_ROWS, ModelManager, RequestError

FLAGS = flags.FLAGS
_CODES = {code.value[0]: code for code in grpc.StatusCode}
# Default of `--grpc_max_message_bytes` (gRPC's own default is 4 MiB; TF Serving sets INT_MAX):
# room for `--max_batch_rows` (256) rows of 64x64x3 int32 pixels (12.6 MB) and their inputs.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024


def _servable(manager, model_spec):
    version = model_spec.version.value if model_spec.HasField("version") else None
    return manager.model(model_spec.name).servable(version, model_spec.version_label or None)


def _input_tensors(signature_name, function, inputs):
    """Checks the request's `inputs` against `function`'s input specs; returns tensors.

    Raises:
      RequestError: INVALID_ARGUMENT naming the missing/extra input, the wrong dtype or shape.
    """
    specs = function.structured_input_signature[1]
    if set(inputs) != set(specs):
        extra, missing = sorted(set(inputs) - set(specs)), sorted(set(specs) - set(inputs))
        raise RequestError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"input size does not match signature: {len(inputs)}!={len(specs)} "
            f"len({{{','.join(sorted(inputs))}}}) != len({{{','.join(sorted(specs))}}}). "
            f"Sent extra: {{{','.join(extra)}}}. Missing but required: {{{','.join(missing)}}}.")
    tensors = {}
    for index, name in enumerate(sorted(specs)):
        spec, proto = specs[name], inputs[name]
        if proto.dtype != spec.dtype.as_datatype_enum:
            got = tf.dtypes.as_dtype(proto.dtype).name if proto.dtype else "an invalid dtype"
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"Expects arg[{index}] ('{name}') to be {spec.dtype.name} but "
                               f"{got} is provided")
        try:
            value = tf.make_ndarray(proto)
        except (TypeError, ValueError) as error:
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"input '{name}' is not a valid TensorProto: {error}") from None
        if not spec.shape.is_compatible_with(value.shape):
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"input '{name}' has shape {list(value.shape)}, but signature "
                               f"'{signature_name}' takes {spec.shape} (None: any size)")
        tensors[name] = tf.constant(value)
    return tensors


def error_text(message):
    """A graph error's message without the Python runtime's wrappers ("Graph execution
    error", "Detected at node", node and op names), as a client should read it; an assertion's
    data `[a] [b]` joined as `a b`. E.g. `images values must be in [0, 4) (bits=2); got 7 at
    row 1`."""
    lines = [line for line in message.splitlines()
             if line.strip() and not line.startswith(("Graph execution error",
                                                      "Detected at node",
                                                      "<stack traces unavailable>"))
             and not line.lstrip().startswith("[[")]
    text = re.sub(r"\s*\[Op:[^\]]*\]$", "", " ".join(lines).strip())
    if text.startswith("assertion failed: [") and text.endswith("]"):
        text = " ".join(part.strip() for part in
                        text[len("assertion failed: ["):-1].split("] ["))
    return text or message


def _check_rows(inputs, max_rows):
    """Refuses a request whose inputs carry more than `max_rows` rows (dimension 0), read from
    the TensorProtos' shapes before any tensor is built.

    Raises:
      RequestError: INVALID_ARGUMENT naming the input, the limit and `--max_batch_rows`.
    """
    for name in sorted(inputs):
        dims = inputs[name].tensor_shape.dim
        if dims and dims[0].size > max_rows:
            raise RequestError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"input '{name}' has {dims[0].size} rows; this server takes at most {max_rows} "
                f"rows per request (--max_batch_rows={max_rows}): send at most {max_rows} rows "
                f"per request, or start the server with a larger --max_batch_rows.")


def predict(manager, request):
    """Answers one `PredictRequest` (TF Serving's semantics); raises `RequestError`.

    Every front end calls this (gRPC and REST), so every predict is held to
    `manager.max_batch_rows` rows.
    """
    servable = _servable(manager, request.model_spec)
    signature_name = request.model_spec.signature_name or "serving_default"
    if signature_name not in servable.signatures:
        raise RequestError(grpc.StatusCode.FAILED_PRECONDITION,
                           f'Serving signature key "{signature_name}" not found.')
    function = servable.signatures[signature_name]
    _check_rows(request.inputs, manager.max_batch_rows)
    tensors = _input_tensors(signature_name, function, request.inputs)
    output_names = list(request.output_filter) or sorted(function.structured_outputs)
    for alias in output_names:
        if alias not in function.structured_outputs:
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"output tensor alias not found in signature: {alias} Outputs "
                               f"expected to be in the set "
                               f"{{{','.join(sorted(function.structured_outputs))}}}.")
    try:
        outputs = function(**tensors)
    except tf.errors.OpError as error:
        raise RequestError(_CODES.get(error.error_code, grpc.StatusCode.UNKNOWN),
                           error_text(error.message)) from None
    response = predict_pb2.PredictResponse()
    response.model_spec.name = servable.name
    response.model_spec.version.value = servable.version
    response.model_spec.signature_name = signature_name
    for alias in output_names:
        response.outputs[alias].CopyFrom(tf.make_tensor_proto(np.asarray(outputs[alias])))
    return response


def model_metadata(manager, request):
    """Answers a `GetModelMetadataRequest`: the `signature_def` map of the servable."""
    if not request.metadata_field:
        raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                           "GetModelMetadataRequest must specify at least one metadata_field")
    for field in request.metadata_field:
        if field != "signature_def":
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"Metadata field {field} is not supported")
    servable = _servable(manager, request.model_spec)
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    for name, signature_def in servable.signature_defs.items():
        signature_map.signature_def[name].CopyFrom(signature_def)
    response = get_model_metadata_pb2.GetModelMetadataResponse()
    response.model_spec.name = servable.name
    response.model_spec.version.value = servable.version
    response.metadata["signature_def"].Pack(signature_map)
    return response


def model_status(manager, request):
    """Answers a `GetModelStatusRequest`: the state of every version (or of the one asked)."""
    name = request.model_spec.name
    states = manager.model(name).states() if name in manager.models else {}
    if request.model_spec.HasField("version"):
        version = request.model_spec.version.value
        if version not in states:
            raise RequestError(grpc.StatusCode.NOT_FOUND,
                               f"Could not find version {version} of model {name}")
        states = {version: states[version]}
    if not states:
        raise RequestError(grpc.StatusCode.NOT_FOUND,
                           f"Could not find any versions of model {name}")
    response = get_model_status_pb2.GetModelStatusResponse()
    for version, (state, error) in sorted(states.items()):
        status = response.model_version_status.add(version=version, state=state)
        status.status.SetInParent()  # TF Serving always sets it: error_code OK when healthy
        if error:
            status.status.error_code = grpc.StatusCode.UNKNOWN.value[0]
            status.status.error_message = error
    return response


def _answer(handler):
    """Wraps `handler(manager, request)` as a servicer method: `RequestError` → gRPC status.

    A call whose client has gone or whose deadline passed while it waited for a thread (behind
    other calls) is not run: the client already has DEADLINE_EXCEEDED (or CANCELLED), and the
    thread goes to the next call. A deadline that passes while the call runs cannot stop the
    graph; gRPC drops its answer.
    """

    def method(self, request, context):
        remaining = context.time_remaining()
        if not context.is_active() or (remaining is not None and remaining <= 0):
            context.abort(grpc.StatusCode.DEADLINE_EXCEEDED,
                          "the call's deadline passed before a server thread was free to "
                          "run it; not run (give the call a longer timeout, or send fewer "
                          "calls at once)")
        try:
            return handler(self.manager, request)
        except RequestError as error:
            context.abort(error.code, error.message)

    return method


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    """`PredictionService` over a `ModelManager` (Predict only: Classify/Regress are left
    UNIMPLEMENTED by the base class, as spn_tf exports only predict signatures)."""

    def __init__(self, manager):
        self.manager = manager

    Predict = _answer(predict)
    GetModelMetadata = _answer(model_metadata)


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    """`ModelService.GetModelStatus` over a `ModelManager`."""

    def __init__(self, manager):
        self.manager = manager

    GetModelStatus = _answer(model_status)


def build_server(manager, port, max_threads, max_message_bytes=MAX_MESSAGE_BYTES):
    """A started gRPC server on 127.0.0.1:`port` answering for `manager`'s models.

    `max_message_bytes` bounds a request's serialized size: gRPC itself refuses a larger one
    (RESOURCE_EXHAUSTED `Received message larger than max (N vs. M)`) before it is read into
    memory; `Client` names `--grpc_max_message_bytes` in its error. Answers are not bounded
    here (`--max_batch_rows` bounds them).
    """
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_threads),
                         options=[("grpc.max_receive_message_length", max_message_bytes),
                                  ("grpc.max_send_message_length", -1)])
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionServicer(manager), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(manager), server)
    if server.add_insecure_port(f"127.0.0.1:{port}") == 0:
        raise ValueError(f"cannot listen on 127.0.0.1:{port} (in use?).")
    server.start()
    return server


def server_config(model_name, model_base_path, model_config_file):
    """The `ModelServerConfig` from `--model_config_file`, else from name + base path."""
    config = model_server_config_pb2.ModelServerConfig()
    if model_config_file:
        with tf.io.gfile.GFile(model_config_file) as f:
            text_format.Parse(f.read(), config)
        return config
    if not model_base_path:
        raise ValueError("give --model_base_path (with --model_name) or --model_config_file.")
    config.model_config_list.config.add(name=model_name, base_path=model_base_path,
                                        model_platform="tensorflow")
    return config


def define_flags():
    flags.DEFINE_integer("port", 8500, "gRPC port (on 127.0.0.1).", lower_bound=1)
    flags.DEFINE_integer("rest_api_port", 0, "Port of TF Serving's HTTP/REST API (on "
                         "127.0.0.1); 0: no REST API. Must differ from --port.", lower_bound=0)
    flags.DEFINE_integer("rest_max_body_bytes", rest.MAX_BODY_BYTES, "Largest REST request "
                         "body in bytes; a larger one is refused unread with HTTP 429 "
                         "(RESOURCE_EXHAUSTED). Not a TF Serving flag.", lower_bound=1)
    cli.model_name_flag("default")
    flags.DEFINE_string("model_base_path", None, "Folder of numeric version folders (ignored "
                        "if --model_config_file is set, otherwise required).")
    flags.DEFINE_string("model_config_file", None,
                        "An ascii ModelServerConfig protobuf (model_config_list) to serve.")
    flags.DEFINE_integer("file_system_poll_wait_seconds", 1, "Seconds between polls of the "
                         "base paths for new versions; 0: poll once at startup.")
    flags.DEFINE_integer("max_num_load_retries", 5,
                         "Load attempts of a failing version after the first, one per poll.")
    flags.DEFINE_integer("grpc_max_threads", 8, "Threads answering gRPC calls.", lower_bound=1)
    flags.DEFINE_integer("max_batch_rows", MAX_BATCH_ROWS, "Most rows (dimension 0) of one "
                         "predict request, gRPC or REST; more are refused with "
                         "INVALID_ARGUMENT (a 32x32x3 log_prob of the `small` raster costs ~7 MB "
                         "per row). Not a TF Serving flag (its batcher refuses tasks above "
                         "max_batch_size).", lower_bound=1)
    flags.DEFINE_integer("grpc_max_message_bytes", MAX_MESSAGE_BYTES, "Largest gRPC request "
                         "in bytes (grpc.max_receive_message_length); gRPC refuses larger ones "
                         "with RESOURCE_EXHAUSTED before reading them. TF Serving: INT_MAX, "
                         "changed with --grpc_channel_arguments=grpc.max_receive_message_length"
                         "=N.", lower_bound=1)
    flags.DEFINE_float("shutdown_grace_seconds", 10.0,
                       "On SIGTERM, how long calls in flight may take to finish.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}; all options are --flags.")
    try:
        config = server_config(FLAGS.model_name, FLAGS.model_base_path, FLAGS.model_config_file)
        manager = ModelManager(config, FLAGS.max_num_load_retries, FLAGS.max_batch_rows)
    except (ValueError, text_format.ParseError, tf.errors.NotFoundError) as error:
        sys.exit(f"spn_tf.serving.server: error: {error}")
    if FLAGS.rest_api_port == FLAGS.port:
        sys.exit(f"spn_tf.serving.server: error: --rest_api_port={FLAGS.rest_api_port} is "
                 f"--port; give the REST API another port (TF Serving: 8501).")
    manager.poll()  # like tensorflow_model_server: load the models before listening
    rest_server = None
    try:
        if FLAGS.rest_api_port:
            rest_server = rest.RestServer(manager, FLAGS.rest_api_port,
                                          FLAGS.rest_max_body_bytes).start()
        server = build_server(manager, FLAGS.port, FLAGS.grpc_max_threads,
                              FLAGS.grpc_max_message_bytes)
    except ValueError as error:
        sys.exit(f"spn_tf.serving.server: error: {error}")
    manager.start_polling(FLAGS.file_system_poll_wait_seconds)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    logging.info("Running gRPC stand-in ModelServer at 127.0.0.1:%d ...", FLAGS.port)
    if rest_server:
        logging.info("Exporting HTTP/REST API at:127.0.0.1:%d ...", FLAGS.rest_api_port)
    while not stop.wait(1.0):
        pass
    logging.info("Shutting down: no new calls, finishing those in flight.")
    stopped = server.stop(FLAGS.shutdown_grace_seconds)
    if rest_server:
        rest_server.stop(FLAGS.shutdown_grace_seconds)
    stopped.wait()
    manager.stop_polling()


if __name__ == "__main__":
    cli.run(main, define_flags)
