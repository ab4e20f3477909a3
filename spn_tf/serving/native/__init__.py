"""SavedModels run by TensorFlow's C++ loader, with no Python in the process (`runner.c`).

TF Serving does not load an export with `tf.saved_model.load`: it calls C++
`tensorflow::LoadSavedModel` into a session and runs a signature by feeding and fetching the
tensor names of its SignatureDef. `runner.c` does the same through the C API that the installed
TensorFlow wheel ships (`TF_LoadSessionFromSavedModel`, `TF_SessionRun`). It is shipped as
source and built on first use with the system C compiler, against the installed TensorFlow's
headers and libraries. The binary is cached under `~/.cache/spn_tf/native` (or
`$SPN_TF_CACHE/native`), keyed by the source, the compiler and the TensorFlow build.

    runner = native.build()                       # NativeUnavailable: no compiler / headers
    outputs = native.run(runner, "exports/quickstart/1",
                         [("log_prob", {"images": images})])   # [{"log_prob": ..., ...}]
    warm = native.replay_warmup(runner, "exports/quickstart/1")  # [{alias: ...}] per record
"""

import hashlib
import importlib.resources
import importlib.util
import os
import shutil
import subprocess
import tempfile

import numpy as np

SOURCE = "runner.c"
LIBRARIES = ("libtensorflow_cc.so.2", "libtensorflow_framework.so.2")
HEADER = os.path.join("include", "tensorflow", "c", "c_api.h")


class NativeUnavailable(Exception):
    """The runner cannot be built here (no C compiler, or no TensorFlow C headers/libraries)."""


class NativeError(Exception):
    """The runner refused or failed a load or a request; the message is the runner's."""


def _tensorflow_dir():
    spec = importlib.util.find_spec("tensorflow")
    if spec is None or not spec.submodule_search_locations:
        raise NativeUnavailable("tensorflow is not installed")
    return os.path.realpath(list(spec.submodule_search_locations)[0])


def compiler():
    """The C compiler: `$CC`, else the first of cc, gcc, clang on the PATH (None: none)."""
    names = [os.environ["CC"]] if os.environ.get("CC") else ["cc", "gcc", "clang"]
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    return None


def build(cache_dir=None):
    """The path of the built runner, compiling it on first use.

    Raises:
      NativeUnavailable: no C compiler, the TensorFlow wheel lacks the C API files, or the
        compile failed (its first error line in the message).
    """
    cc = compiler()
    if cc is None:
        raise NativeUnavailable("no C compiler found ($CC, cc, gcc, clang): install one "
                                "(e.g. apt install gcc) to run exports in TensorFlow's C++ "
                                "loader")
    tf_dir = _tensorflow_dir()
    needed = [os.path.join(tf_dir, name) for name in (HEADER,) + LIBRARIES]
    missing = [path for path in needed if not os.path.exists(path)]
    if missing:
        raise NativeUnavailable(f"the installed TensorFlow has no C API files {missing}")
    source = importlib.resources.files(__package__).joinpath(SOURCE).read_bytes()
    key = hashlib.sha256(source + "\0".join(
        [cc, tf_dir] + [f"{os.path.getsize(p)}:{os.path.getmtime(p)}" for p in needed]
    ).encode()).hexdigest()[:16]
    root = cache_dir or os.path.join(
        os.environ.get("SPN_TF_CACHE") or os.path.join(os.path.expanduser("~"), ".cache",
                                                       "spn_tf"), "native")
    binary = os.path.join(root, key, "runner")
    if os.path.exists(binary):
        return binary
    os.makedirs(os.path.dirname(binary), exist_ok=True)
    with tempfile.TemporaryDirectory(dir=os.path.dirname(binary)) as scratch:
        source_path = os.path.join(scratch, SOURCE)
        with open(source_path, "wb") as f:
            f.write(source)
        built = os.path.join(scratch, "runner")
        result = subprocess.run(
            [cc, "-O2", source_path, f"-I{os.path.join(tf_dir, 'include')}", f"-L{tf_dir}",
             *[f"-l:{name}" for name in LIBRARIES], f"-Wl,-rpath,{tf_dir}", "-o", built],
            capture_output=True, text=True)
        if result.returncode != 0:
            first = next((line for line in result.stderr.splitlines() if "error" in line),
                         result.stderr.strip()[:300])
            raise NativeUnavailable(f"{os.path.basename(cc)} could not build {SOURCE}: {first}")
        os.replace(built, binary)  # atomic: concurrent builders leave one good binary
    return binary


