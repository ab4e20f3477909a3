"""TF Serving's REST API (`--rest_api_port`) for the local stand-in server, over its gRPC handlers.

The endpoints, JSON and error texts follow TF Serving's `http_rest_api_handler.cc`,
`http_rest_api_util.cc` and `util/json_tensor.cc` (tensorflow/serving, 2026-07):

    GET  /v1/models/{name}[/versions/{v}|/labels/{l}]            model status
    GET  /v1/models/{name}[/versions/{v}|/labels/{l}]/metadata   signature defs
    POST /v1/models/{name}[/versions/{v}|/labels/{l}]:predict    predict

A predict body names a `signature_name` (default `serving_default`) and either `instances` (the
row form: one value per row, or one `{input: value}` object per row when the signature has
several inputs; answered as `{"predictions": [...]}`) or `inputs` (the columnar form: a value,
or `{input: value}`; answered as `{"outputs": ...}`). Values take their dtypes from the
signature's inputs; strings are JSON strings or `{"b64": "..."}` objects. The JSON becomes a
`PredictRequest` answered by `server.predict`, so every check of the gRPC path holds for REST.
Errors answer `{"error": "<message>"}` with the HTTP status TF Serving maps the gRPC code to
(`ToHTTPStatusCode` in `http_server.cc`): 400 for INVALID_ARGUMENT and FAILED_PRECONDITION, 404
for NOT_FOUND, ... A `/v1/` path or method that is none of the above answers 400 `Malformed
request: GET /v1/...`, as TF Serving does; any other path 404 (TF Serving's HTTP library
answers it with an HTML page; here it is JSON too). Responses are written the way TF Serving's
rapidjson writer lays them out, floats with TF Serving's shortest round-tripping digits.
"""

import base64
import binascii
import json
import re
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
import numpy as np
import tensorflow as tf
from absl import logging
from google.protobuf import json_format
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2, model_pb2,
                                     predict_pb2)

from spn_tf.serving import server
from spn_tf.serving.servables import RequestError

# gRPC code → HTTP status, in the order of TF Serving's `ToHTTPStatusCode` (the first code
# listed for a status is the one a client reads back from it).
HTTP_STATUS = {
    grpc.StatusCode.OK: 200, grpc.StatusCode.CANCELLED: 499, grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400, grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404, grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403, grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400, grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400, grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500, grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500, grpc.StatusCode.UNAUTHENTICATED: 401,
}
# Default of `--rest_max_body_bytes`: JSON spends ~3-4 characters per pixel value, so this holds
# about what `--grpc_max_message_bytes`' 16 MiB holds as binary TensorProtos.
MAX_BODY_BYTES = 64 * 1024 * 1024

_PREDICT_PATH = re.compile(r"/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?"
                           r":(classify|regress|predict)", re.IGNORECASE)
_STATUS_PATH = re.compile(r"/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|"
                          r"(?:/labels/([^/:]+)))?(?:/(metadata))?", re.IGNORECASE)
_API_PATH = re.compile(r"/v1/.*", re.IGNORECASE | re.DOTALL)
_MAX_DEBUG_BYTES = 256  # TF Serving's kMaxJsonDebugStringBytes
# rapidjson's GetParseError_En wording for what Python's json parser reports.
_PARSE_ERRORS = {
    "Expecting value": "Invalid value.",
    "Expecting property name enclosed in double quotes": "Missing a name for object member.",
    "Expecting ':' delimiter": "Missing a colon after a name of object member.",
    "Unterminated string starting at": "Missing a closing quotation mark in string.",
    "Invalid \\escape": "Invalid escape character in string.",
    "Invalid \\uXXXX escape": "Incorrect hex digit after \\u escape in string.",
    "Invalid control character at": "Invalid encoding in string.",
}
_VALUE_FIELDS = {types_pb2.DT_FLOAT: "float_val", types_pb2.DT_DOUBLE: "double_val",
                 types_pb2.DT_INT32: "int_val", types_pb2.DT_INT16: "int_val",
                 types_pb2.DT_INT8: "int_val", types_pb2.DT_UINT8: "int_val",
                 types_pb2.DT_STRING: "string_val", types_pb2.DT_INT64: "int64_val",
                 types_pb2.DT_BOOL: "bool_val", types_pb2.DT_UINT32: "uint32_val",
                 types_pb2.DT_UINT64: "uint64_val"}
