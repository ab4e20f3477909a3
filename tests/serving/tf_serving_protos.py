"""TF Serving's `BatchingParameters` and `MonitoringConfig` messages, for parsing our configs.

tensorflow-serving-api 2.21 ships `model_server_config_pb2` but not
`session_bundle_config_pb2` (BatchingParameters) nor `monitoring_config_pb2`. These are the
two messages as declared in tensorflow/serving (commit 9d981c5, Jul 2026):
`tensorflow_serving/servables/tensorflow/session_bundle_config.proto` and
`tensorflow_serving/config/monitoring_config.proto` — same package, names, numbers and types,
so `text_format.Parse` accepts exactly what `tensorflow_model_server` accepts.
"""

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, wrappers_pb2

_F = descriptor_pb2.FieldDescriptorProto
_INT64, _STRING, _BOOL = ".google.protobuf.Int64Value", ".google.protobuf.StringValue", \
    ".google.protobuf.BoolValue"

# (name, number, type, wrapper message or None, label)
_MESSAGES = {
    "BatchingParameters": [
        ("max_batch_size", 1, _F.TYPE_MESSAGE, _INT64, _F.LABEL_OPTIONAL),
        ("batch_timeout_micros", 2, _F.TYPE_MESSAGE, _INT64, _F.LABEL_OPTIONAL),
        ("max_enqueued_batches", 3, _F.TYPE_MESSAGE, _INT64, _F.LABEL_OPTIONAL),
        ("num_batch_threads", 4, _F.TYPE_MESSAGE, _INT64, _F.LABEL_OPTIONAL),
        ("thread_pool_name", 5, _F.TYPE_MESSAGE, _STRING, _F.LABEL_OPTIONAL),
        ("allowed_batch_sizes", 6, _F.TYPE_INT64, None, _F.LABEL_REPEATED),
        ("pad_variable_length_inputs", 7, _F.TYPE_BOOL, None, _F.LABEL_OPTIONAL),
        ("enable_large_batch_splitting", 8, _F.TYPE_MESSAGE, _BOOL, _F.LABEL_OPTIONAL),
        ("max_execution_batch_size", 9, _F.TYPE_MESSAGE, _INT64, _F.LABEL_OPTIONAL),
    ],
    "PrometheusConfig": [
        ("enable", 1, _F.TYPE_BOOL, None, _F.LABEL_OPTIONAL),
        ("path", 2, _F.TYPE_STRING, None, _F.LABEL_OPTIONAL),
    ],
    "MonitoringConfig": [
        ("prometheus_config", 1, _F.TYPE_MESSAGE, ".tensorflow.serving.PrometheusConfig",
         _F.LABEL_OPTIONAL),
    ],
}


def _classes():
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(wrappers_pb2.DESCRIPTOR.serialized_pb)
    file = descriptor_pb2.FileDescriptorProto(
        name="spn_tf_tests/tf_serving_configs.proto", package="tensorflow.serving",
        syntax="proto3", dependency=["google/protobuf/wrappers.proto"])
    for name, fields in _MESSAGES.items():
        message = file.message_type.add(name=name)
        for field, number, kind, type_name, label in fields:
            message.field.add(name=field, number=number, type=kind, label=label,
                              **({"type_name": type_name} if type_name else {}))
    pool.Add(file)
    return {name: message_factory.GetMessageClass(
        pool.FindMessageTypeByName(f"tensorflow.serving.{name}")) for name in _MESSAGES}


_CLASSES = _classes()
BatchingParameters = _CLASSES["BatchingParameters"]
MonitoringConfig = _CLASSES["MonitoringConfig"]
