"""What importing TensorFlow prints: hidden unless asked for.

`import tensorflow` writes a dozen lines to stderr from C++ before any Python code can filter
them (absl's "All log messages before absl::InitializeLog() ...", oneDNN's "custom
operations are on" twice, "Could not find cuda drivers", the CPU feature notice), and later
C++ lines at every run (the CUDA probe's "failed call to cuInit", Grappler's "remapper
failed", the XLA cache's "Error parsing text-format"): none of them is the user's concern on
a machine without a GPU, and they bury what spn_tf says. `quiet_import()` hides them:
TensorFlow's C++ log threshold defaults to errors-hidden (`TF_CPP_MIN_LOG_LEVEL=3`, unless
the user set it) and the process's stderr is pointed at /dev/null while TensorFlow loads.
Python exceptions are unaffected (a failed import raises after stderr is back).

`quiet_tensorflow_logs()` (the CLIs call it) does the same for other libraries' Python-side
log lines (SavedModel writing's "Assets written to", signature-name notices), keeping their
errors.

`SPN_TF_VERBOSE=1` (or any `TF_CPP_MIN_LOG_LEVEL` set by the user) shows everything again.
"""

import contextlib
import logging
import os
import sys

VERBOSE_ENV = "SPN_TF_VERBOSE"


def verbose():
    """Whether the user asked to see TensorFlow's own lines (`SPN_TF_VERBOSE` set, not 0)."""
    return os.environ.get(VERBOSE_ENV, "0").strip().lower() not in ("", "0", "false", "no")


@contextlib.contextmanager
def quiet_import():
    """Within the block, TensorFlow's import prints nothing (see the module doc).

    A no-op when TensorFlow is already imported, when `verbose()`, or when the user set
    `TF_CPP_MIN_LOG_LEVEL` (their choice of what TensorFlow prints stands).
    """
    if "tensorflow" in sys.modules or verbose() or "TF_CPP_MIN_LOG_LEVEL" in os.environ:
        yield
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real stderr (e.g. an embedded interpreter)
        yield
        return
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved, 2)
    finally:
        os.close(saved)


class _OursOrErrors(logging.Filter):
    """Keeps spn_tf's records, and other code's errors."""

    def filter(self, record):
        return record.levelno >= logging.ERROR or record.pathname.startswith(_PACKAGE_DIR)


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def quiet_tensorflow_logs():
    """Python-side log lines of other libraries (TensorFlow's SavedModel writer, Keras) are
    shown only from errors up; spn_tf's own lines all (unless `verbose()`: everything)."""
    if verbose():
        return
    from absl import logging as absl_logging

    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    absl_logging.get_absl_handler().addFilter(_OursOrErrors())