_INT_RANGES = {"int_val": (-2 ** 31, 2 ** 31), "int64_val": (-2 ** 63, 2 ** 63),
               "uint32_val": (0, 2 ** 32), "uint64_val": (0, 2 ** 64)}


def _invalid(message):
    return RequestError(grpc.StatusCode.INVALID_ARGUMENT, message)


def _dtype_name(dtype):
    """TF's `DataTypeString`: `float`, `int32`, `string`, ..."""
    return types_pb2.DataType.Name(dtype)[len("DT_"):].lower()


class _JsonWriter:
    """rapidjson's `PrettyWriter` (4-space indent; arrays on one line while `single_line`),
    which TF Serving writes its answers with. With `limit`, events stop (return False) once
    `limit` bytes are written, as TF Serving's `JsonWriterWithLimit` does for error texts."""

    def __init__(self, limit=None):
        self.parts, self.size, self.limit = [], 0, limit
        self.single_line = False
        self._levels = []  # [in_array, values written]

    def text(self):
        return "".join(self.parts)

    def _put(self, text):
        self.parts.append(text)
        self.size += len(text.encode("utf-8", "surrogatepass"))

    def _prefix(self):
        if self.limit is not None and self.size >= self.limit:
            return False
        if self._levels:
            level = self._levels[-1]
            indent = "    " * len(self._levels)
            if level[0]:
                if level[1]:
                    self._put(", " if self.single_line else ",")
                if not self.single_line:
                    self._put("\n" + indent)
            else:
                self._put((",\n" if level[1] % 2 == 0 else ": ") if level[1] else "\n")
                if level[1] % 2 == 0:
                    self._put(indent)
            level[1] += 1
        return True

    def value(self, token):
        """A scalar already written as JSON text (number, string, true, null)."""
        if not self._prefix():
            return False
        self._put(token)
        return True

    def start(self, array):
        if not self._prefix():
            return False
        self._put("[" if array else "{")
        self._levels.append([array, 0])
        return True

    def end(self):
        if self.limit is not None and self.size >= self.limit:
            return False
        array, count = self._levels.pop()
        if count and not (array and self.single_line):
            self._put("\n" + "    " * len(self._levels))
        self._put("]" if array else "}")
        return True


def _string_token(text):
    return json.dumps(text, ensure_ascii=False)


def _write_json(writer, value):
    """Writes a parsed JSON value (rapidjson's `Value::Accept`); False once the writer stops."""
    if isinstance(value, dict):
        if not writer.start(array=False):
            return False
        for key, item in value.items():
            if not (writer.value(_string_token(key)) and _write_json(writer, item)):
                return False
        return writer.end()
    if isinstance(value, list):
        return (writer.start(array=True) and all(_write_json(writer, v) for v in value)
                and writer.end())
    if isinstance(value, float):
        token = repr(value) if np.isfinite(value) else (
            "NaN" if np.isnan(value) else ("-Infinity" if value < 0 else "Infinity"))
        return writer.value(re.sub(r"e([+-]?)0*(\d)", lambda m: "e" + m[1].lstrip("+") + m[2],
                                   token))
    if isinstance(value, str):
        return writer.value(_string_token(value))
    return writer.value(json.dumps(value))


def debug_string(value):
    """TF Serving's `JsonValueToDebugString`: the value as rapidjson prints it, arrays on one
    line, cut after 256 bytes."""
    writer = _JsonWriter(_MAX_DEBUG_BYTES)
    writer.single_line = True
    _write_json(writer, value)
    return writer.text()


