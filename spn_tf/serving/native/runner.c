/* spn_tf native runner: a SavedModel run by TensorFlow's C API, with no Python in the process.
 *
 * It loads a SavedModel version folder with the tag "serve" through
 * TF_LoadSessionFromSavedModel (C++ tensorflow::LoadSavedModel: the loader TF Serving's
 * SavedModel bundles use; variables restored and the init op run into a session), reads the
 * SignatureDefs from the MetaGraphDef that loader returns, and runs a signature as TF Serving's
 * Predict does: each input alias fed to the tensor name its TensorInfo gives, every output
 * alias fetched from its tensor name.
 *
 * Usage:
 *   runner VERSION_DIR --list
 *       prints "SIGNATURE input|output ALIAS TENSOR_NAME DTYPE" per tensor (TF_DataType codes).
 *   runner VERSION_DIR SIGNATURE OUT_DIR ALIAS=INPUT.npy ...
 *       one request; output ALIAS is written to OUT_DIR/ALIAS.npy (OUT_DIR created).
 *   runner VERSION_DIR --plan=PLAN_FILE
 *       many requests on one loaded session: each non-empty line of PLAN_FILE is
 *       "SIGNATURE OUT_DIR ALIAS=INPUT.npy ..." (words split at spaces and tabs).
 *   runner VERSION_DIR --warmup=OUT_DIR [RECORDS]
 *       replays VERSION_DIR/assets.extra/tf_serving_warmup_requests (or the file RECORDS: a
 *       TFRecord of PredictionLog records, as TF Serving replays them at load; CRCs checked):
 *       record k's outputs go to OUT_DIR/k/ALIAS.npy.
 *   runner VERSION_DIR --plan=PLAN_FILE --warmup=OUT_DIR [RECORDS]
 *       both on the same loaded session (one load, one compile of each signature), the plan
 *       first.
 * Each request prints "done SIGNATURE OUT_DIR" on stdout when its outputs are written.
 *
 * .npy files: format 1.0-3.0, C order, little-endian dtypes f2 f4 f8 i1 i2 i4 i8 u1 u2 u4 u8
 * b1 (bool) and S<n> (byte strings: a TF_STRING tensor; written back NUL-padded to the longest
 * element). Errors go to stderr as "runner: ..." and exit with status 1 (2: a usage error).
 *
 * Build (spn_tf.serving.native.build does this, against the installed TensorFlow):
 *   TF=$(python -c 'import tensorflow,os;print(os.path.dirname(tensorflow.__file__))')
 *   cc -O2 runner.c -I$TF/include -L$TF -l:libtensorflow_cc.so.2 \
 *       -l:libtensorflow_framework.so.2 -Wl,-rpath,$TF -o runner
 */

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tensorflow/c/c_api.h"
#include "tensorflow/c/tf_tstring.h"

#define MAX_TENSORS 64
#define MAX_SIGNATURES 64
#define MAX_NAME 512
#define MAX_WORDS (MAX_TENSORS + 2)

static void die(int status, const char *format, ...) {
  va_list args;
  va_start(args, format);
  fputs("runner: ", stderr);
  vfprintf(stderr, format, args);
  fputc('\n', stderr);
  va_end(args);
  exit(status);
}

static void *checked_malloc(size_t size) {
  void *p = malloc(size ? size : 1);
  if (!p) die(1, "out of memory (%zu bytes)", size);
  return p;
}

/* ---- .npy ------------------------------------------------------------------------------ */

typedef struct {
  const char *descr; /* numpy's dtype string */
  TF_DataType dtype;
  size_t size;
} DtypeEntry;

static const DtypeEntry DTYPES[] = {
    {"<f2", TF_HALF, 2},   {"<f4", TF_FLOAT, 4},  {"<f8", TF_DOUBLE, 8}, {"|i1", TF_INT8, 1},
    {"<i2", TF_INT16, 2},  {"<i4", TF_INT32, 4},  {"<i8", TF_INT64, 8},  {"|u1", TF_UINT8, 1},
    {"<u2", TF_UINT16, 2}, {"<u4", TF_UINT32, 4}, {"<u8", TF_UINT64, 8}, {"|b1", TF_BOOL, 1},
};
#define NUM_DTYPES (sizeof(DTYPES) / sizeof(DTYPES[0]))