def _run(runner, args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run([runner, *args], capture_output=True, text=True, env=env)
    if result.returncode != 0:
        lines = [line for line in result.stderr.splitlines() if line.startswith("runner: ")]
        raise NativeError(lines[-1][len("runner: "):] if lines else
                          f"runner exited with {result.returncode}: {result.stderr[-500:]}")
    return result.stdout


def _read_outputs(folder):
    return {name[:-len(".npy")]: np.load(os.path.join(folder, name))
            for name in sorted(os.listdir(folder)) if name.endswith(".npy")}


def _npy_value(value):
    """`value` as the runner reads it: strings as fixed-width bytes (`S<n>`)."""
    value = np.asarray(value)
    if value.dtype == object or value.dtype.kind == "U":
        return np.array([v.encode() if isinstance(v, str) else bytes(v)
                         for v in value.reshape(-1)]).reshape(value.shape)
    return np.ascontiguousarray(value)


def run(runner, version_dir, requests):
    """Runs `requests` on one C++-loaded session of `version_dir`.

    Args:
      runner: `build()`'s path.
      version_dir: a SavedModel version folder.
      requests: `[(signature name, {input alias: array})]`.

    Returns:
      `[{output alias: ndarray}]`, one per request (strings come back as bytes).

    Raises:
      NativeError: the load or a request failed (e.g. an unknown signature or input).
    """
    with tempfile.TemporaryDirectory() as scratch:
        _run(runner, [version_dir, _write_plan(scratch, requests)])
        return _plan_outputs(scratch, len(requests))


def run_and_replay(runner, version_dir, requests):
    """`run(...)` then `replay_warmup(...)` of the export's own warm-up records, on one
    session: one load and one compile of each signature instead of two.

    Returns:
      `(request outputs, record outputs)`, as `run` and `replay_warmup` return them.
    """
    with tempfile.TemporaryDirectory() as scratch:
        replayed = os.path.join(scratch, "warmup")
        os.makedirs(replayed)
        _run(runner, [version_dir, _write_plan(scratch, requests), f"--warmup={replayed}"])
        return _plan_outputs(scratch, len(requests)), _record_outputs(replayed)


def _write_plan(scratch, requests):
    """Writes `requests` as `.npy` inputs and a plan file under `scratch`; the runner's
    `--plan=` option. Request k's outputs go to `scratch/out/k`."""
    lines = []
    for index, (signature, inputs) in enumerate(requests):
        folder = os.path.join(scratch, "in", str(index))
        os.makedirs(folder)
        words = [signature, os.path.join(scratch, "out", str(index))]
        for alias, value in inputs.items():
            path = os.path.join(folder, f"{alias}.npy")
            np.save(path, _npy_value(value))
            words.append(f"{alias}={path}")
        lines.append(" ".join(words))
    plan = os.path.join(scratch, "plan")
    with open(plan, "w") as f:
        f.write("\n".join(lines) + "\n")
    os.makedirs(os.path.join(scratch, "out"))
    return f"--plan={plan}"


def _plan_outputs(scratch, count):
    return [_read_outputs(os.path.join(scratch, "out", str(index))) for index in range(count)]


def _record_outputs(folder):
    return [_read_outputs(os.path.join(folder, str(index)))
            for index in range(len(os.listdir(folder)))]


def replay_warmup(runner, version_dir, records=None):
    """Replays `PredictionLog` records in the runner, as TF Serving replays warm-up requests
    at load (the runner reads the TFRecord file itself, CRCs checked).

    Args:
      runner: `build()`'s path.
      version_dir: a SavedModel version folder.
      records: a TFRecord file of `PredictionLog`s (default: the export's own warm-up file).

    Returns:
      `[{output alias: ndarray}]`, one per record, in file order.
    """
    with tempfile.TemporaryDirectory() as scratch:
        _run(runner, [version_dir, f"--warmup={scratch}"] + ([records] if records else []))
        return _record_outputs(scratch)