def _json_type(value):
    """TF Serving's `JsonTypeString`."""
    if value is None:
        return "Null"
    if isinstance(value, bool):
        return "True" if value else "False"
    return {dict: "Object", list: "Array", str: "String"}.get(type(value), "Number")


def _innermost(text):
    """`[` or `{`: the container open at the end of `text` (JSON, strings skipped)."""
    stack = []
    for char in re.sub(r'"(?:\\.|[^"\\])*"', '""', text):
        if char in "[{":
            stack.append(char)
        elif char in "]}" and stack:
            stack.pop()
    return stack[-1] if stack else "{"


def parse_json(body):
    """The request's JSON object, parsed as TF Serving's `ParseJson` does (NaN and Infinity
    allowed, anything after the first value ignored).

    Raises:
      RequestError: INVALID_ARGUMENT, `JSON Parse error: ...` or `... Is not object`.
    """
    if not body:
        raise _invalid("JSON Parse error: The document is empty")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise _invalid(f"JSON Parse error: Invalid encoding in string. at offset: "
                       f"{error.start}") from None
    start = len(text) - len(text.lstrip())
    if start == len(text):
        raise _invalid("JSON Parse error: The document is empty")
    try:
        doc, _ = json.JSONDecoder().raw_decode(text, start)
    except json.JSONDecodeError as error:
        if error.msg == "Expecting ',' delimiter":
            reason = ("Missing a comma or ']' after an array element."
                      if _innermost(text[:error.pos]) == "[" else
                      "Missing a comma or '}' after an object member.")
        else:
            reason = _PARSE_ERRORS.get(error.msg, f"{error.msg}.")
        raise _invalid(f"JSON Parse error: {reason} at offset: {error.pos}") from None
    if not isinstance(doc, dict):
        raise _invalid(f"JSON Value: {debug_string(doc)} Is not object")
    return doc


class _TensorError(Exception):
    """A value that does not fit its tensor (wrapped by the caller, as TF Serving wraps it)."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code, self.message = code, message


def _type_error(value, dtype):
    return _TensorError(grpc.StatusCode.INVALID_ARGUMENT,
                        f"JSON Value: {debug_string(value)} Type: {_json_type(value)} is not "
                        f"of expected type: {_dtype_name(dtype)}")


def _is_b64(value):
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)


def _leaf(value, dtype):
    """One JSON value as an element of a `dtype` tensor (TF Serving's `AddValueToTensor`)."""
    field = _VALUE_FIELDS.get(dtype)
    if field is None:
        raise _TensorError(grpc.StatusCode.UNIMPLEMENTED,
                           f"Conversion of JSON Value: {debug_string(value)} to type: "
                           f"{_dtype_name(dtype)}")
    if isinstance(value, dict):
        if dtype != types_pb2.DT_STRING:
            raise _type_error(value, dtype)
        if not _is_b64(value):
            raise _TensorError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"JSON Value: {debug_string(value)} not formatted correctly "
                               f"for base64 data")
        encoded = value["b64"]
        try:
            return base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise _TensorError(grpc.StatusCode.INVALID_ARGUMENT,
                               "Unable to base64 decode") from None
    if field == "string_val":
        if not isinstance(value, str):
            raise _type_error(value, dtype)
        return value.encode("utf-8", "surrogatepass")
    if field == "bool_val":
        if not isinstance(value, bool):
            raise _type_error(value, dtype)
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _type_error(value, dtype)
    if field in ("float_val", "double_val"):
        return float(value)
    low, high = _INT_RANGES[field]
    if not isinstance(value, int) or not low <= value < high:
        raise _type_error(value, dtype)
    return value