static const char *dtype_list(void) {
  return "f2 f4 f8 i1 i2 i4 i8 u1 u2 u4 u8 b1 (little-endian) and S<n>";
}

/* The value of `key` in a .npy header dict: a pointer just after "'key':" and its spaces. */
static const char *header_value(const char *header, const char *key, const char *path) {
  char quoted[32];
  snprintf(quoted, sizeof(quoted), "'%s'", key);
  const char *p = strstr(header, quoted);
  if (!p) die(1, "%s: the .npy header has no %s: %s", path, quoted, header);
  p += strlen(quoted);
  while (*p == ' ' || *p == ':') p++;
  return p;
}

/* Reads a .npy file into a new TF_Tensor. */
static TF_Tensor *read_npy(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) die(1, "cannot open input %s: %s", path, strerror(errno));
  unsigned char magic[8];
  if (fread(magic, 1, 8, f) != 8 || memcmp(magic, "\x93NUMPY", 6) != 0)
    die(1, "%s is not a .npy file (no \\x93NUMPY magic)", path);
  uint32_t header_len = 0;
  if (magic[6] == 1) {
    unsigned char b[2];
    if (fread(b, 1, 2, f) != 2) die(1, "%s: truncated .npy header", path);
    header_len = b[0] | (b[1] << 8);
  } else if (magic[6] == 2 || magic[6] == 3) {
    unsigned char b[4];
    if (fread(b, 1, 4, f) != 4) die(1, "%s: truncated .npy header", path);
    header_len = b[0] | (b[1] << 8) | (b[2] << 16) | ((uint32_t)b[3] << 24);
  } else {
    die(1, "%s: .npy format version %d.%d is not supported (1.0 to 3.0 are)", path, magic[6],
        magic[7]);
  }
  char *header = checked_malloc(header_len + 1);
  if (fread(header, 1, header_len, f) != header_len) die(1, "%s: truncated .npy header", path);
  header[header_len] = '\0';

  const char *p = header_value(header, "fortran_order", path);
  if (strncmp(p, "False", 5) != 0) die(1, "%s: Fortran-order arrays are not supported", path);

  p = header_value(header, "shape", path);
  if (*p != '(') die(1, "%s: bad shape in the .npy header: %s", path, header);
  int64_t dims[32];
  int num_dims = 0;
  int64_t count = 1;
  p++;
  while (*p && *p != ')') {
    char *end;
    long long d = strtoll(p, &end, 10);
    if (end == p) {
      if (*p == ',' || *p == ' ') {
        p++;
        continue;
      }
      die(1, "%s: bad shape in the .npy header: %s", path, header);
    }
    if (num_dims == 32) die(1, "%s: more than 32 dimensions", path);
    dims[num_dims++] = d;
    count *= d;
    p = end;
  }

  p = header_value(header, "descr", path);
  if (*p != '\'') die(1, "%s: bad descr in the .npy header: %s", path, header);
  char descr[16] = {0};
  size_t n = strcspn(p + 1, "'");
  if (n >= sizeof(descr)) die(1, "%s: unsupported dtype in %s", path, header);
  memcpy(descr, p + 1, n);
  free(header);

  TF_Tensor *tensor;
  if (descr[0] == '|' && descr[1] == 'S') { /* fixed-width byte strings -> TF_STRING */
    long width = atol(descr + 2);
    if (width <= 0 && strcmp(descr, "|S0") != 0)
      die(1, "%s: bad string dtype %s", path, descr);
    char *raw = checked_malloc((size_t)(count * width));
    if ((int64_t)fread(raw, 1, (size_t)(count * width), f) != count * width)
      die(1, "%s: truncated data (%lld strings of %ld bytes expected)", path,
          (long long)count, width);
    tensor = TF_AllocateTensor(TF_STRING, dims, num_dims, (size_t)count * sizeof(TF_TString));
    TF_TString *strings = (TF_TString *)TF_TensorData(tensor);
    for (int64_t i = 0; i < count; i++) {
      const char *s = raw + i * width;
      size_t len = strnlen(s, (size_t)width); /* numpy drops trailing NULs too */
      TF_StringInit(&strings[i]);
      TF_StringCopy(&strings[i], s, len);
    }
    free(raw);
  } else {
    const DtypeEntry *entry = NULL;
    for (size_t i = 0; i < NUM_DTYPES; i++)
      if (strcmp(DTYPES[i].descr, descr) == 0 ||
          (DTYPES[i].size == 1 && strcmp(DTYPES[i].descr + 1, descr + 1) == 0))
        entry = &DTYPES[i];
    if (!entry) die(1, "%s: dtype %s is not supported (%s)", path, descr, dtype_list());
    size_t bytes = (size_t)count * entry->size;
    tensor = TF_AllocateTensor(entry->dtype, dims, num_dims, bytes);
    if (fread(TF_TensorData(tensor), 1, bytes, f) != bytes)
      die(1, "%s: truncated data (%zu bytes expected)", path, bytes);
  }
  fclose(f);
  return tensor;
}

