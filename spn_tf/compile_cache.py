"""A persistent XLA compilation cache for `model.sample` (TensorFlow's own, on disk).

`python -m spn_tf.sample` turns it on (`--xla_cache`); in your own code call
`spn_tf.compile_cache.enable()` before the first `model.sample`.

`enable()` adds TensorFlow's `--tf_xla_persistent_cache_*` flags to `TF_XLA_FLAGS`, so each
XLA executable that a `tf.function(jit_compile=True)` builds (the sampling loops) is saved
under a per-user directory (default `~/.cache/spn_tf/xla`) and loaded, instead of compiled,
by a later process. Call it before the process's first XLA compilation: TensorFlow parses
`TF_XLA_FLAGS` once, when the XLA JIT first reads its flags, and ignores later changes. In
TF 2.21 that is the first jit-compiled call, not `import tensorflow` (measured: setting the
variable after `import spn_tf`, which imports TensorFlow, works); before `import tensorflow`
is the safe place if another library may touch XLA first. Not from inside an absl `main`:
set there it was ignored (measured; cause not found), so the CLIs call it before `app.run`
(`spn_tf.cli.run(before_main=...)`).

What it saves, and what it cannot (TF 2.21, `tensorflow/compiler/jit/device_compiler.h`,
`DeviceCompiler::CompileStrict`): the graph is still traced in Python and still lowered to
HLO (TF -> XLA bridge) on every first call; only the XLA backend (HLO passes, LLVM) is
skipped when a file matches. Measured on 2 shared CPU cores: multiscale small first call
~10.5 s -> ~4.5 s, raster ~3.5 s -> ~1.7 s, spn ~6.5 s -> ~3.5 s.

When it hits: the file name is `<prefix>__<signature hash>__<HLO hash>__XLA_CPU_JIT.pb`
(`device_executable_persistor.h`). The signature hash covers the function name, e.g.
`__inference_traced_7471`, whose number is TensorFlow's process-wide counter (`ops.uid()`),
and the HLO hash covers the whole HLO module, including the names of nested while-loop
functions (also counter-numbered), Keras layer names in op metadata (`masked_conv2d_12`:
Keras's process-wide name counter) and source file paths and lines. So a process hits only
if it did the same TensorFlow/Keras work before tracing the loop as the process that wrote
the file: the same script (e.g. a sampling CLI) hits; a different script, another model or
layer built first, another batch size traced first, or an edited source line misses and
writes a new file (each a few MB: 9.3 MB multiscale, 3.1 MB raster, 3.6 MB spn). Nothing
is ever evicted: clear the directory by hand.

Failure modes (all raise from `model.sample`, as a TensorFlow error, not a warning): a cache
directory that cannot be created or written (unless read-only), and a truncated or corrupt
`.pb` file (e.g. read while another process was still writing it; TensorFlow's write is not
atomic). `enable()` avoids the first by checking the directory and falling back to read-only
(or to no cache); for the second, delete the file.

The key has no TensorFlow version and no CPU model in it, so `enable()` puts both in the
file-name prefix: an upgrade or a different machine sharing the directory (e.g. an NFS home)
then misses instead of loading an executable built for another XLA or another CPU.
"""

import hashlib
import os
import platform

ENV_DIRECTORY = "SPN_TF_XLA_CACHE"
"""Environment variable: the cache directory, or "0"/"off"/"" to disable `enable()`."""

_FLAG_DIR = "--tf_xla_persistent_cache_directory"
_FLAG_READ_ONLY = "--tf_xla_persistent_cache_read_only"
_FLAG_PREFIX = "--tf_xla_persistent_cache_prefix"


def default_directory():
    """`$SPN_TF_XLA_CACHE`, else `$XDG_CACHE_HOME/spn_tf/xla`, else `~/.cache/spn_tf/xla`."""
    directory = os.environ.get(ENV_DIRECTORY)
    if directory is not None:
        return directory
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "spn_tf", "xla")


def _prefix():
    """A file-name-safe prefix naming the TensorFlow version and the CPU (see the module)."""
    try:
        from importlib.metadata import version
        tf_version = version("tensorflow")
    except Exception:  # not installed under that name (e.g. tensorflow-cpu, a nightly)
        tf_version = "unknown"
    cpu = platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features", "model name")):
                    cpu += line
    except OSError:
        pass
    cpu_hash = hashlib.sha256(cpu.encode()).hexdigest()[:8]
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in tf_version)
    return f"spn_tf-tf{safe}-{platform.machine()}-{cpu_hash}"


def enable(directory=None, read_only=None):
    """Turns on TensorFlow's persistent XLA cache for this process; call before TensorFlow.

    Args:
      directory: the cache directory; None: `default_directory()`. A value of "", "0" or
        "off" (also through `$SPN_TF_XLA_CACHE`) leaves the cache off.
      read_only: True: load entries, never write (a shared, pre-filled cache). None: write
        if the directory can be created and written, else read it if it exists, else off.

    Returns:
      The directory in use, or None when the cache is off (also when `TF_XLA_FLAGS` already
      names a cache directory: that setting is left as it is).
    """
    if directory is None:
        directory = default_directory()
    if str(directory).strip().lower() in ("", "0", "off", "false", "none"):
        return None
    flags = os.environ.get("TF_XLA_FLAGS", "")
    if _FLAG_DIR in flags:
        return None
    directory = os.path.abspath(os.path.expanduser(str(directory)))
    if read_only is None:
        try:
            os.makedirs(directory, exist_ok=True)
            read_only = not os.access(directory, os.W_OK | os.X_OK)
        except OSError:
            if not os.path.isdir(directory):
                return None
            read_only = True
        if read_only and not os.access(directory, os.R_OK | os.X_OK):
            return None
    new = [f"{_FLAG_DIR}={directory}", f"{_FLAG_PREFIX}={_prefix()}"]
    if read_only:
        new.append(f"{_FLAG_READ_ONLY}=true")
    os.environ["TF_XLA_FLAGS"] = " ".join([flags] + new if flags else new)
    return directory