def _json_tensor(value, dtype):
    """`(TensorProto, element count)` of a JSON value: a scalar or nested lists, shaped by
    their first elements and checked to be dense (TF Serving's `GetDenseTensorShape` and
    `FillTensorProto`)."""
    shape, item = [], value
    while isinstance(item, list):
        shape.append(len(item))
        if not item:
            break
        item = item[0]
    values = []

    def fill(item, level):
        if not isinstance(item, list):
            if level != len(shape):
                raise _TensorError(grpc.StatusCode.INVALID_ARGUMENT,
                                   f"JSON Value: {debug_string(item)} found at incorrect "
                                   f"level: {level + 1} in the JSON DOM. Expected at level: "
                                   f"{len(shape)}")
            values.append(_leaf(item, dtype))
            return
        if level >= len(shape):
            raise _TensorError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"Encountered list at unexpected level: {level} expected < "
                               f"{len(shape)}")
        if len(item) != shape[level]:
            raise _TensorError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"Encountered list at unexpected size: {len(item)} at level: "
                               f"{level} expected size: {shape[level]}")
        for element in item:
            fill(element, level + 1)

    fill(value, 0)
    proto = tensor_pb2.TensorProto(dtype=dtype)
    proto.tensor_shape.dim.extend(proto.tensor_shape.Dim(size=size) for size in shape)
    getattr(proto, _VALUE_FIELDS[dtype]).extend(values)
    return proto, len(values)


def _shape_text(proto):
    return "[" + ",".join(str(d.size) for d in proto.tensor_shape.dim) + "]"


def _rows_to_tensors(instances, infos):
    """The `instances` list as name → TensorProto (TF Serving's
    `FillTensorMapFromInstancesList`): rows stacked on a new dimension 0."""
    if not isinstance(instances[0], dict) and len(infos) > 1:
        raise _invalid("instances is a plain list, but expecting list of objects as multiple "
                       "input tensors required as per tensorinfo_map")
    objects = isinstance(instances[0], dict) and not _is_b64(instances[0])
    rows = {}  # name → [TensorProto per row]

    def add(item, name):
        if name not in infos:
            raise _TensorError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"JSON object: does not have named input: {name}")
        proto, size = _json_tensor(item, infos[name].dtype)
        if rows.get(name):
            first = rows[name][0]
            first_size = len(getattr(first, _VALUE_FIELDS[first.dtype]))
            if first_size != size:
                raise _TensorError(grpc.StatusCode.INVALID_ARGUMENT,
                                   f"Expecting tensor size: {first_size} but got: {size}")
            if first.tensor_shape != proto.tensor_shape:
                raise _TensorError(grpc.StatusCode.INVALID_ARGUMENT,
                                   f"Expecting shape {_shape_text(first)} but got: "
                                   f"{_shape_text(proto)}")
        rows.setdefault(name, []).append(proto)

    for index, row in enumerate(instances):
        is_object = isinstance(row, dict) and not _is_b64(row)
        if objects != is_object:
            got = "object but got list" if objects else "value/list but got object"
            raise _invalid(f"Expecting {got} at item {index} of input list")
        for name, item in (row.items() if objects else [(sorted(infos)[0], row)]):
            try:
                add(item, name)
            except _TensorError as error:
                key = f" key: {name}" if objects else ""
                raise _invalid(f"Failed to process element: {index}{key} of 'instances' list. "
                               f"Error: {error.code.name}: {error.message}") from None
        if objects and set(row) != set(infos):
            raise _invalid(f"Failed to process element: {index} of 'instances' list. JSON "
                           f"object: {debug_string(row)} keys must be equal to: "
                           f"{','.join(sorted(infos))}")
    tensors = {}
    for name, protos in rows.items():
        tensor = tensor_pb2.TensorProto(dtype=infos[name].dtype)
        tensor.tensor_shape.dim.add(size=len(protos))
        tensor.tensor_shape.dim.extend(protos[0].tensor_shape.dim)
        field = _VALUE_FIELDS[tensor.dtype]
        for proto in protos:
            getattr(tensor, field).extend(getattr(proto, field))
        tensors[name] = tensor
    return tensors