/* Writes a .npy 1.0 header for `descr` and the tensor's shape. */
static void write_header(FILE *f, const char *descr, const TF_Tensor *tensor) {
  char header[512];
  int len = snprintf(header, sizeof(header), "{'descr': '%s', 'fortran_order': False, 'shape': (",
                     descr);
  int num_dims = TF_NumDims(tensor);
  for (int i = 0; i < num_dims; i++)
    len += snprintf(header + len, sizeof(header) - len, "%lld%s", (long long)TF_Dim(tensor, i),
                    num_dims == 1 ? "," : (i + 1 < num_dims ? ", " : ""));
  len += snprintf(header + len, sizeof(header) - len, "), }");
  int total = 10 + len + 1; /* magic, version, length, dict, '\n': padded to 64 bytes */
  int pad = (64 - total % 64) % 64;
  fwrite("\x93NUMPY\x01\x00", 1, 8, f);
  unsigned char b[2] = {(unsigned char)((len + pad + 1) & 0xff),
                        (unsigned char)((len + pad + 1) >> 8)};
  fwrite(b, 1, 2, f);
  fwrite(header, 1, len, f);
  for (int i = 0; i < pad; i++) fputc(' ', f);
  fputc('\n', f);
}

static void write_npy(const char *path, const char *name, const TF_Tensor *tensor) {
  FILE *f = fopen(path, "wb");
  if (!f) die(1, "cannot write output %s: %s", path, strerror(errno));
  TF_DataType dtype = TF_TensorType(tensor);
  int64_t count = TF_TensorElementCount(tensor);
  if (dtype == TF_STRING) {
    const TF_TString *strings = (const TF_TString *)TF_TensorData(tensor);
    size_t width = 1;
    for (int64_t i = 0; i < count; i++)
      if (TF_StringGetSize(&strings[i]) > width) width = TF_StringGetSize(&strings[i]);
    char descr[32];
    snprintf(descr, sizeof(descr), "|S%zu", width);
    write_header(f, descr, tensor);
    char *cell = checked_malloc(width);
    for (int64_t i = 0; i < count; i++) {
      memset(cell, 0, width);
      memcpy(cell, TF_StringGetDataPointer(&strings[i]), TF_StringGetSize(&strings[i]));
      fwrite(cell, 1, width, f);
    }
    free(cell);
  } else {
    const DtypeEntry *entry = NULL;
    for (size_t i = 0; i < NUM_DTYPES; i++)
      if (DTYPES[i].dtype == dtype) entry = &DTYPES[i];
    if (!entry) die(1, "output %s has TF_DataType %d, which .npy output does not support (%s)",
                    name, (int)dtype, dtype_list());
    write_header(f, entry->descr, tensor);
    size_t bytes = TF_TensorByteSize(tensor);
    if (fwrite(TF_TensorData(tensor), 1, bytes, f) != bytes)
      die(1, "cannot write output %s: %s", path, strerror(errno));
  }
  if (fclose(f) != 0) die(1, "cannot write output %s: %s", path, strerror(errno));
}

