"""A SavedModel in TensorFlow's C++ loader (as TF Serving loads it) agrees with the Python load.

`spn_tf.serving.native`'s runner loads the version folder with `TF_LoadSessionFromSavedModel`
and runs each signature by its SignatureDef's tensor names, with no Python in its process.
Every signature and every warm-up record of the export runs there and through
`tf.saved_model.load`. Float outputs (`log_prob`, `bits_per_dim`) must agree within float32
rounding (`RTOL`); integer outputs (sampled, completed, super-resolved images) must be
identical row for row. Where no C compiler is found, the checks say so in one line (n/a).
"""

import numpy as np
import tensorflow as tf

from spn_tf import warmup
from spn_tf.check import NA, Verdict, verdict
from spn_tf.serving import native

RTOL = 1e-5  # float32 rounding of a sum over a few hundred terms, relative
ROWS = 4
NAME = "C++ loader (TF C API, no Python) = Python load"


def requests(loaded, rows=ROWS):
    """One valid request per signature: `[(name, {alias: ndarray})]`.

    The inputs are the warm-up requests' (zeros, seeds `(0, i)`, temperature 1, captions "a"),
    except the pixels a `log_prob`-like signature scores, which are the `sample` signature's
    draws (so the values compared are those of real images, not of a blank one).
    """
    specs = {name: list(function.structured_input_signature[1].values())
             for name, function in loaded.signatures.items()}
    drawn = {}
    if "sample" in loaded.signatures:
        inputs = warmup.example_inputs(specs["sample"], rows)
        drawn = {alias: value.numpy() for alias, value in
                 loaded.signatures["sample"](**inputs).items()}
    out = []
    for name in sorted(specs):
        inputs = warmup.example_inputs(specs[name], rows)
        for spec in specs[name]:
            value = drawn.get(spec.name)
            if value is not None and value.shape == inputs[spec.name].shape:
                inputs[spec.name] = value.astype(inputs[spec.name].dtype)
        out.append((name, inputs))
    return out


def differences(want, got):
    """What differs between a Python and a runner result (`{alias: array}` each); [] if none."""
    problems = []
    if set(want) != set(got):
        return [f"outputs {sorted(got)} (Python: {sorted(want)})"]
    for alias in sorted(want):
        w, g = np.asarray(want[alias]), np.asarray(got[alias])
        if w.dtype == object:  # strings: Python gives bytes objects, the runner S<n>
            w = w.astype(bytes)
        if w.shape != g.shape:
            problems.append(f"{alias}: shape {list(g.shape)} (Python {list(w.shape)})")
        elif np.issubdtype(w.dtype, np.floating):
            error = np.abs(g.astype(np.float64) - w)
            bound = RTOL * np.maximum(np.abs(w), 1.0)
            if not np.all(error <= bound):
                problems.append(f"{alias}: max |difference| {error.max():.3g} (bound rtol "
                                f"{RTOL:g})")
        else:
            rows = w.reshape(len(w), -1) if w.ndim else w.reshape(1, -1)
            same = np.all(rows == g.reshape(rows.shape), axis=1)
            if not same.all():
                problems.append(f"{alias}: {int(same.sum())} of {len(same)} rows identical")
    return problems


def _python(loaded, name, inputs):
    outputs = loaded.signatures[name](**{k: tf.constant(v) for k, v in inputs.items()})
    return {alias: value.numpy() for alias, value in outputs.items()}


def agreement(loaded, path, signature_requests=None, native_path=None):
    """The verdicts: every signature, then every warm-up record, runner vs Python load.

    Args:
      loaded: `tf.saved_model.load(path)`.
      path: the version folder `loaded` came from.
      signature_requests: `[(signature, {alias: ndarray})]` to run (default `requests(loaded)`).
      native_path: the folder the runner loads (default `path`; a test gives it a tampered
        copy to show the check catches a difference).
    """
    native_path = native_path or path
    try:
        runner = native.build()
    except native.NativeUnavailable as error:
        return [Verdict(NAME, NA, f"{error}; the other checks ran")]
    signature_requests = signature_requests or requests(loaded)
    records = warmup.read(path)
    try:  # one session for both where there are both (one load, one compile)
        outputs = (native.run_and_replay(runner, native_path, signature_requests) if records
                   else (native.run(runner, native_path, signature_requests), []))
    except native.NativeError as error:
        outputs = error
    verdicts = []
    for label, batch, index in (("every signature", signature_requests, 0),
                                ("warm-up replay", records, 1)):
        if not batch:
            verdicts.append(Verdict(f"{NAME}: {label}", NA, "the export has no warm-up "
                                    "requests"))
            continue
        if isinstance(outputs, native.NativeError):
            verdicts.append(verdict(f"{NAME}: {label}", False, f"the runner failed: {outputs}"))
            continue
        results = outputs[index]
        problems = [f"{name}: {problem}" for (name, inputs), got in zip(batch, results)
                    for problem in differences(_python(loaded, name, inputs), got)]
        if len(results) != len(batch):
            problems.append(f"{len(results)} results for {len(batch)} requests")
        names = sorted({name for name, _ in batch})
        verdicts.append(verdict(
            f"{NAME}: {label}", not problems, "; ".join(problems) if problems else
            f"{len(batch)} requests ({', '.join(names)}): floats within rtol {RTOL:g}, "
            f"integer outputs identical row for row"))
    return verdicts