def _columns_to_tensors(inputs, infos):
    """The `inputs` value as name → TensorProto (TF Serving's `FillTensorMapFromInputsMap`:
    keys that are not inputs are ignored)."""
    if not isinstance(inputs, dict) or _is_b64(inputs):
        if len(infos) > 1:
            raise _invalid("inputs is a plain value/list, but expecting an object as multiple "
                           "input tensors required as per tensorinfo_map")
        inputs = {next(iter(infos)): inputs}
    tensors = {}
    for name in sorted(infos):
        if name not in inputs:
            raise _invalid(f"Missing named input: {name} in 'inputs' object.")
        try:
            tensors[name], _ = _json_tensor(inputs[name], infos[name].dtype)
        except _TensorError as error:
            raise RequestError(error.code, error.message) from None
    return tensors


def predict_request(doc, model_spec, signature_defs):
    """`(PredictRequest, row form?)` from a predict body (TF Serving's
    `FillPredictRequestFromJson`); `signature_defs` is the servable's name → SignatureDef.

    Raises:
      RequestError: INVALID_ARGUMENT with TF Serving's text for a body that is not a request.
    """
    request = predict_pb2.PredictRequest()
    request.model_spec.CopyFrom(model_spec)
    if "signature_name" in doc:
        if not isinstance(doc["signature_name"], str):
            raise _invalid(f"JSON Value: {debug_string(doc)} not formatted correctly. "
                           f"'signature_name' key must be a string value.")
        request.model_spec.signature_name = doc["signature_name"]
    signature = request.model_spec.signature_name or "serving_default"
    if signature not in signature_defs:
        raise _invalid(f'Serving signature name: "{signature}" not found in signature def')
    infos = signature_defs[signature].inputs
    if not infos:
        raise _invalid(f"Failed to get input map for signature: "
                       f"{request.model_spec.signature_name or 'DEFAULT'}")
    if "instances" in doc and "inputs" in doc:
        raise _invalid(f"JSON Value: {debug_string(doc)} Not formatted correctly expecting "
                       f"only one of 'inputs' or 'instances' keys to exist ")
    if "instances" in doc:
        instances = doc["instances"]
        if not isinstance(instances, list):
            raise _invalid(f"JSON Value: {debug_string(doc)} Expecting 'instances' to be an "
                           f"list/array")
        if not instances:
            raise _invalid(f"JSON Value: {debug_string(doc)} No values in 'instances' array")
        tensors, rows = _rows_to_tensors(instances, infos), True
    elif "inputs" in doc:
        tensors, rows = _columns_to_tensors(doc["inputs"], infos), False
    else:
        raise _invalid("Missing 'inputs' or 'instances' key")
    for name, tensor in tensors.items():
        request.inputs[name].CopyFrom(tensor)
    return request, rows


def _decimal(value, digits):
    """TF Serving's `WriteDecimal`: six significant digits if they round-trip, else
    `digits`; `.0` on whole numbers; NaN, Infinity."""
    if np.isnan(value):
        return "NaN"
    if np.isinf(value):
        return "-Infinity" if value < 0 else "Infinity"
    text = "%.6g" % value
    if type(value)(float(text)) != value:
        text = "%.*g" % (digits, value)
    return text if "." in text or "e" in text else text + ".0"


def _element_token(value, as_bytes):
    if isinstance(value, bytes):
        if as_bytes:
            return None
        return _string_token(value.decode("utf-8", "replace"))
    if isinstance(value, np.bool_):
        return "true" if value else "false"
    if isinstance(value, np.float32):
        return _decimal(value, 9)
    if isinstance(value, np.floating):
        return _decimal(np.float64(value), 17)
    return str(int(value))


def _write_tensor(writer, array, as_bytes):
    """TF Serving's `AddTensorValues`: nested arrays; strings of `*_bytes` outputs as b64."""
    if array.ndim:
        return (writer.start(array=True) and all(_write_tensor(writer, a, as_bytes)
                                                 for a in array) and writer.end())
    value = array[()]
    token = _element_token(value, as_bytes)
    if token is None:
        return (writer.start(array=False) and writer.value('"b64"') and
                writer.value(_string_token(base64.b64encode(value).decode())) and writer.end())
    return writer.value(token)