/* ---- protobuf wire format (only what SignatureDefs and PredictionLogs need) ------------ */

typedef struct {
  const uint8_t *p, *end;
} Reader;

typedef struct {
  uint32_t number, wire_type;
  uint64_t varint; /* wire type 0 */
  Reader bytes;    /* wire type 2 */
} Field;

static uint64_t read_varint(Reader *r, const char *what) {
  uint64_t value = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (r->p >= r->end) die(1, "%s: truncated protobuf (varint)", what);
    uint8_t byte = *r->p++;
    value |= (uint64_t)(byte & 0x7f) << shift;
    if (!(byte & 0x80)) return value;
  }
  die(1, "%s: malformed protobuf (varint longer than 10 bytes)", what);
  return 0;
}

/* The next field of `r` into `field`; 0 at the end of the message. */
static int next_field(Reader *r, Field *field, const char *what) {
  if (r->p >= r->end) return 0;
  uint64_t key = read_varint(r, what);
  field->number = (uint32_t)(key >> 3);
  field->wire_type = (uint32_t)(key & 7);
  size_t skip = 0;
  switch (field->wire_type) {
    case 0: field->varint = read_varint(r, what); return 1;
    case 1: skip = 8; break;
    case 2: skip = (size_t)read_varint(r, what); break;
    case 5: skip = 4; break;
    default: die(1, "%s: malformed protobuf (wire type %u)", what, field->wire_type);
  }
  if (skip > (size_t)(r->end - r->p)) die(1, "%s: truncated protobuf (field %u)", what,
                                          field->number);
  field->bytes.p = r->p;
  field->bytes.end = r->p + skip;
  r->p += skip;
  return 1;
}

static void copy_string(char *to, const Reader *from, const char *what) {
  size_t len = (size_t)(from->end - from->p);
  if (len >= MAX_NAME) die(1, "%s: a name longer than %d bytes", what, MAX_NAME - 1);
  memcpy(to, from->p, len);
  to[len] = '\0';
}

/* A map<string, message> entry: its key into `key`, its value's bytes into `value`. */
static void map_entry(Reader entry, char *key, Reader *value, const char *what) {
  Field field;
  key[0] = '\0';
  value->p = value->end = entry.p;
  while (next_field(&entry, &field, what)) {
    if (field.number == 1 && field.wire_type == 2) copy_string(key, &field.bytes, what);
    if (field.number == 2 && field.wire_type == 2) *value = field.bytes;
  }
}

/* ---- SignatureDefs --------------------------------------------------------------------- */

typedef struct {
  char alias[MAX_NAME], tensor[MAX_NAME];
  int dtype;
} TensorInfo;

typedef struct {
  char name[MAX_NAME];
  int num_inputs, num_outputs;
  TensorInfo inputs[MAX_TENSORS], outputs[MAX_TENSORS];
} Signature;

static Signature signatures[MAX_SIGNATURES];
static int num_signatures;

/* TensorInfo {name = 1, dtype = 2} into `info`. */
static void tensor_info(Reader message, TensorInfo *info, const char *what) {
  Field field;
  info->tensor[0] = '\0';
  info->dtype = 0;
  while (next_field(&message, &field, what)) {
    if (field.number == 1 && field.wire_type == 2) copy_string(info->tensor, &field.bytes, what);
    if (field.number == 2 && field.wire_type == 0) info->dtype = (int)field.varint;
  }
  if (!info->tensor[0])
    die(1, "%s: alias %s is not a dense tensor (no TensorInfo.name)", what, info->alias);
}

