"""Exactness checks of a SavedModel through its signatures only (no spn_tf model code).

Signatures present with the documented dtypes and shapes (`assets.extra/spn_tf.json`); the
`sample` signature's row i equals a 1-row request with seed i; in-graph validation rejects
out-of-range pixels; the op types the graphs use, and which TF / TF Serving can run them;
every signature and warm-up request run in TensorFlow's C++ loader equal to the Python load
(`native_checks`).
"""

import json
import os

import numpy as np
import tensorflow as tf

from spn_tf.check import NA, Verdict, native_checks, verdict

METADATA_FILE = os.path.join("assets.extra", "spn_tf.json")

# Ops newer than TF 2.0 that spn_tf exports use, with the first TF release that has them.
# The stateless V2 random ops were in TensorFlow's master by October 2020
# (tensorflow/tensorflow#44452 edits StatelessRandomGetKeyCounterAlg), so first released in
# TF 2.4 (December 2020): inferred from that date, not read from a release note.
OP_FIRST_TF = {
    "StatelessRandomGetKeyCounter": "2.4", "StatelessRandomGetKeyCounterAlg": "2.4",
    "StatelessRandomGetAlg": "2.4", "StatelessRandomUniformV2": "2.4",
    "StatelessRandomNormalV2": "2.4", "StatelessRandomUniformIntV2": "2.4",
}


def load(path):
    """`(loaded SavedModel, metadata dict)`; a clear `ValueError` for a missing or corrupt one."""
    if not tf.io.gfile.exists(os.path.join(path, "saved_model.pb")):
        raise ValueError(f"no SavedModel at {path} (saved_model.pb missing); pass a version "
                         f"folder such as exports/quickstart/1.")
    try:
        loaded = tf.saved_model.load(path)
    except Exception as error:  # TF raises many types for a damaged SavedModel.
        raise ValueError(f"the SavedModel at {path} could not be loaded "
                         f"({type(error).__name__}: {str(error).splitlines()[0][:200]}).") from None
    try:
        with open(os.path.join(path, METADATA_FILE)) as f:
            return loaded, json.load(f)
    except (OSError, ValueError) as error:
        raise ValueError(f"{os.path.join(path, METADATA_FILE)} is missing or unreadable "
                         f"({error}): spn_tf.check needs it for the bit depth and geometry; "
                         f"export with python -m spn_tf.export.") from None


def _pixels_name(names):
    """The pixel input or output of a `log_prob` / `sample` signature (`clips` for video)."""
    return "clips" if "clips" in names else "images"


def _inputs(function, batch, pixels=None, seeds=None):
    """Request tensors for every input of a signature: given ones, else zeros of its spec."""
    feed = {}
    specs = function.structured_input_signature[1]
    for name, spec in specs.items():
        if name == _pixels_name(specs) and pixels is not None:
            feed[name] = tf.constant(pixels, spec.dtype)
        elif name == "seed" and seeds is not None:
            feed[name] = tf.constant(seeds, tf.int32)
        elif name == "temperature":
            feed[name] = tf.ones([batch], spec.dtype)
        else:
            shape = [batch] + [d if d is not None else 1 for d in spec.shape[1:]]
            feed[name] = tf.zeros(shape, spec.dtype)
    return feed


def signatures_match(loaded, metadata):
    documented = metadata.get("signatures", {})
    wanted = {"serving_default", "log_prob", "sample"} | set(documented)
    missing = sorted(wanted - set(loaded.signatures))
    wrong = []
    for name, io in documented.items():
        if name not in loaded.signatures:
            continue
        specs = loaded.signatures[name].structured_input_signature[1]
        for key, want in io["inputs"].items():
            spec = specs.get(key)
            got = None if spec is None else {
                "shape": [d if d is not None else -1 for d in spec.shape.as_list()],
                "dtype": spec.dtype.name}
            if got != want:
                wrong.append(f"{name}.{key}: {got} (documented {want})")
    return [verdict("signatures", not missing and not wrong,
                    f"missing {missing}; " * bool(missing) + "; ".join(wrong) if missing or wrong
                    else f"{sorted(loaded.signatures)} with the documented dtypes and shapes")]


