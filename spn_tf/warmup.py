"""TF Serving warm-up requests: written into an export, replayed when a version loads.

The first call of a signature in a fresh process pays for tracing, graph optimisation and
kernel set-up (1.5-17.8 s measured on a 2-core CPU for spn_tf exports). TF Serving
removes that from the first real request by replaying, at load, the `PredictionLog` records of
`<version>/assets.extra/tf_serving_warmup_requests` (a TFRecord file, at most 1,000 records;
tensorflow/serving `g3doc/saved_model_warmup.md`); a version whose warm-up fails does not load.
`write` puts one request per signature and batch size there; `replay` is the stand-in server's
copy of TF Serving's replay.

Used by `spn_tf.export` (writes) and `spn_tf.serving` (replays); requests are built from the
signatures' input specs alone (nothing of spn_tf's model code):
every input is zeros of its dtype, except the names the sampling signatures share:
`seed` (row i: `(0, i)`), `temperature` (ones), and strings (captions: `"a"`).
"""

import os

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
# The batch sizes TF Serving's batcher runs (`allowed_batch_sizes` of
# export/batching_parameters.txt): an XLA export compiles once per batch shape.
BATCH_SIZES = (1, 8, 32)
# TF Serving replays at most this many records (`kMaxNumRecordsInWarmupFile`).
MAX_RECORDS = 1000


def example_inputs(specs, batch_size):
    """Valid inputs for a signature: `{name: ndarray}` with `batch_size` rows.

    Args:
      specs: the signature's input `tf.TensorSpec`s (named; dimension 0 is the batch).
      batch_size: rows.
    """
    inputs = {}
    for spec in specs:
        shape = [batch_size] + [1 if d is None else d for d in spec.shape.as_list()[1:]]
        if spec.name == "seed":
            value = np.stack([np.zeros(batch_size), np.arange(batch_size)], 1)
        elif spec.name == "temperature":
            value = np.ones(shape)
        elif spec.dtype == tf.string:
            value = np.full(shape, b"a", dtype=object)
        else:
            value = np.zeros(shape)
        inputs[spec.name] = value.astype(object if spec.dtype == tf.string
                                         else spec.dtype.as_numpy_dtype)
    return inputs


def prediction_logs(signatures, batch_sizes=BATCH_SIZES):
    """One `PredictionLog` per signature and batch size.

    Args:
      signatures: `{signature name: [input TensorSpec]}`.
      batch_sizes: the batch sizes to warm.
    """
    logs = []
    for name, specs in signatures.items():
        for batch_size in batch_sizes:
            request = predict_pb2.PredictRequest()
            request.model_spec.signature_name = name
            for key, value in example_inputs(specs, batch_size).items():
                request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
            logs.append(prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request)))
    if len(logs) > MAX_RECORDS:
        raise ValueError(f"{len(logs)} warm-up requests: TF Serving replays at most "
                         f"{MAX_RECORDS}; warm fewer batch sizes.")
    return logs


def write(export_dir, signatures, batch_sizes=BATCH_SIZES):
    """Writes `<export_dir>/assets.extra/tf_serving_warmup_requests` (see `prediction_logs`).

    Returns:
      The file's path.
    """
    path = os.path.join(export_dir, WARMUP_FILE)
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.TFRecordWriter(path) as writer:
        for log in prediction_logs(signatures, batch_sizes):
            writer.write(log.SerializeToString())
    return path


def read(export_dir):
    """The warm-up requests of an export: `[(signature name, {input: ndarray})]`, or `[]`
    when it has none.

    Raises:
      ValueError: a record that is not a `PredictionLog` holding a `PredictRequest`, or more
        than `MAX_RECORDS` records (TF Serving refuses both).
    """
    path = os.path.join(export_dir, WARMUP_FILE)
    if not tf.io.gfile.exists(path):
        return []
    requests = []
    for index, record in enumerate(tf.data.TFRecordDataset(path).as_numpy_iterator()):
        if index >= MAX_RECORDS:
            raise ValueError(f"{path}: more than {MAX_RECORDS} warm-up records.")
        log = prediction_log_pb2.PredictionLog()
        log.ParseFromString(record)
        if log.WhichOneof("log_type") != "predict_log":
            raise ValueError(f"{path}: record {index} is not a PredictLog (only Predict "
                             f"warm-up requests are supported for SavedModels here).")
        request = log.predict_log.request
        requests.append((request.model_spec.signature_name or "serving_default",
                         {key: tf.make_ndarray(proto) for key, proto in request.inputs.items()}))
    return requests


def replay(loaded, export_dir):
    """Runs every warm-up request of `export_dir` on `loaded` (`tf.saved_model.load`'s result).

    Returns:
      The number of requests replayed.

    Raises:
      ValueError: a request names an unknown signature, or fails (the version must not load).
    """
    requests = read(export_dir)
    for name, inputs in requests:
        if name not in loaded.signatures:
            raise ValueError(f"warm-up request for signature {name!r}, which "
                             f"{export_dir} does not have.")
        try:
            loaded.signatures[name](**{k: tf.constant(v) for k, v in inputs.items()})
        except tf.errors.OpError as error:
            raise ValueError(f"warm-up request for signature {name!r} failed: "
                             f"{error.message}") from None
    return len(requests)