/* MetaGraphDef.signature_def (field 5: map<string, SignatureDef {inputs = 1, outputs = 2}>). */
static void read_signatures(const TF_Buffer *meta_graph_def) {
  const char *what = "MetaGraphDef";
  Reader meta = {meta_graph_def->data, (const uint8_t *)meta_graph_def->data +
                                           meta_graph_def->length};
  Field field, inner;
  while (next_field(&meta, &field, what)) {
    if (field.number != 5 || field.wire_type != 2) continue;
    if (num_signatures == MAX_SIGNATURES) die(1, "more than %d signatures", MAX_SIGNATURES);
    Signature *signature = &signatures[num_signatures];
    Reader body;
    map_entry(field.bytes, signature->name, &body, what);
    if (strcmp(signature->name, "__saved_model_init_op") == 0) continue; /* not servable */
    num_signatures++;
    while (next_field(&body, &inner, signature->name)) {
      if ((inner.number != 1 && inner.number != 2) || inner.wire_type != 2) continue;
      int *count = inner.number == 1 ? &signature->num_inputs : &signature->num_outputs;
      TensorInfo *infos = inner.number == 1 ? signature->inputs : signature->outputs;
      if (*count == MAX_TENSORS) die(1, "signature %s: more than %d tensors", signature->name,
                                     MAX_TENSORS);
      Reader value;
      map_entry(inner.bytes, infos[*count].alias, &value, signature->name);
      tensor_info(value, &infos[(*count)++], signature->name);
    }
  }
}

static const Signature *find_signature(const char *name) {
  for (int i = 0; i < num_signatures; i++)
    if (strcmp(signatures[i].name, name) == 0) return &signatures[i];
  fprintf(stderr, "runner: Serving signature key \"%s\" not found; this SavedModel has:", name);
  for (int i = 0; i < num_signatures; i++) fprintf(stderr, " %s", signatures[i].name);
  fputc('\n', stderr);
  exit(1);
  return NULL;
}

/* ---- the session ----------------------------------------------------------------------- */

/* The graph output "op:index" (index 0 when absent). */
static TF_Output graph_output(TF_Graph *graph, const char *name) {
  char op[MAX_NAME];
  const char *colon = strrchr(name, ':');
  size_t len = colon ? (size_t)(colon - name) : strlen(name);
  if (len >= sizeof(op)) die(1, "tensor name too long: %s", name);
  memcpy(op, name, len);
  op[len] = '\0';
  TF_Output output = {TF_GraphOperationByName(graph, op), colon ? atoi(colon + 1) : 0};
  if (!output.oper) die(1, "the loaded graph has no operation %s (tensor %s)", op, name);
  if (output.index < 0 || output.index >= TF_OperationNumOutputs(output.oper))
    die(1, "operation %s has %d outputs; tensor %s asks for output %d", op,
        TF_OperationNumOutputs(output.oper), name, output.index);
  return output;
}

/* Runs `signature` with `values[i]` fed to the input named `aliases[i]` (each input exactly
 * once); writes each output to OUT_DIR/ALIAS.npy. Takes ownership of `values`. */