def sample_rows(loaded, rows=8):
    """Row i of a batched `sample` request equals a 1-row request with seed i.

    The contract is "same noise, batched arithmetic": a row's noise comes from its seed
    alone, but batched float rounding may flip a rare row, so one row in `rows` may differ
    (a sampler that shares noise across rows, or draws a row from another row's seed, fails
    nearly every row).
    """
    sample = loaded.signatures["sample"]
    seeds = np.array([[11, i] for i in range(rows)], np.int32)
    output = _pixels_name(sample.structured_outputs)
    batched = sample(**_inputs(sample, rows, seeds=seeds))[output].numpy()
    singles = np.concatenate([sample(**_inputs(sample, 1, seeds=seeds[i:i + 1]))[
        output].numpy() for i in range(rows)])
    equal = int(np.all(batched == singles, axis=tuple(range(1, batched.ndim))).sum())
    distinct = len({row.tobytes() for row in batched})
    ok = equal >= rows - 1 and distinct > 1
    return [verdict("sample: row i = 1-row request, seed i", ok,
                    f"{equal} of {rows} rows equal to 1-row requests (batched rounding may "
                    f"flip a rare row); {distinct} distinct images for {rows} seeds")]


def rejects_out_of_range(loaded, metadata):
    log_prob = loaded.signatures["log_prob"]
    bits = metadata["bits"]
    specs = log_prob.structured_input_signature[1]
    shape = [1] + specs[_pixels_name(specs)].shape.as_list()[1:]
    rejected = []
    for value in (2 ** bits, -1):
        pixels = np.zeros(shape, np.int32)
        pixels.flat[0] = value
        try:
            log_prob(**_inputs(log_prob, 1, pixels=pixels))
        except tf.errors.InvalidArgumentError:
            rejected.append(value)
    return [verdict("log_prob rejects out-of-range pixels", len(rejected) == 2,
                    f"pixel values {2 ** bits} and -1 at {bits} bits: rejected {rejected}")]


def op_types(loaded):
    """Every op type in the signatures' graphs and the functions they call."""
    types, functions = set(), set()
    for function in loaded.signatures.values():
        graph_def = function.graph.as_graph_def()
        types |= {node.op for node in graph_def.node}
        for library_function in graph_def.library.function:
            functions.add(library_function.signature.name)
            types |= {node.op for node in library_function.node_def}
    return types - functions  # a call of a library function names it as its op


def ops_supported(loaded, metadata):
    types = op_types(loaded)
    unknown = sorted(op for op in types if not _registered(op))
    newest = sorted((v, op) for op, v in OP_FIRST_TF.items() if op in types)
    floor = max([v for v, _ in newest], key=lambda v: tuple(map(int, v.split("."))),
                default="2.0")
    exported = metadata.get("tensorflow_version", "unknown")
    detail = (f"{len(types)} op types; newest known: "
              f"{', '.join(op for _, op in newest) or 'none after TF 2.0'} (TF >= {floor}); "
              f"exported by TF {exported}: serve with TF Serving >= {floor} at least, "
              f">= {exported} to be safe (stateless random ops may change between versions)")
    if unknown:
        detail = f"ops this TF does not know: {unknown}; " + detail
    return [verdict("ops and serving version", not unknown, detail)]


def _registered(op):
    return hasattr(tf.raw_ops, op)


def audit_export(path):
    """Every export check; returns the verdicts (a `ValueError` for a bad path)."""
    loaded, metadata = load(path)
    verdicts = signatures_match(loaded, metadata)
    if "sample" in loaded.signatures:
        verdicts += sample_rows(loaded)
    else:
        verdicts.append(Verdict("sample: row i = 1-row request, seed i", NA, "no sample"))
    if "log_prob" in loaded.signatures:
        verdicts += rejects_out_of_range(loaded, metadata)
    verdicts += ops_supported(loaded, metadata)
    verdicts += native_checks.agreement(loaded, path)
    return verdicts