def predict_json(outputs, rows):
    """TF Serving's `MakeJsonFromTensors`: `{"predictions": [...]}` (row form: one value per
    row, or one object per row when there are several outputs) or `{"outputs": ...}`."""
    if not outputs:
        raise _invalid("Cannot convert empty tensor map to JSON")
    arrays = {name: tf.make_ndarray(proto) for name, proto in sorted(outputs.items())}
    several = len(arrays) > 1
    writer = _JsonWriter()
    writer.start(array=False)
    if rows:
        batch = None
        for name, array in arrays.items():
            if not array.ndim:
                raise _invalid(f"Tensor name: {name} has no shape information ")
            if batch is not None and batch != len(array):
                raise _invalid(f"Tensor name: {name} has inconsistent batch size: "
                               f"{len(array)} expecting: {batch}")
            batch = len(array)
        writer.value('"predictions"')
        writer.start(array=True)
        for row in range(batch):
            writer.single_line = True
            if several:
                writer.start(array=False)
            for name, array in arrays.items():
                if several:
                    writer.value(_string_token(name))
                _write_tensor(writer, array[row], name.endswith("_bytes"))
            writer.single_line = False
            if several:
                writer.end()
        writer.end()
    else:
        writer.value('"outputs"')
        if several:
            writer.start(array=False)
        for name, array in arrays.items():
            if several:
                writer.value(_string_token(name))
            _write_tensor(writer, array, name.endswith("_bytes"))
        if several:
            writer.end()
    writer.end()
    return writer.text()


def _proto_json(message, preserve_names):
    """A proto as TF Serving's C++ `MessageToJsonString` prints it (whitespace, fields with
    default values)."""
    return json_format.MessageToJson(message, preserving_proto_field_name=preserve_names,
                                     indent=1, ensure_ascii=False,
                                     always_print_fields_with_no_presence=True) + "\n"


def _model_spec(name, version, label):
    spec = model_pb2.ModelSpec()
    spec.name = name
    if version is not None:
        spec.version.value = version
    if label is not None:
        spec.version_label = label
    return spec


def _model_info(match):
    """name, version, label of a matched path (URL-decoded, as TF Serving's `ParseModelInfo`)."""
    name, version, label = (match[1] or ""), match[2], match[3]
    name = urllib.parse.unquote(name)
    if version is not None:
        if int(version) >= 2 ** 63:
            raise _invalid(f"Failed to convert version: {version} to numeric.")
        version = int(version)
    if label is not None:
        label = urllib.parse.unquote(label)
    return name, version, label


def _process(manager, method, path, body):
    """The JSON answer to one API request; raises `RequestError`."""
    malformed = _invalid(f"Malformed request: {method} {path}")
    match = (_PREDICT_PATH.fullmatch(path) if method == "POST" else
             _STATUS_PATH.fullmatch(path) if method == "GET" else None)
    if match is None:
        raise malformed
    name, version, label = _model_info(match)
    spec = _model_spec(name, version, label)
    if method == "POST":
        if match[4] in ("classify", "regress"):
            raise RequestError(grpc.StatusCode.UNIMPLEMENTED,
                               "Method not implemented! spn_tf exports only predict "
                               "signatures.")
        if match[4] != "predict":
            raise malformed
        doc = parse_json(body)
        servable = manager.model(name).servable(version, label)
        request, rows = predict_request(doc, spec, servable.signature_defs)
        return predict_json(server.predict(manager, request).outputs, rows)
    if not name:
        raise _invalid("Missing model name in request.")
    if match[4]:
        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        request.model_spec.CopyFrom(spec)
        response = server.model_metadata(manager, request)
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signature_map)
        # TF Serving prints the two fields separately and joins them (http_rest_api_util.cc).
        return (f'{{\n"model_spec":{_proto_json(response.model_spec, True)},\n"metadata": '
                f'{{"signature_def": {_proto_json(signature_map, True)}}}\n}}\n')
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.CopyFrom(spec)
    return _proto_json(server.model_status(manager, request), False)