static void run_signature(TF_Session *session, TF_Graph *graph, const Signature *signature,
                          const char *out_dir, int num_fed, char aliases[][MAX_NAME],
                          TF_Tensor **values) {
  TF_Output inputs[MAX_TENSORS], outputs[MAX_TENSORS];
  TF_Tensor *input_values[MAX_TENSORS], *output_values[MAX_TENSORS];
  for (int i = 0; i < signature->num_inputs; i++) {
    const TensorInfo *info = &signature->inputs[i];
    int found = -1;
    for (int j = 0; j < num_fed; j++)
      if (strcmp(aliases[j], info->alias) == 0) found = j;
    if (found < 0)
      die(1, "signature %s: input %s is missing (it takes %d inputs)", signature->name,
          info->alias, signature->num_inputs);
    if ((int)TF_TensorType(values[found]) != info->dtype)
      die(1, "signature %s: input %s holds TF_DataType %d, the signature takes %d (see "
             "tensorflow/c/tf_datatype.h)", signature->name, info->alias,
          (int)TF_TensorType(values[found]), info->dtype);
    inputs[i] = graph_output(graph, info->tensor);
    input_values[i] = values[found];
  }
  if (num_fed != signature->num_inputs)
    die(1, "signature %s takes %d inputs; the request has %d (an extra or repeated alias)",
        signature->name, signature->num_inputs, num_fed);
  for (int i = 0; i < signature->num_outputs; i++)
    outputs[i] = graph_output(graph, signature->outputs[i].tensor);
  if (mkdir(out_dir, 0777) != 0 && errno != EEXIST)
    die(1, "cannot create %s: %s", out_dir, strerror(errno));
  TF_Status *status = TF_NewStatus();
  TF_SessionRun(session, NULL, inputs, input_values, signature->num_inputs, outputs,
                output_values, signature->num_outputs, NULL, 0, NULL, status);
  if (TF_GetCode(status) != TF_OK)
    die(1, "signature %s failed in TF_SessionRun (code %d): %s", signature->name,
        (int)TF_GetCode(status), TF_Message(status));
  for (int i = 0; i < signature->num_outputs; i++) {
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s.npy", out_dir, signature->outputs[i].alias);
    write_npy(path, signature->outputs[i].alias, output_values[i]);
    TF_DeleteTensor(output_values[i]);
  }
  for (int i = 0; i < signature->num_inputs; i++) TF_DeleteTensor(input_values[i]);
  TF_DeleteStatus(status);
  printf("done %s %s\n", signature->name, out_dir);
  fflush(stdout);
}

/* One request from words: SIGNATURE OUT_DIR ALIAS=INPUT.npy ... */
static void run_words(TF_Session *session, TF_Graph *graph, int num_words, char **words) {
  if (num_words < 2) die(2, "a request is SIGNATURE OUT_DIR ALIAS=INPUT.npy ...");
  static char aliases[MAX_TENSORS][MAX_NAME];
  TF_Tensor *values[MAX_TENSORS];
  const Signature *signature = find_signature(words[0]);
  int num_fed = 0;
  for (int i = 2; i < num_words; i++) {
    char *eq = strchr(words[i], '=');
    if (!eq) die(2, "input %s is not ALIAS=INPUT.npy", words[i]);
    if (num_fed == MAX_TENSORS) die(2, "more than %d inputs", MAX_TENSORS);
    *eq = '\0';
    snprintf(aliases[num_fed], MAX_NAME, "%s", words[i]);
    values[num_fed++] = read_npy(eq + 1);
  }
  run_signature(session, graph, signature, words[1], num_fed, aliases, values);
}

static void run_plan(TF_Session *session, TF_Graph *graph, const char *plan_path) {
  FILE *plan = fopen(plan_path, "r");
  if (!plan) die(2, "cannot open plan %s: %s", plan_path, strerror(errno));
  size_t capacity = 0;
  char *line = NULL;
  while (getline(&line, &capacity, plan) != -1) {
    char *words[MAX_WORDS];
    int num_words = 0;
    for (char *word = strtok(line, " \t\r\n"); word; word = strtok(NULL, " \t\r\n")) {
      if (num_words == MAX_WORDS) die(2, "%s: a request with too many words", plan_path);
      words[num_words++] = word;
    }
    if (num_words) run_words(session, graph, num_words, words);
  }
  free(line);
  fclose(plan);
}

/* ---- warm-up records (TFRecord of PredictionLog) --------------------------------------- */

static uint32_t crc32c(const uint8_t *data, size_t length) {
  static uint32_t table[256];
  if (!table[1])
    for (uint32_t i = 0; i < 256; i++) {
      uint32_t c = i;
      for (int k = 0; k < 8; k++) c = (c & 1) ? 0x82f63b78u ^ (c >> 1) : c >> 1;
      table[i] = c;
    }
  uint32_t crc = 0xffffffffu;
  for (size_t i = 0; i < length; i++) crc = table[(crc ^ data[i]) & 0xff] ^ (crc >> 8);
  return crc ^ 0xffffffffu;
}