def answer(manager, method, path, body=b"", origin=""):
    """`(HTTP status, JSON text)` answering `method path` with `body` (bytes), as TF Serving's
    REST server does; `origin` is the `Origin` header (CORS preflight)."""
    path = urllib.parse.urlsplit(path).path
    if not _API_PATH.fullmatch(path):
        return 404, _error_json(f"Not Found: {method} {path} (the REST API is under "
                                f"/v1/models/)")
    try:
        if method == "OPTIONS":
            if not re.search(r"https?://", origin):
                raise RequestError(grpc.StatusCode.FAILED_PRECONDITION,
                                   "Origin header is missing in CORS preflight")
            return 200, ""
        return 200, _process(manager, method, path, body)
    except RequestError as error:
        code, message = error.code, error.message
    except Exception as error:  # noqa: BLE001 - a bug answers 500, not a dropped connection
        logging.exception("REST %s %s failed", method, path)
        code, message = grpc.StatusCode.INTERNAL, f"{type(error).__name__}: {error}"
    return HTTP_STATUS[code], _error_json(message)


def _error_json(message):
    """TF Serving's `MakeJsonFromStatus`: `{"error": message}`."""
    writer = _JsonWriter()
    writer.start(array=False)
    writer.value('"error"')
    writer.value(_string_token(message))
    writer.end()
    return writer.text()


class _Handler(BaseHTTPRequestHandler):
    """Every method goes to `answer` (TF Serving answers unknown ones `Malformed request`)."""

    server_version = "spn_tf-stand-in"

    def _reply(self):
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        limit = self.server.max_body_bytes
        if length < 0 or length > limit:  # refused unread: a body is never held past the limit
            self.close_connection = True
            status, text = HTTP_STATUS[grpc.StatusCode.RESOURCE_EXHAUSTED], _error_json(
                f"request body of {length} bytes is over this server's limit of {limit} bytes "
                f"(--rest_max_body_bytes={limit}): send fewer rows per request, or start the "
                f"server with a larger --rest_max_body_bytes" if length >= 0 else
                "Content-Length is not a number")
        else:
            body = self.rfile.read(length) if length > 0 else b""
            status, text = answer(self.server.manager, self.command, self.path, body,
                                  self.headers.get("Origin", ""))
        data = text.encode("utf-8", "surrogatepass")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _reply

    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        logging.debug("REST %s: " + format, self.address_string(), *args)


class RestServer(ThreadingHTTPServer):
    """TF Serving's REST API on 127.0.0.1:`port` for `manager`'s models, answering in a thread
    (`start`); `stop(grace)` stops accepting and waits for the requests in flight. A body over
    `max_body_bytes` is refused unread (RESOURCE_EXHAUSTED, HTTP 429, naming the flag).

    Raises:
      ValueError: the port cannot be bound.
    """

    daemon_threads = True

    def __init__(self, manager, port, max_body_bytes=MAX_BODY_BYTES):
        self.manager = manager
        self.max_body_bytes = max_body_bytes
        self._in_flight = 0
        self._idle = threading.Condition()
        try:
            super().__init__(("127.0.0.1", port), _Handler)
        except OSError as error:
            raise ValueError(f"cannot listen on 127.0.0.1:{port} for the REST API "
                             f"({error.strerror}).") from None
        self._thread = None

    def process_request(self, request, client_address):
        with self._idle:  # counted before its thread starts, so `stop` cannot miss it
            self._in_flight += 1
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._idle:
                self._in_flight -= 1
                self._idle.notify_all()

    def start(self):
        self._thread = threading.Thread(target=self.serve_forever, name="rest-api",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self, grace):
        """Stops accepting requests; waits up to `grace` seconds for those in flight."""
        self.shutdown()
        with self._idle:
            self._idle.wait_for(lambda: self._in_flight == 0, timeout=grace)
        self.server_close()