/* TFRecord's masked CRC32C, as little-endian bytes at `stored`. */
static int crc_matches(const uint8_t *data, size_t length, const uint8_t *stored) {
  uint32_t crc = crc32c(data, length);
  uint32_t masked = ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
  uint32_t want = stored[0] | (stored[1] << 8) | (stored[2] << 16) | ((uint32_t)stored[3] << 24);
  return masked == want;
}

/* PredictionLog.predict_log (6) .request (1): PredictRequest {model_spec = 1 {signature_name =
 * 3}, inputs = 2 (map<string, TensorProto>)}; runs it, outputs under OUT_DIR/record. */
static void run_prediction_log(TF_Session *session, TF_Graph *graph, Reader log,
                               const char *out_dir, int record) {
  char what[64], signature_name[MAX_NAME] = "serving_default", record_dir[4096];
  static char aliases[MAX_TENSORS][MAX_NAME];
  TF_Tensor *values[MAX_TENSORS];
  snprintf(what, sizeof(what), "warm-up record %d", record);
  Reader predict_log = {NULL, NULL}, request = {NULL, NULL};
  Field field, inner;
  while (next_field(&log, &field, what))
    if (field.number == 6 && field.wire_type == 2) predict_log = field.bytes;
  if (!predict_log.p) die(1, "%s is not a PredictLog (TF Serving replays Predict warm-up "
                             "requests for SavedModels)", what);
  while (next_field(&predict_log, &field, what))
    if (field.number == 1 && field.wire_type == 2) request = field.bytes;
  if (!request.p) die(1, "%s has no PredictRequest", what);
  int num_fed = 0;
  while (next_field(&request, &field, what)) {
    if (field.number == 1 && field.wire_type == 2) {
      Reader spec = field.bytes;
      while (next_field(&spec, &inner, what))
        if (inner.number == 3 && inner.wire_type == 2 && inner.bytes.end > inner.bytes.p)
          copy_string(signature_name, &inner.bytes, what);
    } else if (field.number == 2 && field.wire_type == 2) {
      if (num_fed == MAX_TENSORS) die(1, "%s: more than %d inputs", what, MAX_TENSORS);
      Reader proto;
      map_entry(field.bytes, aliases[num_fed], &proto, what);
      TF_Buffer *buffer = TF_NewBufferFromString(proto.p, (size_t)(proto.end - proto.p));
      TF_Status *status = TF_NewStatus();
      values[num_fed] = TF_AllocateTensor(TF_FLOAT, NULL, 0, sizeof(float));
      TF_TensorFromProto(buffer, values[num_fed], status);
      if (TF_GetCode(status) != TF_OK)
        die(1, "%s: input %s is not a valid TensorProto: %s", what, aliases[num_fed],
            TF_Message(status));
      TF_DeleteStatus(status);
      TF_DeleteBuffer(buffer);
      num_fed++;
    }
  }
  snprintf(record_dir, sizeof(record_dir), "%s/%d", out_dir, record);
  run_signature(session, graph, find_signature(signature_name), record_dir, num_fed, aliases,
                values);
}

static void replay_warmup(TF_Session *session, TF_Graph *graph, const char *version_dir,
                          const char *out_dir, const char *records) {
  char path[4096];
  if (records)
    snprintf(path, sizeof(path), "%s", records);
  else
    snprintf(path, sizeof(path), "%s/assets.extra/tf_serving_warmup_requests", version_dir);
  FILE *f = fopen(path, "rb");
  if (!f) die(1, "cannot open %s: %s (export with warm-up batch sizes to have one)", path,
              strerror(errno));
  uint8_t header[12], footer[4];
  int record = 0;
  size_t got;
  while ((got = fread(header, 1, 12, f)) == 12) {
    uint64_t length = 0;
    for (int i = 7; i >= 0; i--) length = (length << 8) | header[i];
    if (!crc_matches(header, 8, header + 8))
      die(1, "%s: record %d: corrupt length (CRC mismatch)", path, record);
    uint8_t *data = checked_malloc((size_t)length);
    if (fread(data, 1, (size_t)length, f) != length || fread(footer, 1, 4, f) != 4)
      die(1, "%s: record %d is truncated", path, record);
    if (!crc_matches(data, (size_t)length, footer))
      die(1, "%s: record %d: corrupt data (CRC mismatch)", path, record);
    Reader log = {data, data + length};
    run_prediction_log(session, graph, log, out_dir, record++);
    free(data);
  }
  if (got != 0) die(1, "%s: truncated record header after record %d", path, record - 1);
  fclose(f);
}

/* ---- main ------------------------------------------------------------------------------ */

static void list_signatures(void) {
  for (int i = 0; i < num_signatures; i++) {
    const Signature *s = &signatures[i];
    for (int j = 0; j < s->num_inputs; j++)
      printf("%s input %s %s %d\n", s->name, s->inputs[j].alias, s->inputs[j].tensor,
             s->inputs[j].dtype);
    for (int j = 0; j < s->num_outputs; j++)
      printf("%s output %s %s %d\n", s->name, s->outputs[j].alias, s->outputs[j].tensor,
             s->outputs[j].dtype);
  }
}

int main(int argc, char **argv) {
  const char *usage =
      "usage: runner VERSION_DIR --list\n"
      "       runner VERSION_DIR SIGNATURE OUT_DIR ALIAS=INPUT.npy ...\n"
      "       runner VERSION_DIR --plan=PLAN_FILE\n"
      "       runner VERSION_DIR --warmup=OUT_DIR [RECORDS]\n"
      "       runner VERSION_DIR --plan=PLAN_FILE --warmup=OUT_DIR [RECORDS]";
  if (argc < 3) die(2, "%s", usage);
  const char *mode = argv[2];
  int is_option = strncmp(mode, "--", 2) == 0;
  if (is_option && strcmp(mode, "--list") != 0 && strncmp(mode, "--plan=", 7) != 0 &&
      strncmp(mode, "--warmup=", 9) != 0)
    die(2, "unknown option %s\n%s", mode, usage);
  if (!is_option && argc < 4) die(2, "%s", usage);
  /* --plan= may be followed by --warmup=: argv[warmup] is that option, if any. */
  int warmup = strncmp(mode, "--warmup=", 9) == 0 ? 2 : 0;
  if (strncmp(mode, "--plan=", 7) == 0 && argc > 3) {
    if (strncmp(argv[3], "--warmup=", 9) != 0) die(2, "unexpected %s\n%s", argv[3], usage);
    warmup = 3;
  }
  const char *tags[] = {"serve"};
  TF_Status *status = TF_NewStatus();
  TF_SessionOptions *options = TF_NewSessionOptions();
  TF_Graph *graph = TF_NewGraph();
  TF_Buffer *meta_graph_def = TF_NewBuffer();
  TF_Session *session = TF_LoadSessionFromSavedModel(options, NULL, argv[1], tags, 1, graph,
                                                     meta_graph_def, status);
  if (TF_GetCode(status) != TF_OK)
    die(1, "TF_LoadSessionFromSavedModel(%s, tag \"serve\") failed (code %d): %s", argv[1],
        (int)TF_GetCode(status), TF_Message(status));
  read_signatures(meta_graph_def);
  if (strcmp(mode, "--list") == 0)
    list_signatures();
  else if (!is_option)
    run_words(session, graph, argc - 2, argv + 2);
  if (strncmp(mode, "--plan=", 7) == 0) run_plan(session, graph, mode + 7);
  if (warmup)
    replay_warmup(session, graph, argv[1], argv[warmup] + 9,
                  argc > warmup + 1 ? argv[warmup + 1] : NULL);
  TF_CloseSession(session, status);
  TF_DeleteSession(session, status);
  TF_DeleteBuffer(meta_graph_def);
  TF_DeleteGraph(graph);
  TF_DeleteSessionOptions(options);
  TF_DeleteStatus(status);
  return 0;
}
